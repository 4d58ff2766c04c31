"""The agent's settings: one TOML file plus environment variables, validated at start.

The file (``--config PATH``, else ``$TIMMY_CONFIG``, else ``timmy.toml`` in the current
directory if it exists; every key is optional)::

    [agent]
    db = "data/timmy.sqlite3"        # the ledger: a SQLite file, or postgresql://user@host/dbname
    db_password_file = "secrets/db.password"  # PostgreSQL only, mode 0600 (or TIMMY_DB_PASSWORD)
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

    [wallet]                         # the Lightning backend (bot.wallets.config.WalletConfig)
    backend = "lnbits"               # "nwc" | "lnbits" | "lightning_address" | "dev"
    network = "bc"                   # invoices' bolt11 prefix (default bc; dev: bcrt)
    max_fee_base_msat = 2000         # payout routing-fee cap: max(base, amount × ppm / 10⁶)
    max_fee_ppm = 10000
    lnurl_insecure_hosts = []        # "host:port" LNURL may reach over plain http (tests)
    allow_dev = false                # the dev wallet (NOT REAL MONEY) only when true

    [wallet.lnbits]
    url = "https://lnbits.example"
    invoice_key_env = "LNBITS_INVOICE_KEY"    # or invoice_key_file = "secrets/lnbits.inkey"
    admin_key_file = "secrets/lnbits.adminkey"  # or admin_key_env; without: no payouts

    [wallet.nwc]
    uri_env = "TIMMY_NWC_URI"        # or uri_file = "secrets/nwc.uri"
    request_timeout_s = 30

    [wallet.lightning_address]
    address = "timmy@example.com"
    verify_url_template = "https://example.com/lnurlp/verify/{payment_hash}"  # optional
    poll_interval_s = 5

    [service]                        # how the agent serves (bot.agent.settings.ServiceConfig)
    concurrency = 4
    invoice_expiry_s = 600

    [profile]                        # its kind-0 profile (bot.agent.settings.ProfileConfig)
    name = "Timmy"
    lud16 = "timmy@example.com"

Every table is optional; a key left out keeps its default (also inside a partial table).
Environment: ``TIMMY_DB`` and ``TIMMY_RELAYS`` override the paths (``TIMMY_DB`` may be a
``postgresql://`` URL: see :mod:`bot.ledger_location` for its password); the agent's key comes from
``TIMMY_NSEC`` when set, else from ``key_file`` (``$TIMMY_NSEC_FILE`` overrides it);
``TIMMY_ALLOW_DEV_WALLET=1`` (or ``--allow-dev-wallet``, passed as ``allow_dev_wallet``) allows
the dev wallet. Secrets are never read from the TOML file itself. Relative paths are relative to
the config file's folder; ``~`` is the user's home.

Every failure is a :class:`ConfigError` whose message names the file and the key: unreadable
files, bad TOML (also integers beyond Python's digit limit and nesting too deep to parse), a
path whose ``~user`` does not exist, an unknown section or key, a value out of range.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.ledger_location import LedgerLocation, LocationError, parse_location
from bot.nostr.errors import NostrError
from bot.nostr.keys import Keys, parse_public_key
from bot.secrets import SecretError, read_secret_env, read_secret_file
from bot.wallets.config import (
    LightningAddressConfig,
    LnbitsConfig,
    NwcConfig,
    WalletConfig,
)
from bot.wallets.dev import dev_wallet_allowed
from bot.work import LocalModelConfig, OpenAIConfig, Pricing, WorkError
from storage import LedgerError, Limits

DEFAULT_CONFIG = Path("timmy.toml")

DEFAULT_PRICING = Pricing(input_msat=1000, output_msat=3000, fixed_fee_msat=1000)
DEFAULT_LIMITS = Limits(daily_free_msat=50_000, daily_free_jobs=5, pool_daily_cap_msat=None)

_SECTIONS = {"agent", "pricing", "limits", "ai", "wallet", "service", "profile"}
_AGENT_KEYS = {"db", "db_password_file", "relays", "key_file", "admins"}
_WALLET_TABLES: dict[str, type[Any]] = {
    "lnbits": LnbitsConfig,
    "nwc": NwcConfig,
    "lightning_address": LightningAddressConfig,
}


class ConfigError(ValueError):
    """The configuration is unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configured, validated. Secrets are not held here: see :meth:`agent_keys`
    and :func:`bot.wallets.factory.make_wallet`. ``wallet`` is ``None`` without a ``[wallet]``
    section."""

    source: Path | None
    ledger: LedgerLocation
    relays_path: Path
    key_file: Path | None
    admins: tuple[str, ...]
    pricing: Pricing
    limits: Limits
    ai: OpenAIConfig | None
    local: LocalModelConfig
    wallet: WalletConfig | None
    service: ServiceConfig
    profile: ProfileConfig

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


def _build(cls: type[Any], values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)``; an unknown or missing key or a refused value names ``where``."""
    settable = [f for f in fields(cls) if f.init]
    known = {f.name for f in settable}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    missing = sorted(
        f.name for f in settable
        if f.default is MISSING and f.default_factory is MISSING and f.name not in values
    )
    if missing:
        raise ConfigError(f"{where}: missing keys {missing}")
    try:
        return cls(**values)
    except (LedgerError, WorkError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _path(value: object, base: Path, where: str) -> Path:
    """A configured path: ``~`` expanded, relative to ``base``. ``where`` names the file and
    the key (or the environment variable) in messages."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(f"{where} must be a non-empty string path")
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # ~user of a user that does not exist, or no home directory
        raise ConfigError(f"{where}: cannot expand {value.split('/')[0]!r} (no such user's "
                          f"home directory); write the full path") from None
    return p if p.is_absolute() else base / p


def _env_or(env: Mapping[str, str], var: str, table: Mapping[str, Any], key: str,
            default: str, base: Path, name: str) -> Path:
    if env.get(var):
        return _path(env[var], base, f"environment variable {var}")
    return _path(table.get(key, default), base, f"{name} [agent] {key}")


def _wallet(
    table: Mapping[str, Any], base: Path, name: str, allowed: bool
) -> WalletConfig | None:
    if not table:
        return None
    values = dict(table)
    known = {f.name for f in fields(WalletConfig) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{name} [wallet]: unknown keys {unknown}; known: {sorted(known)}")
    for key, cls in _WALLET_TABLES.items():
        if key not in values:
            continue
        sub = values[key]
        where = f"{name} [wallet.{key}]"
        if not isinstance(sub, dict):
            raise ConfigError(f"{name}: [wallet.{key}] must be a table")
        sub = dict(sub)
        for file_key in [k for k in sub if k.endswith("_file")]:
            sub[file_key] = _path(sub[file_key], base, f"{where} {file_key}")
        values[key] = _build(cls, sub, where)
    if "backend" not in values:
        raise ConfigError(
            f'{name} [wallet]: backend is missing: set backend = "lnbits", "nwc", '
            f'"lightning_address" or "dev"'
        )
    allow = values.get("allow_dev", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{name} [wallet]: allow_dev must be true or false")
    values["allow_dev"] = allow or allowed
    hosts = values.get("lnurl_insecure_hosts")
    if isinstance(hosts, list):
        values["lnurl_insecure_hosts"] = tuple(hosts)
    return _build(WalletConfig, values, f"{name} [wallet]")  # type: ignore[no-any-return]


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
    allow_dev_wallet: bool = False,
) -> Settings:
    """Validate a parsed TOML document (``source`` names it in messages and anchors paths).
    ``allow_dev_wallet`` is the ``--allow-dev-wallet`` flag."""
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
    password_file = (_path(agent["db_password_file"], base, f"{name} [agent] db_password_file")
                     if "db_password_file" in agent else None)
    db_where = "environment variable TIMMY_DB" if env.get("TIMMY_DB") else f"{name} [agent] db"
    try:
        ledger = parse_location(env.get("TIMMY_DB") or agent.get("db", "data/timmy.sqlite3"),
                                base, password_file)
    except LocationError as exc:
        raise ConfigError(f"{db_where}: {exc}") from None
    relays = _env_or(env, "TIMMY_RELAYS", agent, "relays", "relays.toml", base, name)
    key_file = (_path(agent["key_file"], base, f"{name} [agent] key_file")
                if "key_file" in agent else None)
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
    pricing = _build(Pricing, {**asdict(DEFAULT_PRICING), **pricing_t}, f"{name} [pricing]")
    limits_t = _table(data, "limits", name)
    limits = _build(Limits, {**asdict(DEFAULT_LIMITS), **limits_t}, f"{name} [limits]")

    ai_t = dict(_table(data, "ai", name))
    local_t = ai_t.pop("local", {})
    if not isinstance(local_t, dict):
        raise ConfigError(f"{name}: [ai.local] must be a table")
    for key in ("api_key_file", "model_path"):
        for label, table in (("ai", ai_t), ("ai.local", local_t)):
            if key in table:
                table[key] = _path(table[key], base, f"{name} [{label}] {key}")
    ai = _build(OpenAIConfig, ai_t, f"{name} [ai]") if ai_t else None
    local = _build(LocalModelConfig, local_t, f"{name} [ai.local]")

    wallet = _wallet(_table(data, "wallet", name), base, name,
                     dev_wallet_allowed(allow_dev_wallet, env))
    service = _build(ServiceConfig, _table(data, "service", name), f"{name} [service]")
    profile = _build(ProfileConfig, _table(data, "profile", name), f"{name} [profile]")
    return Settings(
        source=source, ledger=ledger, relays_path=relays, key_file=key_file, admins=tuple(admins),
        pricing=pricing, limits=limits, ai=ai, local=local, wallet=wallet, service=service,
        profile=profile,
    )


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    allow_dev_wallet: bool = False,
) -> Settings:
    """Read and validate the configuration (see the module docstring for where it is found)."""
    env = os.environ if environ is None else environ
    chosen = Path(path) if path else Path(env["TIMMY_CONFIG"]) if env.get("TIMMY_CONFIG") else None
    if chosen is None:
        if not DEFAULT_CONFIG.is_file():
            return parse_settings({}, environ=env, allow_dev_wallet=allow_dev_wallet)
        chosen = DEFAULT_CONFIG
    try:
        text = chosen.read_text(encoding="utf-8")
        source = chosen.resolve()
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {chosen}: {reason}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{chosen} is not UTF-8 text") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(f"cannot read {chosen!r}: not a usable path") from None
    return parse_settings(load_toml(text, str(chosen)), source=source, environ=env,
                          allow_dev_wallet=allow_dev_wallet)


def load_toml(text: str, name: str) -> dict[str, Any]:
    """``text`` parsed as TOML; every failure a :class:`ConfigError` naming ``name``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{name} is not usable TOML: arrays or tables nested too deep") \
            from None
    except ValueError:  # an integer beyond Python's digit limit
        limit = sys.get_int_max_str_digits()
        found = re.search(f"[0-9][0-9_]{{{limit},}}", text)
        where = f" (line {text.count(chr(10), 0, found.start()) + 1})" if found else ""
        raise ConfigError(
            f"{name} is not usable TOML: a number{where} has more digits than Python reads "
            f"({sys.get_int_max_str_digits()})"
        ) from None
