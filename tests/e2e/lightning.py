"""Lightning on the askers' side: find the invoice in a reply, pay it from an LNbits wallet,
make an invoice for a refund claim, and look at the agent's LNbits wallet from outside.

:class:`LnbitsUser` wraps one LNbits wallet (``LnbitsAccount``) over its REST API: ``pay``
(admin key), ``invoice`` and ``is_paid`` (invoice key), ``balance_msat``, ``payments``.
:class:`Payer` pays, from one of them, every invoice that appears in some askers' replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import Any

import httpx

from bot.wallets.bolt11 import DecodedInvoice, decode_invoice
from tests.e2e.askers import Asker
from tests.fixtures.lnbits import LnbitsAccount

BOLT11_LINE = re.compile(r"^\s*(?:lightning:)?(ln(?:bcrt|bc|tbs|tb)[0-9a-z]+)\s*$",
                         re.IGNORECASE | re.MULTILINE)
SATS_RE = re.compile(r"(\d[\d,]*)\s*sats?\b")


def find_bolt11(text: str) -> str | None:
    """The invoice of a reply: a line holding only a bolt11 (``lightning:`` prefix allowed)."""
    found = BOLT11_LINE.findall(text)
    return found[0].lower() if found else None


def require_bolt11(text: str) -> DecodedInvoice:
    bolt11 = find_bolt11(text)
    assert bolt11 is not None, f"no invoice line in the reply:\n{text}"
    return decode_invoice(bolt11)


def sats_mentioned(text: str) -> list[int]:
    """Every ``N sats`` amount in ``text``, in order."""
    return [int(m.replace(",", "")) for m in SATS_RE.findall(text)]


@dataclass
class PaymentFailed(AssertionError):
    status: int
    body: str

    def __str__(self) -> str:
        return f"LNbits refused the payment ({self.status}): {self.body}"


class LnbitsUser:
    """One LNbits wallet seen through its REST API (a fresh HTTP client per call)."""

    def __init__(self, server_url: str, account: LnbitsAccount) -> None:
        self.url = server_url
        self.account = account

    async def _call(self, method: str, path: str, key: str,
                    body: dict[str, Any] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0) as client:
            return await client.request(method, path, json=body, headers={"X-Api-Key": key})

    async def pay(self, bolt11: str) -> str:
        """Pay ``bolt11``; returns the payment hash. Raises :class:`PaymentFailed`."""
        resp = await self._call("POST", "/api/v1/payments", self.account.adminkey,
                                {"out": True, "bolt11": bolt11})
        if resp.status_code >= 300:
            raise PaymentFailed(resp.status_code, resp.text)
        return str(resp.json()["payment_hash"])

    async def invoice(self, amount_sat: int, memo: str = "refund") -> tuple[str, str]:
        """A new invoice to this wallet: ``(bolt11, payment_hash)``."""
        resp = await self._call("POST", "/api/v1/payments", self.account.inkey,
                                {"out": False, "amount": amount_sat, "memo": memo})
        resp.raise_for_status()
        data = resp.json()
        return str(data.get("bolt11") or data["payment_request"]), str(data["payment_hash"])

    async def is_paid(self, payment_hash: str) -> bool:
        resp = await self._call("GET", f"/api/v1/payments/{payment_hash}", self.account.inkey)
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return bool(resp.json().get("paid"))

    async def balance_msat(self) -> int:
        resp = await self._call("GET", "/api/v1/wallet", self.account.inkey)
        resp.raise_for_status()
        return int(resp.json()["balance"])

    async def payments(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Every payment of this wallet, incoming invoices (paid or not) included."""
        resp = await self._call("GET", f"/api/v1/payments?limit={limit}", self.account.inkey)
        resp.raise_for_status()
        data = resp.json()
        rows = data["data"] if isinstance(data, dict) and "data" in data else data
        return list(rows)

    async def invoices_made(self) -> int:
        """How many invoices this wallet has made (its incoming payments, paid or not)."""
        return sum(1 for p in await self.payments() if int(p.get("amount", 0)) > 0)


class Payer:
    """Pays every invoice that appears in a reply, once, in the background."""

    def __init__(self, wallet: LnbitsUser, askers: list[Asker]) -> None:
        self.wallet = wallet
        self.askers = askers
        self.paid: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            for asker in self.askers:
                for reply in list(asker.replies):
                    bolt11 = find_bolt11(reply.text)
                    if bolt11 is None or bolt11 in self.paid:
                        continue
                    try:
                        await self.wallet.pay(bolt11)
                    except PaymentFailed as exc:
                        raise AssertionError(f"an invoice could not be paid: {exc}") from exc
                    self.paid[bolt11] = decode_invoice(bolt11).amount_msat or 0
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            if self.task.done():
                self.task.result()  # raises what went wrong
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
