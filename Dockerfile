# Timmy on Nostr: `timmy run` with its embedded local model, the database on the /data volume and
# the read-only status port (pool page, /metrics, /healthz) on 8080.
#   docker build -t timmy .
#   docker run --rm -v ./deploy:/config timmy keygen --out /config/secrets/agent.nsec   # once
#   docker run -d -v timmy-data:/data -v ./deploy:/config:ro -p 8080:8080 timmy
#   docker run --rm -v timmy-data:/data timmy ledger check --db /data/timmy.sqlite3
# /config holds timmy.toml, relays.toml and the secret files it names (mode 0600, readable by
# uid 10001); see deploy/timmy.toml and compose.yaml (the agent with a relay).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    XDG_CACHE_HOME=/data/cache \
    TIMMY_CONFIG=/config/timmy.toml \
    TIMMY_DB=/data/timmy.sqlite3

WORKDIR /app
COPY pyproject.toml README.md relays.toml ./
COPY bot ./bot
COPY storage ./storage
RUN pip install '.[local]' \
    && useradd --create-home --uid 10001 timmy \
    && mkdir -p /data /config && chown timmy:timmy /data

USER timmy
VOLUME ["/data"]
EXPOSE 8080
# /healthz answers 200 while a relay is connected, the wallet answers and the database is writable
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:8080/healthz', timeout=8)"]
ENTRYPOINT ["timmy"]
CMD ["run", "--http-host", "0.0.0.0", "--http-port", "8080"]
