"""Requests sent by the crash and replica scenarios, and what each is due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tests.e2e.askers import Asker, Protocol
from tests.e2e.ledger_view import LedgerView


@dataclass(frozen=True)
class Kind:
    name: str
    text: str
    protocol: Protocol
    replies: int
    """Replies due to the request: 1, or 2 for a quote that is paid (then the answer)."""
    final_state: str | None
    """The job's last state (``None``: a command, no job)."""


@dataclass
class Sent:
    asker: Asker
    kind: Kind
    request_id: str


def all_answered(sent: Sequence[Sent], view: LedgerView) -> bool:
    """Every request has its replies and its job (if any) is in its last state."""
    for s in sent:
        if len(s.asker.replies_to(s.request_id)) < s.kind.replies:
            return False
        if s.kind.final_state is not None:
            job = view.job(s.request_id)
            if job is None or job["state"] != s.kind.final_state:
                return False
    return True
