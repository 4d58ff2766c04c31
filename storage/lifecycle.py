"""The lifecycles of jobs, refunds, payouts, requests and top-ups: one ``(state, operation) →
state`` table each (the shape of h11's state machine).

Every storage operation that moves a record asks its table for the move (``Lifecycle.next``);
a pair the table does not list raises ``IllegalTransition`` and, since an operation that raises
is rolled back alone (``storage.database``), changes nothing. A pair that leads back to its own
state is legal and changes no state: a repeat, a record already where the operation would take
it, or (``reserve_grant``) an operation that moves money but not the state. What a job may do is
decided by its state alone: its serve only fixes which states it reaches (free and session jobs
are ``running`` from their decision; partial and gate jobs start ``quoted``).

Jobs::

    quoted ─attach_invoice─▶ invoiced ─pay─▶ paid ─start─▶ running ─settle─▶ done
    quoted ─pay─▶ paid                       paid ─fail─▶ failed    running ─fail─▶ failed
    quoted | invoiced ─expire─▶ expired      quoted | invoiced ─cancel─▶ cancelled

Refunds: ``none ─owe─▶ pending ─begin_payout─▶ paying ─confirm_payout─▶ paid``,
``paying ─fail_payout─▶ pending``, ``pending ─credit─▶ credited``.
Payouts: ``sending ─confirm─▶ paid``, ``sending ─fail─▶ failed``.
Requests (a message in, until its last reply): ``new ─wait─▶ open`` (a first reply sent, the job
goes on outside: a quote awaiting payment), ``new | open ─close─▶ closed`` (the last reply sent);
``dropped`` is recorded so (a flood) and never moves.
Top-ups: ``open ─pay─▶ paid``, ``open ─expire─▶ expired``, ``expired ─pay─▶ paid`` (a late
payment is credited all the same), ``paid ─pay─▶ paid`` (a duplicate, credited too).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from storage.errors import IllegalTransition


class JobState(StrEnum):
    QUOTED = "quoted"  # partial / gate: decided, no invoice yet
    INVOICED = "invoiced"  # an invoice awaits payment
    PAID = "paid"  # paid (escrow; a partial job's grant reserved), work not started
    RUNNING = "running"  # work under way (free and session jobs from their decision)
    DONE = "done"  # settled
    FAILED = "failed"  # the work failed or will not run; what was paid is a pending refund
    EXPIRED = "expired"  # the invoice expired unpaid; nothing moved
    CANCELLED = "cancelled"  # withdrawn unpaid; nothing moved


class JobOp(StrEnum):
    ATTACH_INVOICE = "attach_invoice"
    PAY = "pay"  # a payment in time, of at least the work amount
    RESERVE_GRANT = "reserve_grant"  # a paid partial job's pool share is reserved
    START = "start"
    SETTLE = "settle"
    FAIL = "fail"
    EXPIRE = "expire"
    CANCEL = "cancel"


class RefundState(StrEnum):
    NONE = "none"
    PENDING = "pending"
    PAYING = "paying"
    PAID = "paid"
    CREDITED = "credited"


class RefundOp(StrEnum):
    OWE = "owe"  # settlement or failure leaves money to give back
    BEGIN_PAYOUT = "begin_payout"
    CONFIRM_PAYOUT = "confirm_payout"
    FAIL_PAYOUT = "fail_payout"
    CREDIT = "credit"  # kept as balance


class PayoutState(StrEnum):
    SENDING = "sending"
    PAID = "paid"
    FAILED = "failed"


class PayoutOp(StrEnum):
    CONFIRM = "confirm"
    FAIL = "fail"


class TopupState(StrEnum):
    OPEN = "open"
    PAID = "paid"
    EXPIRED = "expired"


class TopupOp(StrEnum):
    PAY = "pay"
    EXPIRE = "expire"


class RequestState(StrEnum):
    NEW = "new"  # recorded, nothing sent
    OPEN = "open"  # a first reply sent, its job goes on
    CLOSED = "closed"  # the last reply sent
    DROPPED = "dropped"  # never to be answered (a flood)


class RequestOp(StrEnum):
    WAIT = "wait"  # a first reply sent; the job waits on the outside (a payment)
    CLOSE = "close"  # the last reply sent, or nothing left to say


StateT = TypeVar("StateT", bound=StrEnum)
OpT = TypeVar("OpT", bound=StrEnum)


class Lifecycle(Generic[StateT, OpT]):
    """One lifecycle: the legal ``(state, operation) → state`` moves of one kind of record."""

    def __init__(self, name: str, moves: Mapping[tuple[StateT, OpT], StateT]) -> None:
        self.name = name
        self.moves: Mapping[tuple[StateT, OpT], StateT] = dict(moves)

    def allows(self, state: StateT, op: OpT) -> bool:
        return (state, op) in self.moves

    def next(self, state: StateT, op: OpT, record: str) -> StateT:
        """The state ``op`` takes ``record`` (in ``state``) to, or ``IllegalTransition``."""
        try:
            return self.moves[(state, op)]
        except KeyError:
            raise IllegalTransition(
                f"{self.name} {record} is {state.value}: it cannot {op.value.replace('_', ' ')}"
            ) from None


_J, _JO = JobState, JobOp
JOB_LIFECYCLE: Lifecycle[JobState, JobOp] = Lifecycle(
    "job",
    {
        (_J.QUOTED, _JO.ATTACH_INVOICE): _J.INVOICED,
        (_J.QUOTED, _JO.PAY): _J.PAID,  # paid without an invoice (a zap naming the quote)
        (_J.INVOICED, _JO.PAY): _J.PAID,
        (_J.PAID, _JO.RESERVE_GRANT): _J.PAID,
        (_J.PAID, _JO.START): _J.RUNNING,
        (_J.RUNNING, _JO.START): _J.RUNNING,  # already started: no-op
        (_J.RUNNING, _JO.SETTLE): _J.DONE,
        (_J.RUNNING, _JO.FAIL): _J.FAILED,
        (_J.PAID, _JO.FAIL): _J.FAILED,  # will not run: terms changed, or withdrawn after paying
        (_J.QUOTED, _JO.EXPIRE): _J.EXPIRED,
        (_J.INVOICED, _JO.EXPIRE): _J.EXPIRED,
        (_J.EXPIRED, _JO.EXPIRE): _J.EXPIRED,  # repeat: no-op
        (_J.CANCELLED, _JO.EXPIRE): _J.CANCELLED,  # already closed unpaid: no-op
        (_J.QUOTED, _JO.CANCEL): _J.CANCELLED,
        (_J.INVOICED, _JO.CANCEL): _J.CANCELLED,
        (_J.CANCELLED, _JO.CANCEL): _J.CANCELLED,  # repeat: no-op
        (_J.EXPIRED, _JO.CANCEL): _J.EXPIRED,  # already closed unpaid: no-op
    },
)

_R, _RO = RefundState, RefundOp
REFUND_LIFECYCLE: Lifecycle[RefundState, RefundOp] = Lifecycle(
    "refund of job",
    {
        (_R.NONE, _RO.OWE): _R.PENDING,
        (_R.PENDING, _RO.BEGIN_PAYOUT): _R.PAYING,
        (_R.PAYING, _RO.CONFIRM_PAYOUT): _R.PAID,
        (_R.PAYING, _RO.FAIL_PAYOUT): _R.PENDING,
        (_R.PENDING, _RO.CREDIT): _R.CREDITED,
        (_R.CREDITED, _RO.CREDIT): _R.CREDITED,  # repeat: no-op
    },
)

_P, _PO = PayoutState, PayoutOp
PAYOUT_LIFECYCLE: Lifecycle[PayoutState, PayoutOp] = Lifecycle(
    "payout",
    {
        (_P.SENDING, _PO.CONFIRM): _P.PAID,
        (_P.PAID, _PO.CONFIRM): _P.PAID,  # repeat (with the same terms): no-op
        (_P.SENDING, _PO.FAIL): _P.FAILED,
        (_P.FAILED, _PO.FAIL): _P.FAILED,  # repeat: no-op
    },
)

_Q, _QO = RequestState, RequestOp
REQUEST_LIFECYCLE: Lifecycle[RequestState, RequestOp] = Lifecycle(
    "request",
    {
        (_Q.NEW, _QO.WAIT): _Q.OPEN,
        (_Q.OPEN, _QO.WAIT): _Q.OPEN,  # repeat: no-op
        (_Q.NEW, _QO.CLOSE): _Q.CLOSED,
        (_Q.OPEN, _QO.CLOSE): _Q.CLOSED,
        (_Q.CLOSED, _QO.CLOSE): _Q.CLOSED,  # repeat: no-op
    },
)

_T, _TO = TopupState, TopupOp
TOPUP_LIFECYCLE: Lifecycle[TopupState, TopupOp] = Lifecycle(
    "top-up",
    {
        (_T.OPEN, _TO.PAY): _T.PAID,
        (_T.EXPIRED, _TO.PAY): _T.PAID,  # late: credited all the same
        (_T.PAID, _TO.PAY): _T.PAID,  # duplicate: credited all the same
        (_T.OPEN, _TO.EXPIRE): _T.EXPIRED,
        (_T.EXPIRED, _TO.EXPIRE): _T.EXPIRED,  # repeat: no-op
    },
)
