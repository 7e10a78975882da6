"""Scheduled jobs that must run once per key (a month, a day): the database remembers which
runs finished, so any number of schedulers, restarted at any time, do each run once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base


class JobRun(Base):
    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    finished_at: Mapped[datetime]


def finished(session: Session, job: str, run_key: str) -> bool:
    return (
        session.scalar(select(JobRun.job).where(JobRun.job == job, JobRun.run_key == run_key))
        is not None
    )


def mark_finished(session: Session, job: str, run_key: str, now: datetime) -> None:
    """Record a run as done. Jobs are idempotent: a crash before this line only means the run
    is repeated."""
    session.execute(
        insert(JobRun).values(job=job, run_key=run_key, finished_at=now).on_conflict_do_nothing()
    )
