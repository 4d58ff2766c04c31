"""The running agent's speed, beside the relay's own floor measured in the same run.

Run: ``.venv/bin/python bench/agent.py [--parallel 100] [--sequential 20] [--rounds 6]``.

It starts a real relay (``nostr-relay``), the OpenAI-compatible test server in its own process
(an instant work backend: it answers at once), and ``timmy run`` as its own process (dev wallet,
a pool large enough for every answer), then drives it with nostr-sdk askers, free answers over
NIP-17:

- ``agent parallel`` — ``--parallel`` askers with distinct fresh keys ask at once: DM→reply
  latency p50/p99 and replies per second (first send → last reply); ``known`` — the same askers
  again (their keys known to the agent now): a fresh key must cost no more than a known one;
- ``agent sequential`` — ``--sequential`` fresh askers one after another;
- ``floor`` — the same, through the same relay, against a do-nothing echo (its own process, raw
  websockets) that answers each DM at once with ready-made events of the sizes the agent sends
  (the reply wrap and its self copy): what the relay alone costs;
- ``cpu_ms_per_job`` — the agent process's own CPU time (``/proc/<pid>/stat``, user + system)
  over the ``--rounds`` × ``--parallel`` soak, per job (and per round: the first with fresh
  keys, the others with known ones); beside it, the echo's own CPU per DM over the floor's
  parallel round (``floor cpu``): what relay I/O alone costs a Python process;
- ``model_io`` — in a fresh Python process (the agent's process type): a job's requests to the
  model server alone (the exact count behind the estimate, then the answer), through the
  product's own backend and HTTP client, 8 jobs in flight as in the agent: with ``crypto`` and
  the echo's figure, what a job costs before any ledger, flow or Nostr parsing;
- ``rss_growth_mib`` — the agent's RSS (``VmRSS``) after a warm-up and after the soak;
- ``crypto_ms_per_job`` — in a fresh Python process (the agent's process type): a job's
  cryptography alone with our ``bot.nostr`` code: the request wrap's id and signature checked,
  unwrapped (ECDH, NIP-44, the seal's signature), and the reply wrapped twice (recipient and self
  copy: four signatures, four ECDH, four NIP-44 encryptions), fresh keys each time.

With ``--nip90`` the same agent is driven with NIP-90 instead: ``--parallel`` customers with
fresh keys (our own relay pool, one connection) publish a kind-5050 request each at once, and
the latency is request → kind-6050 result (p50/p99, results per second), over ``--rounds``
rounds; its last line is ``nip90_p50_ms=… nip90_p99_ms=… results_per_s=…`` (compare with
NostrDVM on the same relay: 53–66 requests/s, p99 1.5–1.9 s measured for issue 9).

The last line is ``p50_ms=… p99_ms=… floor_p99_ms=… replies_per_s=… floor_replies_per_s=…
cpu_ms_per_job=… crypto_ms_per_job=… rss_growth_mib=…`` (p50/p99/replies_per_s: the fresh-key
parallel round). Targets (issue 8): p99 ≤ floor p99 + 100 ms, replies/s ≥ 90 % of the floor's,
cpu ≤ 2 × crypto, RSS growth ≤ 10 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nostr_sdk as sdk
import websockets

from bot.agent.flow import SYSTEM_PROMPT
from bot.nostr import nip17, nip90
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.work.config import OpenAIConfig
from bot.work.openai_compat import OpenAIBackend
from bot.work.result import Answer, WorkRequest
from tests.e2e.agent_process import AgentConfig, AgentProcess, RelayEntry, dev_wallet
from tests.e2e.askers import Asker, Hub
from tests.e2e.money import fund_pool
from tests.fixtures.relay import RelayFactory

SELF = str(Path(__file__).resolve())
QUESTION = "What is the capital of France?"
REPLY_TIMEOUT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 1024


# -- the helper processes -----------------------------------------------------------------


def serve_ai() -> int:
    """``--ai-server``: the test AI server in this process; prints its URL, serves until stdin
    closes."""
    from tests.fixtures.ai_server import AiTestServer

    server = AiTestServer()
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()
    return 0


async def echo(relay_url: str, pubkey: str, prepared: dict[str, list[str]]) -> int:
    """``--echo``: answer each prepared DM at once with its ready-made reply events."""
    async with websockets.connect(relay_url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps(["REQ", "echo", {"kinds": [1059], "#p": [pubkey]}]))
        async for raw in ws:
            message = json.loads(raw)
            if message[0] == "EOSE":
                print("echo ready", flush=True)
            elif message[0] == "EVENT" and len(message) == 3:
                for event_json in prepared.get(message[2].get("id", ""), []):
                    await ws.send(f'["EVENT",{event_json}]')
    return 0


async def model_io(ai_url: str, jobs: int, in_flight: int = 8) -> float:
    """``--model-io``: CPU ms per job of a job's requests to the model server alone."""
    backend = OpenAIBackend(OpenAIConfig(base_url=ai_url, model="test", max_tokens=64,
                                         max_attempts=1, headers={"X-Scenario": "default"}))
    slots = asyncio.Semaphore(in_flight)

    async def job(n: int) -> None:
        request = WorkRequest(question=f"{QUESTION} ({n})", max_tokens=64, timeout_s=30.0,
                              system=SYSTEM_PROMPT)
        async with slots:
            await backend.count_prompt_tokens(request)
            if not isinstance(await backend.answer(request), Answer):
                raise RuntimeError("the model server did not answer")

    try:
        await asyncio.gather(*(job(n) for n in range(20)))  # connections open, code warm
        start = time.process_time()
        await asyncio.gather(*(job(n) for n in range(jobs)))
        return (time.process_time() - start) * 1000 / jobs
    finally:
        await backend.aclose()


