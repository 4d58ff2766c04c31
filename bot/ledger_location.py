"""Where the ledger lives: a SQLite file or a PostgreSQL database (``[agent] db``, ``TIMMY_DB``,
``--db``), and how to open it.

A value starting with ``postgresql://`` (or ``postgres://``) is a PostgreSQL URL; anything else is
a file path. The URL never holds the password (one inside is refused, and no message repeats the
URL as written): it comes from ``$TIMMY_DB_PASSWORD``, else from a file only its owner can read
(``$TIMMY_DB_PASSWORD_FILE``, else ``[agent] db_password_file``), else libpq's own
``PGPASSWORD`` / ``~/.pgpass`` — or the server needs none (a local socket, ``trust``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.secrets import SecretError, read_secret_env, read_secret_file
from storage import Database, InvalidInput
from storage.location import is_postgres_url

PASSWORD_ENV = "TIMMY_DB_PASSWORD"  # noqa: S105 (the variable's name)
PASSWORD_FILE_ENV = "TIMMY_DB_PASSWORD_FILE"  # noqa: S105


class LocationError(ValueError):
    """The value is not a usable ledger location; the message never holds a password."""


@dataclass(frozen=True, slots=True)
class LedgerLocation:
    """A SQLite file (``path``) or a PostgreSQL URL without password (``url``); exactly one is
    set. ``password_file``: where a PostgreSQL password may be read (mode 0600)."""

    path: Path | None = None
    url: str | None = None
    password_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise LocationError("a ledger location is a file path or a postgresql:// URL")

    @property
    def target(self) -> str:
        """What ``Database.open`` takes: the path or the URL."""
        return str(self.path) if self.path is not None else str(self.url)

    def __str__(self) -> str:
        """As shown to people: the path, or the URL's user, host, port and database."""
        if self.path is not None:
            return str(self.path)
        from storage.postgres import redact  # the driver loads only for a PostgreSQL ledger

        return redact(str(self.url))

    def exists(self) -> bool:
        """A SQLite file exists; a PostgreSQL database is asked when opened (True)."""
        return self.path is None or self.path.is_file()

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The PostgreSQL password from the environment or the 0600 file, if any (raises
        ``bot.secrets.SecretError`` for an unreadable or too open file)."""
        env = os.environ if environ is None else environ
        if self.url is None:
            return None
        if env.get(PASSWORD_ENV, "").strip():
            return read_secret_env(PASSWORD_ENV, "database password", env).reveal()
        file = Path(env[PASSWORD_FILE_ENV]) if env.get(PASSWORD_FILE_ENV) else self.password_file
        if file is None:
            return None
        return read_secret_file(file, "database password").reveal()

    async def open(self, environ: Mapping[str, str] | None = None) -> Database:
        """Open the ledger (a password file that cannot be used is ``InvalidInput``, a
        ``LedgerError`` like every other reason the ledger cannot be opened)."""
        try:
            password = self.password(environ)
        except SecretError as exc:
            raise InvalidInput(str(exc)) from None
        return await Database.open(self.target, password=password)


def parse_location(value: str, base: Path, password_file: Path | None = None) -> LedgerLocation:
    """``value`` as a location: a PostgreSQL URL (checked, no password inside), else a path
    (``~`` expanded, relative to ``base``)."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise LocationError("must be a non-empty file path or postgresql:// URL")
    if is_postgres_url(value):
        from storage.postgres import check_url  # the driver loads only for a PostgreSQL URL

        try:
            check_url(value)
        except InvalidInput as exc:
            raise LocationError(str(exc)) from None
        return LedgerLocation(url=value, password_file=password_file)
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # ~user of a user that does not exist, or no home directory
        raise LocationError(f"cannot expand {value.split('/')[0]!r} (no such user's home "
                            "directory); write the full path") from None
    return LedgerLocation(path=p if p.is_absolute() else base / p, password_file=password_file)


def existing_ledger(option: str | None, configured: LedgerLocation | None = None, *,
                    flag: str = "--db") -> LedgerLocation:
    """The ledger a command opens: the one its ``flag`` option names when given, else the
    configured one; ``LocationError`` when it is malformed, missing or holds no ledger."""
    where = configured
    if option:
        try:
            where = parse_location(option, Path.cwd())
        except LocationError as exc:
            raise LocationError(f"{flag}: {exc}") from None
    if where is None:
        raise LocationError(f"{flag}: no ledger named")
    if not where.exists():
        raise LocationError(f"no ledger at {where}")
    return where
