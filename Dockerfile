# syntax=docker/dockerfile:1
# One image: the API by default; `vznos worker` and `vznos scheduler` as alternative commands.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY ledger ledger
COPY members members
COPY payments payments
COPY webhooks webhooks
COPY reconciliation reconciliation
COPY notices notices
COPY vznos vznos
COPY migrations migrations
RUN python -m venv /opt/vznos && /opt/vznos/bin/pip install --upgrade pip \
    && /opt/vznos/bin/pip install .

FROM python:3.11-slim
RUN groupadd --system vznos && useradd --system --gid vznos --home-dir /app vznos
COPY --from=build /opt/vznos /opt/vznos
ENV PATH=/opt/vznos/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VZNOS_HOST=0.0.0.0 \
    VZNOS_PORT=8000 \
    VZNOS_LOG_FORMAT=json
WORKDIR /app
USER vznos
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
# Production needs VZNOS_DATABASE_URL, VZNOS_BROKER_URL and the YooKassa shop credentials.
ENTRYPOINT ["vznos"]
CMD ["serve"]
