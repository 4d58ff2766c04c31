"""What the container runs, checked outside it (no container engine here): the Dockerfile's
command line parses as ``timmy run`` with the status port its HEALTHCHECK asks, and the example
configuration of ``deploy/`` loads, with the database on the volume."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.cli import build_parser
from bot.config import load_settings
from bot.relays.config import load_relays_toml

ROOT = Path(__file__).resolve().parents[1]


def _instruction(name: str) -> str:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.*)$", text, re.M)
    assert len(found) == 1, f"one {name} expected"
    return str(found[0])


def test_the_image_runs_timmy_run_with_the_status_port() -> None:
    argv = json.loads(_instruction("ENTRYPOINT")) + json.loads(_instruction("CMD"))
    assert argv[0] == "timmy"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.http_port == 8080 and args.http_host == "0.0.0.0"  # noqa: S104 (the container)
    assert f"127.0.0.1:{args.http_port}/healthz" in _instruction("HEALTHCHECK")
    env = _instruction("ENV")
    assert "TIMMY_DB=/data/timmy.sqlite3" in env and "TIMMY_CONFIG=/config/timmy.toml" in env
    assert '"/data"' in _instruction("VOLUME") and _instruction("USER") == "timmy"


def test_the_deploy_configuration_loads() -> None:
    settings = load_settings(ROOT / "deploy" / "timmy.toml",
                             environ={"TIMMY_DB": "/data/timmy.sqlite3"})
    assert settings.ledger.path == Path("/data/timmy.sqlite3")
    assert settings.wallet is not None and settings.wallet.backend.value == "nwc"
    relays = load_relays_toml(settings.relays_path)
    assert "ws://relay:8080" in [r.url for r in relays]  # the compose service
    compose = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert "./deploy:/config" in compose and "timmy-data:/data" in compose
