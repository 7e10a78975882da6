"""HTTP for organisations, members, the member's account and statement, and an organisation's
month. Thin: parse, call, map."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status

from core.http import problem_responses
from core.periods import parse_period
from ledger.export import (
    CSV_MEDIA_TYPE,
    MEDIA_TYPES,
    XLSX_MEDIA_TYPE,
    StatementFormat,
    statement_csv,
    statement_filename,
    statement_window,
    statement_xlsx,
)
from ledger.reads import LedgerReads
from ledger.schemas import AccountOut, OrganizationSummaryOut, StatementOut
from members.access.dependencies import authenticated, require
from members.errors import OrganizationNotFound
from members.schemas import (
    Code,
    MemberOut,
    MemberUpsert,
    OrganizationCreate,
    OrganizationList,
    OrganizationOut,
    OrganizationPut,
)
from members.scopes import Scope
from members.service import MemberService, OrganizationService, Principal

MembersWriter = Annotated[Principal, Depends(require(Scope.MEMBERS_WRITE))]
MemberReader = Annotated[Principal, Depends(require(Scope.MEMBERS_WRITE, Scope.PAYMENTS_READ))]
PaymentsReader = Annotated[Principal, Depends(require(Scope.PAYMENTS_READ))]
AnyCaller = Annotated[Principal, Depends(authenticated)]
OrgCode = Annotated[Code, Path(description="The organisation's code (the CRM's id for it)")]

ExternalId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The CRM's own membership record id",
    ),
]
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
Period = Annotated[
    str,
    Query(
        pattern=r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$",
        description="The month the entries were booked in",
        examples=["2026-11"],
    ),
]

# The statement's other representations, for the OpenAPI document.
STATEMENT_FILES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The statement as JSON, CSV (UTF-8 with BOM, `;`) or XLSX",
        "content": {
            CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def synced(model: type[Any], updated: str, created: str) -> dict[int | str, dict[str, Any]]:
    """A PUT that syncs from the CRM answers 200 when it updated and 201 when it created: the
    contract lists both (a client branching on the code must find both documented)."""
    return {200: {"description": updated}, 201: {"description": created, "model": model}}


def build_router(
    *,
    members: MemberService,
    organizations: OrganizationService,
    ledger: LedgerReads,
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["members"])

    @router.post(
        "/organizations",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    def create_organization(body: OrganizationCreate, caller: MembersWriter) -> OrganizationOut:
        """Create an organisation inside the caller's subtree (under the caller's own
        organisation unless `parent_code` names another one in it)."""
        return organizations.create(body, caller)

    @router.put(
        "/organizations/{code}",
        responses={
            **synced(OrganizationOut, "Updated", "Created"),
            **problem_responses(401, 403, 404, 409, 422),
        },
    )
    def put_organization(
        code: OrgCode, body: OrganizationPut, caller: MembersWriter, response: Response
    ) -> OrganizationOut:
        """Sync an organisation from the CRM: 201 when created (under `parent_code`, default
        the caller's organisation), 200 when updated. A new `parent_code` moves the
        organisation with its whole subtree (audited); a parent inside that subtree is a 422."""
        org, created = organizations.put(caller, code, body)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return org

    @router.get("/organizations", responses=problem_responses(401, 403))
    def list_organizations(caller: AnyCaller) -> OrganizationList:
        """The caller's organisation and its whole subtree."""
        return OrganizationList(data=organizations.list(caller))

    @router.get("/organizations/{code}", responses=problem_responses(401, 403, 404, 422))
    def get_organization(code: OrgCode, caller: AnyCaller) -> OrganizationOut:
        """One organisation of the caller's subtree by its code (404 outside it)."""
        return organizations.get(caller, code)

    @router.put(
        "/members/{external_id}",
        responses={
            **synced(MemberOut, "Updated", "Created"),
            **problem_responses(401, 403, 404, 422),
        },
    )
    def upsert_member(
        external_id: ExternalId, body: MemberUpsert, caller: MembersWriter, response: Response
    ) -> MemberOut:
        """Create or update a member by the CRM's id: 201 when created, 200 when updated."""
        member, created = members.upsert(caller, external_id, body)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return member

    @router.get("/members/{external_id}", responses=problem_responses(401, 403, 404, 410, 422))
    def get_member(external_id: ExternalId, caller: MemberReader) -> MemberOut:
        """The member with their personal data (decrypted for this response only); every read
        is recorded in the audit log. An erased member is 410."""
        return members.get(caller, external_id)

    @router.get("/members/{external_id}/account", responses=problem_responses(401, 403, 404, 422))
    def get_account(external_id: ExternalId, caller: PaymentsReader) -> AccountOut:
        """The member's account (лицевой счёт): one line per month accrued and per payment
        received, with the running balance."""
        place = members.place(caller, external_id)
        return AccountOut.of(external_id, ledger.member_account(place.member_id))

    @router.get(
        "/members/{external_id}/statement",
        response_model=StatementOut,
        responses={**STATEMENT_FILES, **problem_responses(401, 403, 404, 422)},
    )
    def get_statement(
        external_id: ExternalId,
        caller: PaymentsReader,
        from_: Annotated[
            str | None,
            Query(
                alias="from",
                pattern=DAY_PATTERN,
                description="First day (inclusive); default: 1 January of `to`'s year",
                examples=["2026-01-01"],
            ),
        ] = None,
        to: Annotated[
            str | None,
            Query(
                pattern=DAY_PATTERN,
                description="Last day (inclusive); default: today",
                examples=["2026-12-31"],
            ),
        ] = None,
        fmt: Annotated[
            StatementFormat | None,
            Query(alias="format", description="Wins over the Accept header"),
        ] = None,
        accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> StatementOut | Response:
        """The member's statement (выписка) for inclusive days in the organisation's time zone;
        by default this year so far. JSON, or a file for Excel chosen by `format` or `Accept`:
        CSV in UTF-8 with a BOM, `;`-separated, Russian headers (Дата;Месяц;Операция;Канал;
        Описание;Сумма;Остаток), amounts as "350.00"; or XLSX with a title row."""
        place = members.place(caller, external_id)
        window = statement_window(from_, to, today=place.today, timezone=place.timezone)
        statement = ledger.statement(place.member_id, window.start, window.end)
        chosen = fmt or _negotiated(accept)
        if chosen is StatementFormat.JSON:
            return StatementOut.of(external_id, window.first_day, window.last_day, statement)
        content = (
            statement_csv(statement, place.timezone)
            if chosen is StatementFormat.CSV
            else statement_xlsx(statement, external_id, place.timezone)
        )
        filename = statement_filename(external_id, statement, place.timezone, chosen)
        return Response(
            content,
            media_type=MEDIA_TYPES[chosen],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.get(
        "/organizations/{organization_id}/summary",
        responses=problem_responses(401, 403, 404, 422),
    )
    def get_organization_summary(
        organization_id: uuid.UUID, period: Period, caller: PaymentsReader
    ) -> OrganizationSummaryOut:
        """The treasurer's month: accrued, collected by channel, fees, the split with the higher
        levels (shared upward, kept, received from below, owed and transferred upward) and
        arrears. An organisation outside the caller's subtree is not found, like an unknown one."""
        if not caller.can_see(organization_id):
            raise OrganizationNotFound(
                f"no organization with id {organization_id}", field="organization_id"
            )
        return OrganizationSummaryOut.of(
            ledger.organization_month(organization_id, parse_period(period))
        )

    return router


def _negotiated(accept: str | None) -> StatementFormat:
    """The format the Accept header prefers (highest q, then first listed); JSON otherwise."""
    by_media_type = {media_type: fmt for fmt, media_type in MEDIA_TYPES.items()}
    offers: list[tuple[float, int, StatementFormat]] = []
    for position, item in enumerate((accept or "").split(",")):
        media_type, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        fmt = by_media_type.get(media_type.lower())
        if fmt is not None and quality > 0:
            offers.append((-quality, position, fmt))
    return min(offers)[2] if offers else StatementFormat.JSON
