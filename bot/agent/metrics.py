"""The agent's Prometheus metrics, one :class:`Metrics` per agent (its own registry: a test
process runs several agents, and nothing here touches ``prometheus_client``'s global one).

Counted where it happens (each part is handed the agent's ``Metrics``):

- ``timmy_requests_in_total{protocol}``: requests recorded, by protocol (``nip04``, ``nip17``
  DMs; ``nip90`` jobs) — the agent's intake callback;
- ``timmy_rejected_events_total{reason}``: events dropped unserved — the guard's verdicts
  (``rate limited``, ``global flood``, ``oversized``), DMs that cannot be opened
  (``malformed``) and zap receipts refused by the zap intake (``zap receipt``);
- ``timmy_jobs_total{serve,outcome}``: jobs the flow finished — ``answered``, ``failed`` (work
  failed or timed out, or its input became unreadable: refunded), ``cancelled`` by the asker;
- ``timmy_work_seconds{result}``: how long the model took for one answer (``ok``, ``failed``);
- ``timmy_payouts_total{result}``: refund payouts attempted, by result (``paid``, ``in_flight``,
  ``failed``, ``rejected``).

Read at scrape time (:meth:`Metrics.observe_ledger`, :class:`RelayCollector`): the pool, open
invoices, refunds owed, unfinished jobs by state, the outbox backlog, each relay's connection
and event counters. Counters start at zero with each process, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.relays.status import RelayState, RelayStatus
from storage import PoolStatus

# no ``*_created`` series (process-wide): they double the page and nothing reads them
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROTOCOLS = ("nip04", "nip17", "nip90")
REJECT_REASONS = ("rate limited", "global flood", "oversized", "malformed", "zap receipt")
JOB_OUTCOMES = ("answered", "failed", "cancelled")
SERVE_PATHS = ("free", "session", "partial", "gate")
PAYOUT_RESULTS = ("paid", "in_flight", "failed", "rejected")
WORK_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """What the ledger says at scrape time."""

    pool: PoolStatus
    invoices_open: int
    refunds_owed: int
    refunds_owed_msat: int
    jobs_open: dict[str, int]  # unfinished jobs by state
    outbox_backlog: int


class RelayCollector(Collector):
    """Each relay's connection state and event counters, read from the pool when scraped."""

    def __init__(self, statuses: Callable[[], Sequence[RelayStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterable[Metric]:
        statuses = self._statuses()
        connected = GaugeMetricFamily("timmy_relay_connected",
                                      "1 when the relay is connected.", labels=["url"])
        events_in = CounterMetricFamily(
            "timmy_relay_events_in",
            "Events received: verified, or held already and dropped unread.", labels=["url"])
        events_out = CounterMetricFamily("timmy_relay_events_out",
                                         "Events the relay accepted from us.", labels=["url"])
        invalid = CounterMetricFamily("timmy_relay_rejected_in",
                                      "Frames or events from the relay that failed our checks.",
                                      labels=["url"])
        for s in statuses:
            connected.add_metric([s.url], int(s.state is RelayState.CONNECTED))
            events_in.add_metric([s.url], s.events_in)
            events_out.add_metric([s.url], s.events_out)
            invalid.add_metric([s.url], s.invalid_in)
        return [connected, events_in, events_out, invalid]


class Metrics:
    """See the module docstring."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests_in = Counter("timmy_requests_in", "Requests recorded, by protocol.",
                                   ["protocol"], registry=r)
        self.rejected = Counter("timmy_rejected_events", "Events dropped unserved, by reason.",
                                ["reason"], registry=r)
        self.jobs = Counter("timmy_jobs", "Jobs finished, by serve path and outcome.",
                            ["serve", "outcome"], registry=r)
        self.work_seconds = Histogram("timmy_work_seconds", "Time the model took for one "
                                      "answer, by result.", ["result"], buckets=WORK_BUCKETS_S,
                                      registry=r)
        self.payouts = Counter("timmy_payouts", "Refund payouts attempted, by result.",
                               ["result"], registry=r)
        for protocol in PROTOCOLS:
            self.requests_in.labels(protocol)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for serve in SERVE_PATHS:
            for outcome in JOB_OUTCOMES:
                self.jobs.labels(serve, outcome)
        for result in ("ok", "failed"):
            self.work_seconds.labels(result)
        for result in PAYOUT_RESULTS:
            self.payouts.labels(result)

        def gauge(name: str, text: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, text, labels, registry=r)

        self._available = gauge("timmy_pool_available_msat", "Pool balance spendable now.")
        self._reserved = gauge("timmy_pool_reserved_msat", "Pool held by running jobs.")
        self._given_today = gauge("timmy_pool_subsidy_today_msat",
                                  "Pool given away today (UTC).")
        self._funded = gauge("timmy_pool_funded_msat", "Pool funding received in all.")
        self._given = gauge("timmy_pool_given_msat", "Pool given away in all.")
        self._zaps = gauge("timmy_pool_zaps", "Zaps that funded the pool.")
        self._invoices = gauge("timmy_invoices_open", "Invoices awaiting payment.")
        self._refunds = gauge("timmy_refunds_pending", "Refunds owed (pending or being paid).")
        self._refunds_msat = gauge("timmy_refunds_pending_msat", "Amount of the refunds owed.")
        self._jobs_open = gauge("timmy_jobs_open", "Jobs not yet finished, by state.", ["state"])
        self._backlog = gauge("timmy_outbox_backlog",
                              "Events stored and not yet delivered.")

    def watch_relays(self, statuses: Callable[[], Sequence[RelayStatus]]) -> None:
        self.registry.register(RelayCollector(statuses))

    def observe_ledger(self, figures: LedgerFigures) -> None:
        pool = figures.pool
        self._available.set(pool.available_msat)
        self._reserved.set(pool.reserved_msat)
        self._given_today.set(pool.spent_today_msat)
        self._funded.set(pool.total_in_msat)
        self._given.set(pool.total_spent_msat)
        self._zaps.set(pool.zap_count)
        self._invoices.set(figures.invoices_open)
        self._refunds.set(figures.refunds_owed)
        self._refunds_msat.set(figures.refunds_owed_msat)
        for state, count in figures.jobs_open.items():
            self._jobs_open.labels(state).set(count)
        self._backlog.set(figures.outbox_backlog)

    def job_finished(self, serve: str, outcome: str) -> None:
        self.jobs.labels(serve, outcome).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