def crypto(jobs: int, reply_bytes: int) -> float:
    """``--crypto``: CPU ms per job of a job's cryptography alone (see the module docstring)."""
    agent = Keys.generate()
    filler = "x" * reply_bytes
    inputs = []
    for _ in range(jobs):
        sender = Keys.generate()
        wrap = nip17.private_message(sender, agent.public_hex, QUESTION).to_recipient
        inputs.append(wrap.to_json())
    start = time.process_time()
    for raw in inputs:
        message = nip17.receive(agent, Event.from_json(raw))
        nip17.private_message(agent, message.sender, filler, reply_to=message.rumor_id)
    return (time.process_time() - start) * 1000 / jobs


# -- measuring ----------------------------------------------------------------------------


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / PAGE_KIB
    raise RuntimeError("no VmRSS")


@dataclass
class Round:
    latencies_ms: list[float]
    replies_per_s: float
    cpu_ms_per_job: float = 0.0
    """The agent's CPU per job in this round (soak rounds only)."""

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    def line(self, label: str) -> str:
        return (f"{label:<28} p50 {self.p50:7.1f} ms  p99 {self.p99:7.1f} ms  "
                f"{self.replies_per_s:7.1f} replies/s  ({len(self.latencies_ms)} DMs)")


async def _timed(asker: Asker, request_id: str) -> float:
    sent = [r.sent_at for r in asker.requests if r.id == request_id]
    if len(sent) != 1:  # the agent answers a message once: a second send times nothing
        raise RuntimeError(f"message {request_id[:8]} was sent {len(sent)} times")
    reply = await asker.reply_to(request_id, 0, REPLY_TIMEOUT_S)
    return (reply.received_at - sent[0]) * 1000


async def parallel(askers: Sequence[Asker], built: Sequence[tuple[str, sdk.Event]] | None = None,
                   question: str = QUESTION) -> Round:
    """Every asker sends at once (``built``: ready-made requests), all replies awaited.
    Askers that ask again must ask something else: the same text from the same key in the
    same second is the same NIP-17 message (its rumor id), which the agent answers once."""
    start = time.monotonic()
    if built is None:
        ids = await asyncio.gather(*(a.send(question) for a in askers))
    else:
        await asyncio.gather(*(a.send_event(ev, rid, "nip17", QUESTION)
                               for a, (rid, ev) in zip(askers, built, strict=True)))
        ids = [rid for rid, _ in built]
    latencies = await asyncio.gather(*(_timed(a, i) for a, i in zip(askers, ids, strict=True)))
    last = max(a.replies_to(i)[0].received_at for a, i in zip(askers, ids, strict=True))
    return Round(list(latencies), len(askers) / (last - start))


async def sequential(askers: Sequence[Asker],
                     built: Sequence[tuple[str, sdk.Event]] | None = None) -> Round:
    latencies = []
    start = time.monotonic()
    for i, asker in enumerate(askers):
        if built is None:
            rid = await asker.send(QUESTION)
        else:
            rid, event = built[i]
            await asker.send_event(event, rid, "nip17", QUESTION)
        latencies.append(await _timed(asker, rid))
    return Round(latencies, len(askers) / (time.monotonic() - start))


# -- the run ------------------------------------------------------------------------------


