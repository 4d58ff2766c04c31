"""The running agent as its own process, driven from outside (``AGENT_CONTRACT.md``).

:class:`AgentProcess` writes ``timmy.toml``, ``relays.toml`` and a 0600 key file into its own
directory, starts ``[sys.executable, "-m", "bot", "run", "--config", PATH]`` with ``PYTHONPATH``
set to this checkout (so a worktree runs its own code), and waits for the ready line
``timmy: running as <npub> (<hex>) on N relays`` on stderr. Stdout and stderr go to
``agent.log`` in that directory (appended across restarts); every failure message carries its
tail.

- ``start()`` / ``restart()``; ``kill()`` = SIGKILL (a crash, no shutdown); ``stop()`` = SIGTERM,
  and it must exit with code 0 within ``stop_bound_s``.
- ``db_location``: the ledger, its own directory's ``ledger.sqlite3`` unless ``db`` names
  another (a path, or a ``postgresql://`` URL: replicas share one); ``db_path`` is that file
  (SQLite only); read it with :mod:`tests.e2e.ledger_view`, ``ledger_check()`` runs
  ``python -m bot ledger check --db PATH`` and fails unless it exits 0; ``log_problems()`` lists
  the log's ERROR/CRITICAL lines and tracebacks.

The configuration is an :class:`AgentConfig`; the wallet part is a :class:`WalletSetup`
(``dev_wallet()`` or ``lnbits_wallet(account, url)``): the ``[wallet]`` table plus the environment
holding its secrets.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.nostr.keys import Keys
from bot.secrets import write_secret_file
from storage.location import is_postgres_url
from tests.e2e.toml_out import Inline, dumps

ROOT = Path(__file__).resolve().parents[2]
READY_RE = re.compile(r"timmy: running as (npub1[0-9a-z]+) \(([0-9a-f]{64})\) on (\d+) relays?")
START_TIMEOUT_S = 30.0
STOP_BOUND_S = 30.0
LOG_TAIL_LINES = 40

LIVE: list[AgentProcess] = []
"""Agents started and not yet stopped or killed: a failed test shows their log tails."""


class AgentError(AssertionError):
    """The agent did not start, did not stop in time, or exited badly (the message has the log)."""


@dataclass(frozen=True)
class RelayEntry:
    url: str
    read: bool = True
    write: bool = True


@dataclass(frozen=True)
class WalletSetup:
    """The ``[wallet]`` table of ``timmy.toml`` and the environment that holds its secrets."""

    table: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)


def dev_wallet() -> WalletSetup:
    """The in-process dev wallet (not real money; its invoices cannot be paid from outside)."""
    return WalletSetup({"backend": "dev", "allow_dev": True})


def lnbits_wallet(url: str, invoice_key: str, admin_key: str) -> WalletSetup:
    """An LNbits wallet (FakeWallet funding): invoices the askers pay from other LNbits wallets."""
    return WalletSetup(
        {
            "backend": "lnbits",
            "lnbits": {
                "url": url,
                "invoice_key_env": "TIMMY_E2E_LNBITS_INVOICE_KEY",
                "admin_key_env": "TIMMY_E2E_LNBITS_ADMIN_KEY",
            },
        },
        {"TIMMY_E2E_LNBITS_INVOICE_KEY": invoice_key, "TIMMY_E2E_LNBITS_ADMIN_KEY": admin_key},
    )


@dataclass
class AgentConfig:
    """What the harness writes; sections are merged over the defaults below key by key."""

    relays: Sequence[RelayEntry]
    ai_url: str
    wallet: WalletSetup
    ai_scenario: str = "default"
    admins: Sequence[str] = ()
    pricing: Mapping[str, int] = field(default_factory=dict)
    limits: Mapping[str, int] = field(default_factory=dict)
    service: Mapping[str, Any] = field(default_factory=dict)
    profile: Mapping[str, str] = field(default_factory=dict)
    ai: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


DEFAULT_PRICING = {"input_msat": 10_000, "output_msat": 100_000, "fixed_fee_msat": 2_000}
"""10 msat per prompt token, 100 msat per answer token, 2 sats per answer: refunds of several
whole sats, so every money path shows in sats (not only in msat remainders)."""
DEFAULT_LIMITS = {"daily_free_msat": 50_000, "daily_free_jobs": 5}
DEFAULT_SERVICE: dict[str, Any] = {
    "concurrency": 4,
    "work_timeout_s": 20,
    "invoice_expiry_s": 600,
    "rate_per_minute": 60,
    "burst": 20,
}
DEFAULT_AI: dict[str, Any] = {"model": "test", "max_tokens": 64, "max_attempts": 1}


class AgentProcess:
    """One agent: a directory, a key, a configuration, a process while running."""

    def __init__(
        self,
        directory: Path,
        config: AgentConfig,
        *,
        keys: Keys | None = None,
        db: Path | str | None = None,
        command: Sequence[str] | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_bound_s: float = STOP_BOUND_S,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.keys = keys or Keys.generate()
        self.pubkey_hex = self.keys.public_hex
        url = isinstance(db, str) and is_postgres_url(db)
        self.db_location = str(db) if url else str(Path(db or directory / "ledger.sqlite3")
                                                    .resolve())
        self.config_path = (directory / "timmy.toml").resolve()
        self.relays_path = (directory / "relays.toml").resolve()
        self.key_path = (directory / "agent.nsec").resolve()
        self.log_path = (directory / "agent.log").resolve()
        self.start_timeout_s = start_timeout_s
        self.stop_bound_s = stop_bound_s
        self._command = list(command) if command else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.ready_line = ""
        write_secret_file(self.key_path, self.keys.nsec)
        self.write_config()

    @property
    def db_path(self) -> Path:
        """The ledger's SQLite file."""
        if is_postgres_url(self.db_location):
            raise AttributeError("this agent's ledger is a PostgreSQL database: db_location")
        return Path(self.db_location)

    # -- configuration ----------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        c = self.config
        return {
            "agent": {
                "db": self.db_location,
                "relays": str(self.relays_path),
                "key_file": str(self.key_path),
                "admins": list(c.admins),
            },
            "pricing": {**DEFAULT_PRICING, **c.pricing},
            "limits": {**DEFAULT_LIMITS, **c.limits},
            "ai": {
                "base_url": c.ai_url,
                **DEFAULT_AI,
                "headers": Inline({"X-Scenario": c.ai_scenario}),
                **c.ai,
            },
            "service": {**DEFAULT_SERVICE, **c.service},
            "profile": {"name": "Timmy e2e", **c.profile},
            "wallet": dict(c.wallet.table),
        }

    def write_config(self) -> None:
        relays = [{"url": r.url, "read": r.read, "write": r.write} for r in self.config.relays]
        self.relays_path.write_text(dumps({"relay": relays}), encoding="utf-8")
        self.config_path.write_text(dumps(self.document()), encoding="utf-8")

    @property
    def command(self) -> list[str]:
        base = self._command or [sys.executable, "-m", "bot", "run"]
        return [*base, "--config", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIMMY_")}
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.config.wallet.env)
        env.update(self.config.env)
        return env

    # -- lifecycle --------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self._log.write(f"--- harness: start #{self.starts + 1}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            self.command, cwd=self.directory, env=self.environment(), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.starts += 1
        LIVE.append(self)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            match = READY_RE.search(self._read_from(offset))
            if match:
                self.ready_line = match.group(0)
                if match.group(2) != self.pubkey_hex:
                    self.kill()
                    raise AgentError(f"the agent runs as {match.group(2)}, not as its key "
                                     f"{self.pubkey_hex}\n{self.log_tail()}")
                return
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._forget()
                raise AgentError(f"the agent exited with code {code} before it was ready:\n"
                                 f"{self.log_tail()}")
            time.sleep(0.02)
        self.kill()
        raise AgentError(f"no ready line within {self.start_timeout_s} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (a crash)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.kills += 1
        self._forget()

    def stop(self) -> int:
        """SIGTERM; the agent must exit with code 0 within ``stop_bound_s``."""
        proc = self._proc
        if proc is None:
            return 0
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=self.stop_bound_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AgentError(f"SIGTERM: the agent did not exit within {self.stop_bound_s} s:\n"
                             f"{self.log_tail()}") from None
        self._forget()
        if code != 0:
            raise AgentError(f"SIGTERM: the agent exited with code {code}, not 0:\n"
                             f"{self.log_tail()}")
        return code

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or, with ``crash``, kill) and start again: same key, same database."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Teardown: a graceful stop when possible, a kill otherwise (never raises)."""
        if not self.running:
            self._forget()
            return
        try:
            self.stop()
        except AgentError:
            self.kill()

    def _forget(self) -> None:
        # a killed leader may leave its group behind for a moment: make sure it is gone
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        with contextlib.suppress(ValueError):
            LIVE.remove(self)

    # -- logs and the ledger ----------------------------------------------------------

    def _read_from(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        return self._read_from(0)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(text)} lines)\n" + "\n".join(text)

    def log_problems(self) -> list[str]:
        """Lines of the log at ERROR or CRITICAL level, and tracebacks: an agent that handled
        everything it met has none, whatever the scenario threw at it."""
        return [line for line in self.log_text().splitlines()
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]

    def ledger_check(self, *, limits: bool = True) -> str:
        """``python -m bot ledger check --db PATH`` (with the configured daily limits unless
        ``limits`` is false: an admin may have changed them): must exit 0; returns its output."""
        extra: list[str] = []
        if limits:
            lim = {**DEFAULT_LIMITS, **self.config.limits}
            extra = ["--daily-free-msat", str(lim["daily_free_msat"]),
                     "--daily-free-jobs", str(lim["daily_free_jobs"])]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "ledger", "check", "--db", self.db_location, *extra],
            cwd=self.directory, env=self.environment(), capture_output=True, text=True,
            timeout=60, check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"ledger check exited {result.returncode}:\n{result.stdout}"
                                 f"{result.stderr}")
        return result.stdout

    def __repr__(self) -> str:
        return f"AgentProcess({self.pubkey_hex[:8]}, pid={self.pid}, dir={self.directory})"
