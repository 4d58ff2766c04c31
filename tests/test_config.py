"""Settings from timmy.toml and the environment (bot/config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import DEFAULT_LIMITS, DEFAULT_PRICING, ConfigError, load_settings, parse_settings
from bot.nostr.keys import Keys
from bot.secrets import write_secret_file


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = parse_settings({}, environ={})
    assert s.pricing == DEFAULT_PRICING and s.limits == DEFAULT_LIMITS
    assert s.ai is None and s.admins == () and s.key_file is None


def test_full_file_relative_paths_and_env_overrides(tmp_path: Path) -> None:
    admin = Keys.generate()
    cfg = _write(tmp_path / "timmy.toml", f"""
[agent]
db = "state/ledger.sqlite3"
key_file = "secrets/agent.nsec"
admins = ["{admin.npub}"]

[pricing]
input_msat = 2
output_msat = 5
fixed_fee_msat = 100
per_tokens = 1

[limits]
daily_free_jobs = 2
pool_daily_cap_msat = 900000

[ai]
base_url = "http://127.0.0.1:11434/v1"
model = "llama3.2"
api_key_file = "secrets/ai.key"

[ai.local]
max_tokens = 64
""")
    s = load_settings(cfg, environ={"TIMMY_RELAYS": "/etc/timmy/relays.toml"})
    assert s.db_path == tmp_path / "state/ledger.sqlite3"
    assert s.relays_path == Path("/etc/timmy/relays.toml")
    assert s.key_file == tmp_path / "secrets/agent.nsec"
    assert s.admins == (admin.public_hex,)
    assert (s.pricing.input_msat, s.pricing.per_tokens) == (2, 1)
    assert s.limits.daily_free_jobs == 2
    assert s.limits.daily_free_msat == DEFAULT_LIMITS.daily_free_msat
    assert s.limits.pool_daily_cap_msat == 900_000
    assert s.ai is not None and s.ai.api_key_file == tmp_path / "secrets/ai.key"
    assert s.local.max_tokens == 64


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[agent\n", "not valid TOML"),
        ("[wallet]\nx = 1\n", "unknown sections"),
        ("[agent]\nnsec = 'nsec1...'\n", "unknown keys"),
        ("[agent]\nadmins = ['not-a-key']\n", "not an npub"),
        ("[pricing]\ninput_msat = 1.5\n", "[pricing]"),
        ("[pricing]\ninput_msat = -1\n", "[pricing]"),
        ("[pricing]\ncheap = true\n", "unknown keys"),
        ("[limits]\ndaily_free_msat = -5\n", "[limits]"),
        ("[ai]\nbase_url = 'ftp://x'\nmodel = 'm'\n", "[ai]"),
        ("[ai]\nmodel = 'm'\n", "[ai]"),
        ("[ai.local]\nmax_tokens = 0\n", "[ai.local]"),
    ],
)
def test_bad_files_are_refused_with_the_place(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = _write(tmp_path / "timmy.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert fragment in str(info.value)
    assert str(cfg) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_agent_key_from_env_file_and_config(tmp_path: Path) -> None:
    keys = Keys.generate()
    key_file = tmp_path / "agent.nsec"
    write_secret_file(key_file, keys.nsec)
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    s = parse_settings({"agent": {"key_file": str(key_file)}}, environ={})
    assert s.agent_keys(environ={}).public_hex == keys.public_hex
    other = Keys.generate()
    assert s.agent_keys(environ={"TIMMY_NSEC": other.secret_hex}).public_hex == other.public_hex
    assert (
        parse_settings({}, environ={}).agent_keys(environ={"TIMMY_NSEC_FILE": str(key_file)})
        == keys
    )


def test_agent_key_refusals_never_show_the_secret(tmp_path: Path) -> None:
    keys = Keys.generate()
    loose = tmp_path / "loose.nsec"
    loose.write_text(keys.nsec)
    loose.chmod(0o644)
    s = parse_settings({"agent": {"key_file": str(loose)}}, environ={})
    with pytest.raises(ConfigError) as info:
        s.agent_keys(environ={})
    assert "chmod 600" in str(info.value) and keys.nsec not in str(info.value)
    with pytest.raises(ConfigError) as bad:
        s.agent_keys(environ={"TIMMY_NSEC": "nsec1notakey"})
    assert "nsec1notakey" not in str(bad.value)
    with pytest.raises(ConfigError, match="timmy keygen"):
        parse_settings({}, environ={}).agent_keys(environ={})
