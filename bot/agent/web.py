"""The agent's optional read-only HTTP port: a pool page for zappers, ``/metrics`` and ``/healthz``.

:class:`StatusServer` (off unless ``timmy run --http-port`` is given; on in ``timmy demo``) is a
small HTTP/1.1 server on asyncio streams that answers ``GET`` (and ``HEAD``) only:

- ``/``: an HTML page with the pool's figures (available, given today and to how many questions,
  funded by how many zaps from how many zappers), the recent zaps (zapper's npub, amount, their
  note), the agent's npub and its lightning address as a ``lightning:`` link and a QR code of
  its LNURL (an inline SVG made here with ``segno``: the page loads nothing). No element takes
  input; nothing on it names a secret or an asker's question.
- ``/metrics``: the Prometheus text format of the agent's :class:`~bot.agent.metrics.Metrics`
  (``prometheus-client``), the ledger's figures read at each scrape (pool, open invoices,
  refunds owed, jobs not yet finished by state, the outbox backlog).
- ``/healthz``: JSON ``{"ok": ..., "relays": ..., "wallet": ..., "database": ...}``, HTTP 200 when
  at least one relay is connected, the wallet answers (a refusal is an answer: a lightning
  address has no readable balance) and the database takes a write transaction; 503 otherwise.

A request line or header block over :data:`MAX_REQUEST_BYTES`, or slower than
:data:`READ_TIMEOUT_S`, is dropped; anything else than ``GET``/``HEAD`` gets 405.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import segno

from bot.agent.agent import Agent
from bot.agent.metrics import CONTENT_TYPE, LedgerFigures
from bot.agent.texts import sats
from bot.nostr import nip19
from bot.nostr.hexutil import is_hex
from bot.relays.status import RelayState
from bot.wallets.base import LnurlError, WalletRefused
from bot.wallets.lnurl import encode_lnurl
from storage import JobState

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 5.0
RECENT_ZAPS = 10
OPEN_JOB_STATES = (JobState.QUOTED, JobState.INVOICED, JobState.PAID, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes


REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _npub(pubkey: str | None) -> str:
    if pubkey is None or not is_hex(pubkey, 64):
        return "someone"
    return nip19.encode_bytes("npub", bytes.fromhex(pubkey))


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class StatusServer:
    def __init__(self, agent: Agent, host: str = "127.0.0.1", port: int = 0) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._routes: dict[str, Callable[[], Awaitable[Response]]] = {
            "/": self.page, "/metrics": self.metrics, "/healthz": self.health}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  limit=MAX_REQUEST_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.close()
            return
        try:
            method, target, _ = head.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
        except (UnicodeDecodeError, ValueError):
            writer.close()
            return
        path = target.split("?", 1)[0]
        route = self._routes.get(path)
        if method not in {"GET", "HEAD"}:
            response = Response(405, "text/plain; charset=utf-8", b"read-only\n")
        elif route is None:
            response = Response(404, "text/plain; charset=utf-8", b"not found\n")
        else:
            try:
                response = await route()
            except Exception:
                log.exception("status page %s failed", path)
                response = Response(503, "text/plain; charset=utf-8", b"unavailable\n")
        headers = (f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}\r\n"
                   f"Content-Type: {response.content_type}\r\n"
                   f"Content-Length: {len(response.body)}\r\n"
                   "Cache-Control: no-store\r\n"
                   "X-Content-Type-Options: nosniff\r\n"
                   "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
                   "Connection: close\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(headers.encode("ascii") + (b"" if method == "HEAD" else response.body))
            await writer.drain()
        writer.close()

    # ------------------------------------------------------------------ the routes

    async def page(self) -> Response:
        a = self.agent
        pool = await a.ledger.pool_status()
        zaps = await a.ledger.recent_zaps(RECENT_ZAPS)
        npub = a.parts.keys.npub
        lud16 = a.parts.profile.lud16
        name = html.escape(a.parts.profile.name)
        zap = (f'<p>Zap it at <a id="lud16" href="lightning:{html.escape(lud16)}">'
               f"{html.escape(lud16)}</a> to fund free answers for everyone.</p>\n"
               f"{self._qr(lud16)}") if lud16 else (
               "<p>This agent has no lightning address set, so it cannot be zapped yet.</p>")
        real = "" if a.parts.wallet.is_real_money else (
            '<p class="warn">Test wallet: NOT REAL MONEY.</p>')
        recent = "\n".join(
            f'<li><code>{_npub(z.funder)}</code> zapped <b>{sats(z.amount_msat)}</b> '
            f"<small>{_when(z.created_at)}</small>"
            + (f"<br><q>{html.escape(z.note)}</q>" if z.note else "") + "</li>"
            for z in zaps) or "<li>No zaps yet: be the first.</li>"
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}: the pool</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}
dt{{font-weight:bold}}dd{{margin:0 0 .8em 0;font-size:1.4em}}.warn{{color:#a00}}
code{{word-break:break-all}}li{{margin:0 0 .6em 0}}#qr svg{{display:block}}</style></head>
<body>
<h1>{name}</h1>
<p>An AI agent on Nostr: DM it a question. Answers are free while this pool lasts.</p>
{real}
<dl>
<dt>Pool available</dt><dd id="available">{sats(pool.available_msat)}</dd>
<dt>Given today</dt><dd id="given-today">{sats(pool.spent_today_msat)}</dd>
<dt>Questions the pool paid for today</dt><dd id="free-today">{pool.jobs_today}</dd>
<dt>Funded</dt><dd id="funded">{sats(pool.total_in_msat)} by {pool.zap_count} zaps
from {pool.zapper_count} zappers</dd>
<dt>Given in all</dt><dd id="given">{sats(pool.total_spent_msat)}</dd>
</dl>
<h2>Recent zaps</h2>
<ul id="zaps">
{recent}
</ul>
<p>The agent: <code id="npub">{npub}</code></p>
{zap}
</body></html>
"""
        return Response(200, "text/html; charset=utf-8", body.encode("utf-8"))

    def _qr(self, lud16: str) -> str:
        """The address's LNURL (LUD-01, upper case as QR codes want it) as an inline SVG QR
        code, made here: the page loads nothing."""
        try:
            lnurl = encode_lnurl(self.agent.lnurl.address_url(lud16)).upper()
        except LnurlError:
            return ""
        svg = segno.make(f"LIGHTNING:{lnurl}", error="m").svg_inline(
            scale=4, title=f"Zap {lud16}")
        return f'<div id="qr">{svg}</div>'

    async def metrics(self) -> Response:
        a = self.agent
        jobs = await a.ledger.jobs_in_state(*OPEN_JOB_STATES)
        owed, owed_msat = await a.ledger.refunds_owed()
        a.metrics.observe_ledger(LedgerFigures(
            pool=await a.ledger.pool_status(),
            invoices_open=len(await a.ledger.open_invoices()),
            refunds_owed=owed, refunds_owed_msat=owed_msat,
            jobs_open={s.value: sum(j.state is s for j in jobs) for s in OPEN_JOB_STATES},
            outbox_backlog=await a.outbox.backlog()))
        return Response(200, CONTENT_TYPE, a.metrics.text())

    async def health(self) -> Response:
        a = self.agent
        relays = sum(s.state is RelayState.CONNECTED for s in a.pool.status())
        wallet = await _answers(a.parts.wallet.balance_msat())
        database = await _answers(a.parts.db.write(lambda conn: conn.execute("SELECT 1")
                                                   .fetchone()))
        ok = relays > 0 and wallet and database
        body = json.dumps({"ok": ok, "relays": relays, "wallet": wallet, "database": database})
        return Response(200 if ok else 503, "application/json", body.encode() + b"\n")


async def _answers(call: Awaitable[object]) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await call
    except WalletRefused:
        return True  # it answered, with a refusal (a lightning address has no balance)
    except Exception:
        return False
    return True
