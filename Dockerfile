# syntax=docker/dockerfile:1
#
# OpenAI-compatible LLM gateway.
#   docker build -t llm-gateway .
#   docker run -p 8080:8080 -e REDIS_URL=redis://... -e GATEWAY_KEYS=... llm-gateway
# Secrets (provider keys, GATEWAY_KEYS, tokens) come from the runtime environment only.

# ---- build: install the project and its dependencies into a venv ----------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# README.md is the project's `readme` in pyproject.toml: the build needs it.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# otel: OpenTelemetry tracing, off until OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/observability.md);
# postgres: asyncpg, for the usage ledger once DATABASE_URL is set (docs/ledger.md)
RUN pip install --no-cache-dir "./[otel,postgres]"

# ---- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    GATEWAY_WORKERS=2 \
    PORT=8080

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --create-home --home-dir /home/gateway \
       --shell /usr/sbin/nologin gateway

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Config stays root-owned and read-only for the service user.
COPY routes.yaml tiers.yaml /app/

USER 10001:10001

EXPOSE 8080

# slim has no curl: probe with the stdlib (urlopen raises, so exits non-zero, on any non-2xx).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]

# `exec` replaces the shell so the gateway is PID 1 and receives SIGTERM directly.
CMD ["sh", "-c", "exec gateway serve --config-dir /app --host 0.0.0.0 --port ${PORT} --workers ${GATEWAY_WORKERS}"]