async def measure_agent(agent: AgentProcess, relay: str, n_parallel: int, n_seq: int,
                        rounds: int) -> tuple[list[Round], Round, float, float, float, int]:
    pid = agent.pid
    assert pid is not None
    async with Hub([relay]) as hub:
        warm = await hub.new_askers(agent.pubkey_hex, 20)
        await parallel(warm)
        reply_bytes = len(warm[0].replies[0].text.encode())
        rss_before = rss_mib(pid)
        crowd = await hub.new_askers(agent.pubkey_hex, n_parallel)
        cpu_before = cpu_ms(pid)
        soak = []
        for n in range(rounds):
            start = cpu_ms(pid)
            done = await parallel(crowd, question=f"{QUESTION} ({n + 1})")
            done.cpu_ms_per_job = (cpu_ms(pid) - start) / n_parallel
            soak.append(done)
        cpu_per_job = (cpu_ms(pid) - cpu_before) / (rounds * n_parallel)
        rss_after = rss_mib(pid)
        seq = await sequential(await hub.new_askers(agent.pubkey_hex, n_seq))
    return soak, seq, cpu_per_job, rss_before, rss_after, reply_bytes


async def measure_floor(relay: str, prepared_path: str, n_parallel: int, n_seq: int,
                        reply_bytes: int) -> tuple[Round, Round, float]:
    """The floor's parallel and sequential rounds, and the echo's own CPU ms per DM over the
    parallel round (relay I/O alone: no cryptography, ledger or model)."""
    echo_keys = Keys.generate()
    reply_text = "x" * reply_bytes
    async with Hub([relay]) as hub:
        crowd = await hub.new_askers(echo_keys.public_hex, n_parallel)
        seq_askers = await hub.new_askers(echo_keys.public_hex, n_seq)
        built: dict[int, list[tuple[str, sdk.Event]]] = {0: [], 1: []}
        prepared: dict[str, list[str]] = {}
        for group, askers in enumerate((crowd, seq_askers)):
            for asker in askers:
                rumor_id, wrap = asker.build(QUESTION, "nip17")
                out = nip17.private_message(echo_keys, asker.pubkey, reply_text,
                                            reply_to=rumor_id)
                prepared[wrap.id().to_hex()] = [out.to_recipient.to_json(), out.to_self.to_json()]
                built[group].append((rumor_id, wrap))
        await asyncio.to_thread(_write, prepared_path, json.dumps(prepared))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, SELF, "--echo", prepared_path, "--relay", relay,
            "--pubkey", echo_keys.public_hex, stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"echo ready"
            start = cpu_ms(proc.pid)
            par = await parallel(crowd, built[0])
            echo_cpu = (cpu_ms(proc.pid) - start) / n_parallel
            seq = await sequential(seq_askers, built[1])
        finally:
            proc.terminate()
            await proc.wait()
    return par, seq, echo_cpu


async def _send(pool: RelayPool, request: Event, sent: dict[str, float]) -> None:
    sent[request.id] = time.monotonic()
    await pool.publish(request)


async def measure_nip90(agent_pubkey: str, relay: str, n_parallel: int, rounds: int
                        ) -> list[Round]:
    """``rounds`` rounds of ``n_parallel`` fresh customers each sending one request at once."""
    results: dict[str, float] = {}
    arrived = asyncio.Event()

    async def on_result(event: Event, relay_url: str) -> None:
        for request_id in event.tag_values("e"):
            results.setdefault(request_id, time.monotonic())
        arrived.set()

    out = []
    async with RelayPool([RelayConfig(relay)], keys=Keys.generate()) as pool:
        await pool.wait_connected(10)
        for _ in range(rounds):
            customers = [Keys.generate() for _ in range(n_parallel)]
            await pool.subscribe([{"kinds": [nip90.KIND_TEXT_RESULT],
                                   "#p": [c.public_hex for c in customers]}], on_result,
                                 lookback_s=60)
            requests = [sign_event(c, nip90.KIND_TEXT_JOB, "", [["i", QUESTION, "text"],
                                                                ["p", agent_pubkey]])
                        for c in customers]
            sent: dict[str, float] = {}
            start = time.monotonic()
            await asyncio.gather(*(_send(pool, r, sent) for r in requests))
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                while not all(r.id in results for r in requests):
                    arrived.clear()
                    await arrived.wait()
            latencies = [(results[r.id] - sent[r.id]) * 1000 for r in requests]
            last = max(results[r.id] for r in requests)
            out.append(Round(latencies, n_parallel / (last - start)))
    return out


