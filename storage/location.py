"""Which engine a ledger location names: a ``postgresql://`` (or ``postgres://``) URL is a
PostgreSQL database, anything else a SQLite file's path. Kept apart from ``storage.postgres`` so
that telling the two apart never loads the PostgreSQL driver."""

from __future__ import annotations

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str) -> bool:
    return location.startswith(SCHEMES)
