# Timmy on Nostr: the agent and its embedded local model, with the database on a volume.
#   docker build -t timmy .
#   docker run --rm -v timmy-data:/data timmy ledger check --db /data/timmy.sqlite3
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    XDG_CACHE_HOME=/data/cache

WORKDIR /app
COPY pyproject.toml README.md relays.toml ./
COPY bot ./bot
COPY storage ./storage
RUN pip install '.[local]' \
    && useradd --create-home --uid 10001 timmy \
    && mkdir -p /data && chown timmy:timmy /data

USER timmy
VOLUME ["/data"]
ENTRYPOINT ["timmy"]
CMD ["--help"]
