"""The agent's metrics: each agent has its own registry, and every metric it exposes is in
docs/OPERATIONS.md's table."""

from __future__ import annotations

import re
from pathlib import Path

from bot.agent.metrics import Metrics

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def _exposed(metrics: Metrics) -> set[str]:
    return {f.name + ("_total" if f.type == "counter" else "")
            for f in metrics.registry.collect()}


def test_every_metric_is_documented() -> None:
    metrics = Metrics()
    metrics.watch_relays(lambda: [])
    table = [line.split("|")[1] for line in OPERATIONS.read_text(encoding="utf-8").splitlines()
             if line.startswith("| `timmy_")]  # the metrics table's first column
    documented = {name for cell in table for name in re.findall(r"`(timmy_[a-z_]+)", cell)}
    exposed = _exposed(metrics)
    assert exposed - documented == set(), "exposed but not in docs/OPERATIONS.md"
    assert documented - exposed == set(), "in docs/OPERATIONS.md but not exposed"


def test_two_agents_count_apart() -> None:
    one, two = Metrics(), Metrics()
    one.job_finished("free", "answered")
    one.rejected.labels("oversized").inc()
    assert one.registry.get_sample_value(
        "timmy_jobs_total", {"serve": "free", "outcome": "answered"}) == 1
    assert two.registry.get_sample_value(
        "timmy_jobs_total", {"serve": "free", "outcome": "answered"}) == 0
    assert b'timmy_rejected_events_total{reason="oversized"} 1.0' in one.text()
    assert b"_created" not in one.text()
