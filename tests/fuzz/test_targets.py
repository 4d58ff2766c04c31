"""The fuzz properties CI runs: for every entry point of outside input, hostile inputs give a
success or that layer's typed refusal, never anything else (see ``targets.py``).

Each target runs its ``ci_examples`` (times ``$TIMMY_FUZZ_SCALE``, default 1): the whole suite
stays within about a minute. ``scripts/fuzz`` runs the long campaign over the same targets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import TARGETS, Target

SCALE = float(os.environ.get("TIMMY_FUZZ_SCALE", "1"))


def _property(target: Target) -> Callable[[], None]:
    @settings(max_examples=max(1, round(target.ci_examples * SCALE)), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def test(value: Any) -> None:
        target.check(value)

    test.__name__ = test.__qualname__ = f"test_{target.name}"
    test.__doc__ = f"{target.what}: a success or a typed refusal, never anything else."
    return test


for _target in TARGETS:
    globals()[f"test_{_target.name}"] = _property(_target)
