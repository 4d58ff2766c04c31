"""Log records any handler can write, whatever text a peer put in them.

Relays, wallets and LNURL services send text that ends up in log messages: ``NOTICE`` and
``CLOSED`` messages, ``OK`` reasons, error details. :class:`SafeFormatter` escapes it once, where
records are formatted, instead of at every call site:

- control characters (C0, DEL, C1) and the Unicode line and paragraph separators become
  ``\\xNN`` / ``\\uNNNN``, so a peer cannot start a forged log line or move the terminal cursor;
- lone surrogates (text decoded from ``"\\udfff"``) become ``\\udfff``, so a handler that writes
  strict UTF-8 (a log file, JSON logs) can always write the record.

The message is escaped; the traceback of ``log.exception`` keeps its lines and only loses its
surrogates. :func:`configure_logging` installs one stderr handler with this formatter on the
root logger (what ``timmy run`` sets up); every handler the agent adds must use
:class:`SafeFormatter` too. :class:`JsonFormatter` writes the same records as one JSON object
per line (``timmy run --log-format json``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Final, TextIO

DEFAULT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with control characters, line separators and lone surrogates escaped."""
    return _UNSAFE.sub(_escape_char, text)


class SafeFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose output is one line of valid Unicode per message."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if text.isascii():
            return text
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class JsonFormatter(SafeFormatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``
    (escaped as :class:`SafeFormatter` does) and ``traceback`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage())
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.message,
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def configure_logging(level: int = logging.WARNING, stream: TextIO | None = None, *,
                      force: bool = False, json_lines: bool = False) -> None:
    """One handler on the root logger, writing to ``stream`` (stderr) through
    :class:`SafeFormatter` (or :class:`JsonFormatter` with ``json_lines``). Like
    ``logging.basicConfig``, it does nothing when the root logger already has handlers (a test
    runner's, an embedding program's) unless ``force``."""
    root = logging.getLogger()
    if root.handlers and not force:
        return
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if json_lines else SafeFormatter(DEFAULT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
