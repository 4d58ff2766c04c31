"""The running agent's own settings: plain frozen dataclasses, validated on construction.

``bot.config`` reads them from ``timmy.toml`` (``[service]`` and ``[profile]``) and embeds them
in ``Settings``; nothing here reads files or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.leases import MAX_LEASE_S, MIN_LEASE_S


class AgentSettingsError(ValueError):
    """A service or profile setting is out of range (the message names the key)."""


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise AgentSettingsError(f"{name} must be an integer in {low}..{high}")


def _text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise AgentSettingsError(f"{name} must be text of at most {limit} characters")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How the agent serves requests (``[service]`` in ``timmy.toml``).

    - ``concurrency``: answers generated at once (the queue advances more requests than that:
      ``bot.agent.agent.queue_workers``).
    - ``work_timeout_s``: how long one answer may take before it fails (and is refunded).
    - ``invoice_expiry_s``: how long a quote's invoice can be paid.
    - ``settlement_poll_s``: how often the open invoices are looked up in the wallet (the
      fallback where settlements are not pushed; it also expires unpaid invoices).
    - ``expiry_grace_s``: how long past its expiry an unpaid invoice is still watched (clock
      skew, late HTLCs) before its job is expired and the asker told.
    - ``history_turns``: the asker's last exchanges sent to the model as history.
    - ``retention_days``: questions and answers are erased after this (money records stay).
    - ``max_request_bytes``: a longer DM is dropped without a reply (and logged).
    - ``rate_per_minute`` / ``burst``: requests one pubkey may make (token bucket); beyond it
      requests are dropped without a reply and logged.
    - ``max_open_invoices_per_pubkey`` / ``max_open_invoices``: quotes awaiting payment, per
      asker and in all; beyond them no new invoice is made.
    - ``auto_refund``: pay refunds to the lud16 of the asker's profile by themselves.
    - ``stop_grace_s``: on SIGTERM, how long running work may finish before it is parked.
    - ``nip90_max_age_s``: a NIP-90 job request dated longer ago than this is ignored.
    - ``nip90_untargeted``: also take kind-5050 requests that tag no provider — paid service
      only (session or invoice; the pool never pays for them).
    - ``lease_s``: how long a replica's lease on a request, outbox event or payout lasts
      (renewed every third of it while the work runs): with several agents on one database,
      the work of one that dies is taken over by another this long after its last renewal.
    """

    concurrency: int = 4
    work_timeout_s: int = 120
    invoice_expiry_s: int = 600
    settlement_poll_s: int = 30
    expiry_grace_s: int = 60
    history_turns: int = 4
    retention_days: int = 7
    max_request_bytes: int = 4000
    rate_per_minute: int = 10
    burst: int = 5
    max_open_invoices_per_pubkey: int = 3
    max_open_invoices: int = 1000
    auto_refund: bool = True
    stop_grace_s: int = 10
    nip90_max_age_s: int = 3600
    nip90_untargeted: bool = False
    lease_s: int = 30

    def __post_init__(self) -> None:
        _int_in("concurrency", self.concurrency, 1, 256)
        _int_in("work_timeout_s", self.work_timeout_s, 1, 3600)
        _int_in("invoice_expiry_s", self.invoice_expiry_s, 10, 86_400)
        _int_in("settlement_poll_s", self.settlement_poll_s, 1, 3600)
        _int_in("expiry_grace_s", self.expiry_grace_s, 0, 3600)
        _int_in("history_turns", self.history_turns, 0, 50)
        _int_in("retention_days", self.retention_days, 0, 3650)
        _int_in("max_request_bytes", self.max_request_bytes, 16, 16_000)
        _int_in("rate_per_minute", self.rate_per_minute, 1, 100_000)
        _int_in("burst", self.burst, 1, 100_000)
        _int_in("max_open_invoices_per_pubkey", self.max_open_invoices_per_pubkey, 1, 1000)
        _int_in("max_open_invoices", self.max_open_invoices, 1, 1_000_000)
        if not isinstance(self.auto_refund, bool):
            raise AgentSettingsError("auto_refund must be true or false")
        _int_in("stop_grace_s", self.stop_grace_s, 0, 600)
        _int_in("nip90_max_age_s", self.nip90_max_age_s, 60, 7 * 86_400)
        if not isinstance(self.nip90_untargeted, bool):
            raise AgentSettingsError("nip90_untargeted must be true or false")
        _int_in("lease_s", self.lease_s, MIN_LEASE_S, MAX_LEASE_S)


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """What the agent's kind-0 profile says (``[profile]`` in ``timmy.toml``).

    ``lud16`` is the lightning address zaps reach (empty: none, or the wallet's own address
    when the wallet backend is ``lightning_address``).
    """

    name: str = "Timmy"
    about: str = "An AI agent on Nostr: DM me a question. Free while the zap-funded pool lasts."
    picture: str = ""
    lud16: str = ""

    def __post_init__(self) -> None:
        _text("name", self.name, 100)
        _text("about", self.about, 2000)
        _text("picture", self.picture, 2000)
        _text("lud16", self.lud16, 320)