def _write(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def model_io_in_child(ai_url: str, jobs: int = 400) -> float:
    out = subprocess.run([sys.executable, SELF, "--model-io", str(jobs), "--ai-url", ai_url],
                         capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def crypto_in_child(reply_bytes: int, jobs: int = 200) -> float:
    out = subprocess.run([sys.executable, SELF, "--crypto", str(jobs),
                          "--reply-bytes", str(reply_bytes)],
                         capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--parallel", type=int, default=100)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--nip90", action="store_true",
                        help="drive the agent with NIP-90 job requests instead of DMs")
    parser.add_argument("--ai-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--echo", help=argparse.SUPPRESS)
    parser.add_argument("--relay", help=argparse.SUPPRESS)
    parser.add_argument("--pubkey", help=argparse.SUPPRESS)
    parser.add_argument("--crypto", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-io", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ai-url", help=argparse.SUPPRESS)
    parser.add_argument("--reply-bytes", type=int, default=140, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ai_server:
        return serve_ai()
    if args.echo:
        prepared = json.loads(Path(args.echo).read_text())
        return asyncio.run(echo(args.relay, args.pubkey, prepared))
    if args.crypto:
        print(f"{crypto(args.crypto, args.reply_bytes):.4f}")
        return 0
    if args.model_io:
        print(f"{asyncio.run(model_io(args.ai_url, args.model_io)):.4f}")
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        work = Path(tmp)
        relays = RelayFactory(work / "relays")
        relay = relays().url
        ai = subprocess.Popen([sys.executable, SELF, "--ai-server"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        agent: AgentProcess | None = None
        try:
            assert ai.stdout is not None
            ai_url = ai.stdout.readline().strip()
            jobs = args.rounds * args.parallel + args.parallel + args.sequential + 40
            agent = AgentProcess(work / "agent", AgentConfig(
                relays=[RelayEntry(relay)], ai_url=ai_url, wallet=dev_wallet(),
                limits={"daily_free_msat": 10_000_000, "daily_free_jobs": 1000},
                service={"concurrency": 8, "rate_per_minute": 6000, "burst": 100}))
            agent.start()
            asyncio.run(fund_pool(agent.db_path, jobs * 20_000, "bench:pool"))
            if args.nip90:
                nip90_rounds = asyncio.run(measure_nip90(agent.pubkey_hex, relay, args.parallel,
                                                         args.rounds))
                agent.stop()
                for i, r in enumerate(nip90_rounds):
                    print(r.line(f"nip90 parallel {args.parallel} round {i + 1}"))
                first = nip90_rounds[0]
                print(f"nip90_p50_ms={first.p50:.1f} nip90_p99_ms={first.p99:.1f} "
                      f"results_per_s={first.replies_per_s:.1f}")
                return 0
            soak, seq, cpu_per_job, rss_before, rss_after, reply_bytes = asyncio.run(
                measure_agent(agent, relay, args.parallel, args.sequential, args.rounds))
            floor_par, floor_seq, echo_cpu = asyncio.run(
                measure_floor(relay, str(work / "floor.json"), args.parallel, args.sequential,
                              reply_bytes))
            agent.stop()
            model_ms = model_io_in_child(ai_url)
        finally:
            if agent is not None:
                agent.close()
            if ai.stdin is not None:
                ai.stdin.close()
            ai.wait(10)
            relays.stop_all()
    crypto_ms = crypto_in_child(reply_bytes)

    print(soak[0].line(f"agent parallel {args.parallel} fresh"))
    if len(soak) > 1:
        print(soak[1].line(f"agent parallel {args.parallel} known"))
    print(seq.line(f"agent sequential {args.sequential}"))
    print(floor_par.line(f"floor parallel {args.parallel}"))
    print(floor_seq.line(f"floor sequential {args.sequential}"))
    for i, r in enumerate(soak):
        keys = "fresh keys" if i == 0 else "known keys"
        print(f"  soak round {i + 1} ({keys}): p50 {r.p50:.1f} ms p99 {r.p99:.1f} ms "
              f"{r.replies_per_s:.1f} replies/s, {r.cpu_ms_per_job:.2f} ms CPU per job")
    print(f"agent cpu: {cpu_per_job:.2f} ms per job over {len(soak) * args.parallel} jobs; "
          f"crypto floor {crypto_ms:.2f} ms per job (reply text {reply_bytes} bytes)")
    print(f"floor cpu: {echo_cpu:.2f} ms per DM in the echo (relay I/O alone, over its "
          f"parallel round)")
    print(f"pieces: crypto {crypto_ms:.2f} + model requests {model_ms:.2f} + relay I/O "
          f"{echo_cpu:.2f} = {crypto_ms + model_ms + echo_cpu:.2f} ms per job, measured alone, "
          f"against the agent's {cpu_per_job:.2f}")
    print(f"agent rss: {rss_before:.1f} MiB after warm-up, {rss_after:.1f} MiB after "
          f"{len(soak)}×{args.parallel} requests")
    fresh = soak[0]
    print(f"p50_ms={fresh.p50:.1f} p99_ms={fresh.p99:.1f} floor_p99_ms={floor_par.p99:.1f} "
          f"replies_per_s={fresh.replies_per_s:.1f} "
          f"floor_replies_per_s={floor_par.replies_per_s:.1f} "
          f"cpu_ms_per_job={cpu_per_job:.2f} crypto_ms_per_job={crypto_ms:.2f} "
          f"rss_growth_mib={rss_after - rss_before:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
