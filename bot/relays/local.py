"""A local ``nostr-relay`` process on 127.0.0.1, for ``timmy demo`` (and the tests' relays).

The relay is the one ``scripts/setup`` installs at ``.tools/relay/bin/nostr-relay`` (its own
virtual environment; ``scripts/run`` installs it before the demo). :class:`LocalRelay` writes its
config (JSON, which the relay's YAML loader reads) into a directory, starts
``nostr-relay -c CONFIG serve`` in its own session on a free port, is ready once the relay's
NIP-11 document answers, and ``stop()`` ends the whole process group (SIGTERM, then SIGKILL after
a grace period), so no relay process outlives the demo. The test suite's relay fixture
(``tests/fixtures/relay.py``) extends it with auth, roles and crashes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx

RELAY_BIN = Path(__file__).resolve().parents[2] / ".tools" / "relay" / "bin" / "nostr-relay"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


class LocalRelayError(RuntimeError):
    """The relay is not installed, or did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRelay:
    """One relay serving ``ws://127.0.0.1:PORT`` from ``directory`` (its database, config and log).

    The port is chosen once and kept across ``stop()`` / ``start()``, so a restarted relay has
    the same URL and database. ``config()`` is the relay's settings; a subclass may extend it.
    """

    def __init__(self, directory: Path, binary: Path = RELAY_BIN) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.db_path = (directory / "relay.sqlite3").resolve()
        self.log_path = directory / "relay.log"
        self.config_path = directory / "relay.json"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config(self) -> dict[str, Any]:
        """The relay's settings (written as JSON, which its YAML loader reads)."""
        return {
            "DEBUG": False,
            "relay_name": "timmy local relay",
            "relay_description": "a local relay on 127.0.0.1",
            "storage": {"sqlalchemy.url": f"sqlite+aiosqlite:///{self.db_path}"},
            "verification": {"nip05_verification": "disabled"},
            "gunicorn": {"bind": f"127.0.0.1:{self.port}", "workers": 1,
                         "loglevel": "warning", "reload": False},
            "authentication": {"enabled": False},
            "max_event_size": 65536,
        }

    def start(self) -> None:
        """Start the relay (a no-op while it runs); return once its NIP-11 document answers."""
        if self.running:
            return
        if not self.binary.exists():
            raise LocalRelayError(f"nostr-relay is not installed at {self.binary}: "
                                  "run scripts/setup (or use scripts/run demo)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=1), encoding="utf-8")
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.config_path), "serve"],
            cwd=self.directory, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise LocalRelayError(f"nostr-relay exited at start; see {self.log_path}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise LocalRelayError(f"nostr-relay did not answer in time; see {self.log_path}")

    def _answers(self) -> bool:
        try:
            resp = httpx.get(self.http_url, headers={"Accept": "application/nostr+json"},
                             timeout=1.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def stop(self) -> None:
        """SIGTERM to the master (it stops its worker), SIGKILL to the group when it lingers;
        returns once the port is free again. Always returns."""
        self._signal_and_wait(signal.SIGTERM)

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if sig == signal.SIGKILL:
                        os.killpg(proc.pid, sig)  # its own session: master and worker only
                    else:
                        os.kill(proc.pid, sig)
                try:
                    proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=STOP_GRACE_S)
            # the worker may outlive its master for a moment: end the whole group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._wait_port_free()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", self.port))
                except OSError:
                    time.sleep(0.05)
                    continue
                return
