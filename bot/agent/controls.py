"""The operator's live controls (admin commands), kept across restarts in ``agent_state``.

``pause`` stops free service: the ledger then sees a zero daily allowance, so nobody is served
free or partly free (sessions and paid answers go on). ``set_limit`` overrides one of the
configured daily limits. Both take effect at once on ``ledger.limits``, and set ``changed``
(the agent re-publishes its NIP-89 announcement, which carries the free allowance).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, replace
from typing import Any

from storage import Intake, Ledger, Limits

_KEY = "controls"


class Controls:
    def __init__(self, ledger: Ledger, intake: Intake, configured: Limits) -> None:
        self._ledger = ledger
        self._intake = intake
        self._configured = configured
        self._overrides: dict[str, Any] = {}
        self.paused = False
        self.changed = asyncio.Event()

    async def load(self) -> None:
        raw = await self._intake.state(_KEY)
        if raw:
            saved = json.loads(raw)
            self.paused = bool(saved.get("paused", False))
            self._overrides = dict(saved.get("limits", {}))
        self._apply()

    @property
    def limits(self) -> Limits:
        """The limits in force before a pause (configured + overrides)."""
        return replace(self._configured, **self._overrides)

    def _apply(self) -> None:
        limits = self.limits
        if self.paused:
            limits = replace(limits, daily_free_msat=0, daily_free_jobs=0)
        self._ledger.limits = limits

    async def _save(self) -> None:
        await self._intake.set_state(
            _KEY, json.dumps({"paused": self.paused, "limits": self._overrides}))

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused
        await self._save()
        self._apply()
        self.changed.set()

    async def set_limit(self, key: str, value: int | None) -> None:
        """Override one limit (validated by ``Limits``: a bad value raises, nothing changes)."""
        candidate = {**self._overrides, key: value}
        Limits(**{**asdict(self._configured), **candidate})
        self._overrides = candidate
        await self._save()
        self._apply()
        self.changed.set()
