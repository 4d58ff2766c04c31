"""Settings from timmy.toml and the environment (bot/config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.config import DEFAULT_LIMITS, DEFAULT_PRICING, ConfigError, load_settings, parse_settings
from bot.nostr.keys import Keys
from bot.secrets import write_secret_file
from bot.wallets.config import PayoutPolicy, WalletBackend


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
models = ["qwen2.5", "llama3.2"]
api_key_file = "secrets/ai.key"

[ai.local]
max_tokens = 64
""")
    s = load_settings(cfg, environ={"TIMMY_RELAYS": "/etc/timmy/relays.toml"})
    assert s.ledger.path == tmp_path / "state/ledger.sqlite3"
    assert s.relays_path == Path("/etc/timmy/relays.toml")
    assert s.key_file == tmp_path / "secrets/agent.nsec"
    assert s.admins == (admin.public_hex,)
    assert (s.pricing.input_msat, s.pricing.per_tokens) == (2, 1)
    assert s.limits.daily_free_jobs == 2
    assert s.limits.daily_free_msat == DEFAULT_LIMITS.daily_free_msat
    assert s.limits.pool_daily_cap_msat == 900_000
    assert s.ai is not None and s.ai.api_key_file == tmp_path / "secrets/ai.key"
    assert s.ai.models == ("qwen2.5",)
    assert s.local.max_tokens == 64


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[agent\n", "not valid TOML"),
        ("[wallets]\nx = 1\n", "unknown sections"),
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


# --- partial tables keep their defaults; [service] and [profile] --------------------------------


def test_partial_pricing_keeps_the_defaults_it_omits() -> None:
    s = parse_settings({"pricing": {"output_msat": 7}}, environ={})
    assert s.pricing.output_msat == 7
    assert s.pricing.input_msat == DEFAULT_PRICING.input_msat
    assert s.pricing.fixed_fee_msat == DEFAULT_PRICING.fixed_fee_msat
    assert s.pricing.per_tokens == DEFAULT_PRICING.per_tokens


def test_service_and_profile_default_and_partial() -> None:
    s = parse_settings({}, environ={})
    assert s.service == ServiceConfig() and s.profile == ProfileConfig() and s.wallet is None
    s = parse_settings(
        {"service": {"concurrency": 8}, "profile": {"lud16": "timmy@example.com"}}, environ={}
    )
    assert s.service.concurrency == 8
    assert s.service.invoice_expiry_s == ServiceConfig().invoice_expiry_s
    assert s.profile.lud16 == "timmy@example.com" and s.profile.name == ProfileConfig().name


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[service]\nconcurrency = 0\n", "[service]: concurrency"),
        ("[service]\nlease_s = 2\n", "[service]: lease_s"),
        ("[service]\nworkers = 2\n", "[service]: unknown keys ['workers']"),
        ("[profile]\nname = 5\n", "[profile]: name"),
        ("[profile]\nbanner = 'x'\n", "[profile]: unknown keys ['banner']"),
    ],
)
def test_bad_service_or_profile_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = _write(tmp_path / "timmy.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert fragment in str(info.value) and str(cfg) in str(info.value)


# --- [wallet] ----------------------------------------------------------------------------------


def test_lnbits_wallet_section(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "timmy.toml", """
[wallet]
backend = "lnbits"
network = "tb"
max_fee_base_msat = 1000
max_fee_ppm = 5000
lnurl_insecure_hosts = ["127.0.0.1:5000"]

[wallet.lnbits]
url = "http://127.0.0.1:5000"
invoice_key_env = "LNBITS_INVOICE_KEY"
admin_key_file = "secrets/lnbits.admin"
""")
    w = load_settings(cfg, environ={}).wallet
    assert w is not None and w.backend is WalletBackend.LNBITS and w.network == "tb"
    assert w.payout_policy == PayoutPolicy(max_fee_base_msat=1000, max_fee_ppm=5000)
    assert w.payout_policy.fee_cap(1_000_000) == 5000
    assert w.lnurl_insecure_hosts == ("127.0.0.1:5000",)
    assert w.lnbits is not None and w.lnbits.url == "http://127.0.0.1:5000"
    assert w.lnbits.invoice_key.env == "LNBITS_INVOICE_KEY"
    assert w.lnbits.admin_key is not None
    assert w.lnbits.admin_key.file == tmp_path / "secrets/lnbits.admin"
    assert w.lnbits.admin_key.setting == "[wallet.lnbits] admin_key_file"


def test_nwc_and_lightning_address_sections(tmp_path: Path) -> None:
    nwc = parse_settings(
        {"wallet": {"backend": "nwc", "nwc": {"uri_file": "nwc.uri"}}},
        source=tmp_path / "timmy.toml", environ={},
    ).wallet
    assert nwc is not None and nwc.nwc is not None and nwc.network is None
    assert nwc.nwc.uri.file == tmp_path / "nwc.uri"
    la = parse_settings(
        {"wallet": {"backend": "lightning_address",
                    "lightning_address": {"address": "timmy@example.com"}}},
        environ={},
    ).wallet
    assert la is not None and la.lightning_address is not None
    assert la.lightning_address.address == "timmy@example.com"
    assert la.invoice_network() == "bc" and la.payout_policy == PayoutPolicy()


def test_dev_wallet_only_when_allowed() -> None:
    data = {"wallet": {"backend": "dev"}}
    with pytest.raises(ConfigError) as info:
        parse_settings(data, environ={})
    message = str(info.value)
    assert "NOT REAL MONEY" in message and "allow_dev = true" in message
    assert "--allow-dev-wallet" in message and "TIMMY_ALLOW_DEV_WALLET=1" in message
    for allowed in (
        parse_settings({"wallet": {"backend": "dev", "allow_dev": True}}, environ={}),
        parse_settings(data, environ={}, allow_dev_wallet=True),
        parse_settings(data, environ={"TIMMY_ALLOW_DEV_WALLET": "1"}),
    ):
        assert allowed.wallet is not None and allowed.wallet.backend is WalletBackend.DEV
        assert allowed.wallet.invoice_network() == "bcrt"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[wallet]\nnetwork = 'bc'\n", "[wallet]: backend is missing"),
        ("[wallet]\nbackend = 'paypal'\n", "[wallet]: backend must be one of"),
        ("[wallet]\nbackend = 'lnbits'\nkey = 'x'\n", "[wallet]: unknown keys ['key']"),
        ("[wallet]\nbackend = 'lnbits'\n", "needs a [wallet.lnbits] table"),
        ("[wallet]\nbackend = 'nwc'\nnetwork = 'ltc'\n[wallet.nwc]\nuri_env = 'U'\n",
         "[wallet]: network must be one of"),
        ("[wallet]\nbackend = 'dev'\nallow_dev = 'yes'\n", "allow_dev must be true or false"),
        ("[wallet]\nbackend = 'dev'\nallow_dev = true\nmax_fee_ppm = 2000000\n", "max_fee_ppm"),
        ("[wallet]\nbackend = 'dev'\nallow_dev = true\nlnurl_insecure_hosts = 'x'\n",
         "lnurl_insecure_hosts"),
        ("[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\nurl = 'http://x'\n",
         "[wallet.lnbits]: invoice_key is missing: set invoice_key_env"),
        ("[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\ninvoice_key_env = 'K'\n",
         "[wallet.lnbits]: missing keys ['url']"),
        ("[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\nurl = 'http://x'\n"
         "invoice_key_env = 'K'\ninvoice_key_file = 'k'\n", "not both"),
        ("[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\nurl = 'http://x'\n"
         "invoice_key = 'secret-in-the-file'\n", "[wallet.lnbits]: unknown keys ['invoice_key']"),
        ("[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\nurl = 'ftp://x'\ninvoice_key_env = 'K'\n",
         "[wallet.lnbits]: url must be"),
        ("[wallet]\nbackend = 'nwc'\n[wallet.nwc]\n", "[wallet.nwc]: uri is missing"),
        ("[wallet]\nbackend = 'nwc'\n[wallet.nwc]\nuri_env = 'not a name'\n", "uri_env must be"),
        ("[wallet]\nbackend = 'lightning_address'\n[wallet.lightning_address]\naddress = 'x'\n",
         "[wallet.lightning_address]: address must be a lightning address"),
        ("[wallet]\nbackend = 'lightning_address'\n[wallet.lightning_address]\n"
         "address = 'a@b.c'\nverify_url_template = 'https://b.c/v'\n", "{payment_hash}"),
        ("wallet = 3\n", "[wallet] must be a table"),
        ("[wallet]\nbackend = 'nwc'\nnwc = 3\n", "[wallet.nwc] must be a table"),
    ],
)
def test_bad_wallet_settings_name_the_file_and_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    cfg = _write(tmp_path / "timmy.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert fragment in str(info.value)
    assert str(cfg) in str(info.value)
    assert "secret-in-the-file" not in str(info.value)


# --- every failure a ConfigError naming the file and the key (issue 12, item 6) ---------------

NO_USER = "~nosuchuser-timmy-test"


@pytest.mark.parametrize(
    ("text", "environ", "fragment"),
    [
        (f"[agent]\ndb = '{NO_USER}/db.sqlite3'\n", {}, "[agent] db"),
        (f"[agent]\nrelays = '{NO_USER}/relays.toml'\n", {}, "[agent] relays"),
        (f"[agent]\nkey_file = '{NO_USER}/agent.nsec'\n", {}, "[agent] key_file"),
        (f"[ai]\nbase_url = 'http://127.0.0.1:1/v1'\nmodel = 'm'\n"
         f"api_key_file = '{NO_USER}/ai.key'\n", {}, "[ai] api_key_file"),
        (f"[ai.local]\nmodel_path = '{NO_USER}/model.gguf'\n", {}, "[ai.local] model_path"),
        ("", {"TIMMY_DB": f"{NO_USER}/db.sqlite3"}, "TIMMY_DB"),
        ("", {"TIMMY_RELAYS": f"{NO_USER}/relays.toml"}, "TIMMY_RELAYS"),
        (f"[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\nurl = 'http://x'\n"
         f"invoice_key_file = '{NO_USER}/k'\n", {}, "[wallet.lnbits] invoice_key_file"),
        (f"[wallet]\nbackend = 'lnbits'\n[wallet.lnbits]\nurl = 'http://x'\n"
         f"invoice_key_env = 'K'\nadmin_key_file = '{NO_USER}/k'\n", {},
         "[wallet.lnbits] admin_key_file"),
        (f"[wallet]\nbackend = 'nwc'\n[wallet.nwc]\nuri_file = '{NO_USER}/nwc'\n", {},
         "[wallet.nwc] uri_file"),
        ("[agent]\ndb = \"a\\u0000b\"\n", {}, "[agent] db"),
    ],
)
def test_unusable_paths_are_config_errors_naming_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], fragment: str
) -> None:
    cfg = _write(tmp_path / "timmy.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ=environ)
    assert fragment in str(info.value)
    if fragment.startswith("["):
        assert str(cfg) in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[limits]\ndaily_free_msat = " + "9" * 5000 + "\n", "line 2"),
        ("[agent]\nadmins = " + "[" * 1000 + "]" * 1000 + "\n", "nested too deep"),
        ("x = " + "{a = " * 1000 + "1" + "}" * 1000 + "\n", "nested too deep"),
    ],
)
def test_toml_the_parser_cannot_hold_is_a_config_error(
    tmp_path: Path, text: str, fragment: str
) -> None:
    cfg = _write(tmp_path / "timmy.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert fragment in str(info.value) and str(cfg) in str(info.value)


def test_unusable_config_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(f"{NO_USER}/timmy.toml", environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(None, environ={"TIMMY_CONFIG": "bad\x00path"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, environ={})  # a directory
