"""The agent's settings: one TOML file plus environment variables, validated at start.

The file (``--config PATH``, else ``$TIMMY_CONFIG``, else ``timmy.toml`` in the current
directory if it exists; every key is optional)::

    [agent]
    db = "data/timmy.sqlite3"        # the ledger's SQLite file
    relays = "relays.toml"           # the relay list
    key_file = "secrets/agent.nsec"  # the agent's secret key (nsec or hex), mode 0600
    admins = ["npub1...", "<hex>"]   # pubkeys allowed to use operator commands

    [pricing]                        # integer msat per `per_tokens` tokens, plus a fixed fee
    input_msat = 1000
    output_msat = 3000
    fixed_fee_msat = 1000
    per_tokens = 1000

    [limits]                         # subsidy per pubkey per UTC day; optional global cap
    daily_free_msat = 50000
    daily_free_jobs = 5
    pool_daily_cap_msat = 1000000

    [ai]                             # an OpenAI-compatible endpoint; absent: the embedded model
    base_url = "http://127.0.0.1:11434/v1"
    model = "llama3.2"
    api_key_file = "secrets/openai.key"   # or api_key_env = "OPENAI_API_KEY"

    [ai.local]                       # the embedded model's settings (see LocalModelConfig)
    max_tokens = 128

Environment: ``TIMMY_DB`` and ``TIMMY_RELAYS`` override the paths; the agent's key comes from
``TIMMY_NSEC`` when set, else from ``key_file`` (``$TIMMY_NSEC_FILE`` overrides it). Secrets are
never read from the TOML file itself. Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bot.nostr.errors import NostrError
from bot.nostr.keys import Keys, parse_public_key
from bot.secrets import SecretError, read_secret_env, read_secret_file
from bot.work import LocalModelConfig, OpenAIConfig, Pricing, WorkError
from storage import LedgerError, Limits

DEFAULT_CONFIG = Path("timmy.toml")

DEFAULT_PRICING = Pricing(input_msat=1000, output_msat=3000, fixed_fee_msat=1000)
DEFAULT_LIMITS = Limits(daily_free_msat=50_000, daily_free_jobs=5, pool_daily_cap_msat=None)

_SECTIONS = {"agent", "pricing", "limits", "ai"}
_AGENT_KEYS = {"db", "relays", "key_file", "admins"}


class ConfigError(ValueError):
    """The configuration is unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configured, validated. Secrets are not held here: see :meth:`agent_keys`."""

    source: Path | None
    db_path: Path
    relays_path: Path
    key_file: Path | None
    admins: tuple[str, ...]
    pricing: Pricing
    limits: Limits
    ai: OpenAIConfig | None
    local: LocalModelConfig

    def agent_keys(self, environ: Mapping[str, str] | None = None) -> Keys:
        """The agent's keys: ``$TIMMY_NSEC``, else ``$TIMMY_NSEC_FILE``, else ``key_file``."""
        env = os.environ if environ is None else environ
        try:
            if env.get("TIMMY_NSEC", "").strip():
                secret = read_secret_env("TIMMY_NSEC", "agent key", env)
            else:
                file = Path(env["TIMMY_NSEC_FILE"]) if env.get("TIMMY_NSEC_FILE") else None
                file = file or self.key_file
                if file is None:
                    raise ConfigError(
                        "no agent key: set TIMMY_NSEC, TIMMY_NSEC_FILE or [agent] key_file "
                        "(create one with: timmy keygen --out secrets/agent.nsec)"
                    )
                secret = read_secret_file(file, "agent key")
        except SecretError as exc:
            raise ConfigError(str(exc)) from None
        try:
            return Keys.parse(secret.reveal())
        except NostrError:
            raise ConfigError("the agent key is not a valid nsec or 64-hex secret key") from None


def _table(data: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _build(cls: type[Any], values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except (LedgerError, WorkError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _path(value: object, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string path")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate a parsed TOML document (``source`` names it in messages and anchors paths)."""
    env = os.environ if environ is None else environ
    name = str(source) if source else "configuration"
    base = source.parent if source else Path.cwd()
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise ConfigError(f"{name}: unknown sections {unknown}; known: {sorted(_SECTIONS)}")

    agent = _table(data, "agent", name)
    bad = sorted(set(agent) - _AGENT_KEYS)
    if bad:
        raise ConfigError(f"{name} [agent]: unknown keys {bad}; known: {sorted(_AGENT_KEYS)}")
    db = _path(env.get("TIMMY_DB") or agent.get("db", "data/timmy.sqlite3"), base, "agent.db")
    relays = _path(env.get("TIMMY_RELAYS") or agent.get("relays", "relays.toml"), base,
                   "agent.relays")
    key_file = _path(agent["key_file"], base, "agent.key_file") if "key_file" in agent else None
    admins_raw = agent.get("admins", [])
    if not isinstance(admins_raw, list):
        raise ConfigError(f"{name} [agent]: admins must be a list of npub or hex pubkeys")
    admins: list[str] = []
    for item in admins_raw:
        try:
            admins.append(parse_public_key(item if isinstance(item, str) else ""))
        except NostrError:
            raise ConfigError(f"{name} [agent]: admin {item!r} is not an npub or hex pubkey") \
                from None

    pricing_t = _table(data, "pricing", name)
    pricing = _build(Pricing, pricing_t, f"{name} [pricing]") if pricing_t else DEFAULT_PRICING
    limits_t = _table(data, "limits", name)
    limits = _build(Limits, {**asdict(DEFAULT_LIMITS), **limits_t}, f"{name} [limits]")

    ai_t = dict(_table(data, "ai", name))
    local_t = ai_t.pop("local", {})
    if not isinstance(local_t, dict):
        raise ConfigError(f"{name}: [ai.local] must be a table")
    for key in ("api_key_file", "model_path"):
        for table in (ai_t, local_t):
            if key in table:
                table[key] = _path(table[key], base, f"ai.{key}")
    ai = _build(OpenAIConfig, ai_t, f"{name} [ai]") if ai_t else None
    local = _build(LocalModelConfig, local_t, f"{name} [ai.local]")
    return Settings(source, db, relays, key_file, tuple(admins), pricing, limits, ai, local)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the configuration (see the module docstring for where it is found)."""
    env = os.environ if environ is None else environ
    chosen = Path(path) if path else Path(env["TIMMY_CONFIG"]) if env.get("TIMMY_CONFIG") else None
    if chosen is None:
        if not DEFAULT_CONFIG.is_file():
            return parse_settings({}, environ=env)
        chosen = DEFAULT_CONFIG
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {chosen}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{chosen} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen} is not valid TOML: {exc}") from None
    return parse_settings(data, source=chosen.resolve(), environ=env)
