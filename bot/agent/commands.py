"""DM commands, parsed from text (pure: no I/O).

``parse(text, is_admin)`` gives one :data:`Command`. Plain text is a :class:`Question`; a first
word that names a command makes it that command (case-insensitive); a command with bad
arguments is :class:`Invalid` with a short reason (the agent answers with it and the help).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_TOPUP_SAT: Final = 1_000_000
MAX_CREDIT_SAT: Final = 100_000_000
LIMIT_KEYS: Final = ("daily_free_msat", "daily_free_jobs", "pool_daily_cap_msat")


@dataclass(frozen=True, slots=True)
class Question:
    text: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Estimate:
    question: str


@dataclass(frozen=True, slots=True)
class Balance:
    pass


@dataclass(frozen=True, slots=True)
class Topup:
    sats: int


@dataclass(frozen=True, slots=True)
class Refund:
    bolt11: str | None


@dataclass(frozen=True, slots=True)
class Pool:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class AdminStatus:
    what: str  # "pool" | "limits"


@dataclass(frozen=True, slots=True)
class AdminPause:
    paused: bool


@dataclass(frozen=True, slots=True)
class AdminLimit:
    key: str
    value: int | None  # None: no cap (pool_daily_cap_msat only)


@dataclass(frozen=True, slots=True)
class AdminCredit:
    sats: int


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


Command = (
    Question | Help | Estimate | Balance | Topup | Refund | Pool | Status | AdminStatus
    | AdminPause | AdminLimit | AdminCredit | Invalid
)

_SIMPLE: Final[dict[str, Command]] = {
    "help": Help(), "balance": Balance(), "pool": Pool(), "status": Status(),
}


def _whole_number(word: str, high: int) -> int | None:
    if not word.isascii() or not word.isdigit() or len(word) > 12:
        return None
    value = int(word)
    return value if 1 <= value <= high else None


def parse(text: str, is_admin: bool = False) -> Command:
    """The command ``text`` asks for (see the module docstring)."""
    stripped = text.strip()
    if not stripped:
        return Invalid("the message is empty")
    words = stripped.split()
    head = words[0].lower().lstrip("/")
    args = words[1:]
    if head in _SIMPLE:
        return _SIMPLE[head] if not args else Invalid(f"`{head}` takes no arguments")
    if head == "estimate":
        question = stripped.split(None, 1)[1].strip() if args else ""
        return Estimate(question) if question else Invalid("usage: estimate <question>")
    if head == "topup":
        sats = _whole_number(args[0], MAX_TOPUP_SAT) if len(args) == 1 else None
        if sats is None:
            return Invalid(f"usage: topup <sats>, a whole number from 1 to {MAX_TOPUP_SAT}")
        return Topup(sats)
    if head == "refund":
        if len(args) > 1:
            return Invalid("usage: refund [bolt11 invoice]")
        if args and not args[0].lower().startswith("ln"):
            return Invalid("that is not a Lightning invoice (it starts with ln...)")
        return Refund(args[0] if args else None)
    if head == "admin" and is_admin:
        return _admin(args)
    return Question(stripped)


def _admin(args: list[str]) -> Command:
    usage = Invalid("usage: admin pool | limits | pause | resume | limit <key> <value>"
                    " | credit <sats>")
    if not args:
        return usage
    verb, rest = args[0].lower(), args[1:]
    if verb in ("pool", "limits") and not rest:
        return AdminStatus(verb)
    if verb in ("pause", "resume") and not rest:
        return AdminPause(verb == "pause")
    if verb == "credit" and len(rest) == 1:
        sats = _whole_number(rest[0], MAX_CREDIT_SAT)
        return AdminCredit(sats) if sats is not None else Invalid(
            f"usage: admin credit <sats>, a whole number from 1 to {MAX_CREDIT_SAT}")
    if verb == "limit" and len(rest) == 2:
        key, raw = rest[0].lower(), rest[1].lower()
        if key not in LIMIT_KEYS:
            return Invalid(f"limit keys: {', '.join(LIMIT_KEYS)}")
        if raw == "none" and key == "pool_daily_cap_msat":
            return AdminLimit(key, None)
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            return Invalid("the value must be a whole number (or `none` for the pool cap)")
        return AdminLimit(key, int(raw))
    return usage
