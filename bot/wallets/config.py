"""Wallet settings (``[wallet]`` in ``timmy.toml``): plain frozen dataclasses, validated on
construction. ``bot.config`` reads them from the file; :func:`bot.wallets.factory.make_wallet`
builds the backend they describe. Nothing here reads a file or the environment except
:meth:`SecretSource.read`, which the factory calls.

- :class:`WalletConfig` — ``backend`` (:class:`WalletBackend`: ``nwc``, ``lnbits``,
  ``lightning_address`` or ``dev``), ``network`` (the bolt11 prefix invoices must carry; unset:
  ``bc``, or ``bcrt`` for the dev wallet, or what an NWC wallet says), the payout fee cap
  (``max_fee_base_msat``, ``max_fee_ppm`` → :class:`PayoutPolicy`), ``lnurl_insecure_hosts``
  (``host[:port]`` values the LNURL client may reach over plain http, IP literals or localhost:
  tests and local setups only), ``allow_dev`` and one table per backend.
- :class:`LnbitsConfig` (``[wallet.lnbits]``): ``url``; the invoice key from
  ``invoice_key_env`` (an environment variable's name) or ``invoice_key_file`` (a 0600 file);
  optionally the admin key, the same way (without it refunds cannot be paid out).
- :class:`NwcConfig` (``[wallet.nwc]``): the connection URI from ``uri_env`` or ``uri_file``
  (it holds the client secret).
- :class:`LightningAddressConfig` (``[wallet.lightning_address]``): ``address`` and, optionally,
  ``verify_url_template`` (the provider's LUD-21 verify URL with ``{payment_hash}``).

Secrets are never values of these dataclasses: only where to read them (:class:`SecretSource`).
The dev wallet is NOT REAL MONEY: a ``dev`` backend is refused unless ``allow_dev`` is true
(``bot.config`` sets it from ``[wallet] allow_dev``, ``--allow-dev-wallet`` or
``TIMMY_ALLOW_DEV_WALLET=1``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from bot.secrets import Secret, read_secret_env, read_secret_file
from bot.wallets.base import NETWORKS
from bot.wallets.dev import ALLOW_DEV_WALLET_ENV, ALLOW_DEV_WALLET_FLAG, NOT_REAL_MONEY

MAX_FEE_PPM = 1_000_000
DEFAULT_MAX_FEE_BASE_MSAT = 2_000
DEFAULT_MAX_FEE_PPM = 10_000
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST = re.compile(r"[a-z0-9.\-\[\]:]{1,260}")


class WalletConfigError(ValueError):
    """A wallet setting is missing or out of range (the message names the key)."""


class WalletBackend(StrEnum):
    NWC = "nwc"
    LNBITS = "lnbits"
    LIGHTNING_ADDRESS = "lightning_address"
    DEV = "dev"


@dataclass(frozen=True, slots=True)
class PayoutPolicy:
    """Routing-fee cap per payout: ``max(max_fee_base_msat, amount × max_fee_ppm / 10⁶)``.

    The defaults equal LNbits' default fee reserve (2 sat minimum, 1 %)."""

    max_fee_base_msat: int = DEFAULT_MAX_FEE_BASE_MSAT
    max_fee_ppm: int = DEFAULT_MAX_FEE_PPM

    def __post_init__(self) -> None:
        _int_in("max_fee_base_msat", self.max_fee_base_msat, 0, 100_000_000)
        _int_in("max_fee_ppm", self.max_fee_ppm, 0, MAX_FEE_PPM)

    def fee_cap(self, amount_msat: int) -> int:
        return max(self.max_fee_base_msat, amount_msat * self.max_fee_ppm // 1_000_000)


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where one secret is read: ``env`` (a variable's name) or ``file`` (mode 0600), and the
    setting that named it (``setting``, e.g. ``[wallet.lnbits] invoice_key_env``)."""

    setting: str
    label: str
    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"env {self.env}" if self.env is not None else f"file {self.file}"

    def read(self, environ: Mapping[str, str]) -> Secret:
        """The secret; raises :class:`bot.secrets.SecretError` (never showing the value)."""
        if self.env is not None:
            return read_secret_env(self.env, self.label, environ)
        assert self.file is not None
        return read_secret_file(self.file, self.label)


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise WalletConfigError(f"{name} must be an integer in {low}..{high}")


def _text(name: str, value: object, limit: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or "\x00" in value:
        raise WalletConfigError(f"{name} must be non-empty text of at most {limit} characters")
    return value


def _source(
    table: str, key: str, label: str, env: str | None, file: Path | None, *, required: bool
) -> SecretSource | None:
    env_key, file_key = f"{key}_env", f"{key}_file"
    if env is not None and file is not None:
        raise WalletConfigError(f"give {env_key} or {file_key}, not both")
    if env is None and file is None:
        if required:
            raise WalletConfigError(
                f"{key} is missing: set {env_key} (an environment variable's name) or "
                f"{file_key} (a file of mode 0600)"
            )
        return None
    if env is not None:
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            raise WalletConfigError(f"{env_key} must be an environment variable's name")
        return SecretSource(f"[{table}] {env_key}", label, env=env)
    if not isinstance(file, Path):
        raise WalletConfigError(f"{file_key} must be a path")
    return SecretSource(f"[{table}] {file_key}", label, file=file)


@dataclass(frozen=True, slots=True)
class LnbitsConfig:
    """``[wallet.lnbits]``: see the module docstring. ``invoice_key`` and ``admin_key`` are
    derived: where each key is read."""

    url: str
    invoice_key_env: str | None = None
    invoice_key_file: Path | None = None
    admin_key_env: str | None = None
    admin_key_file: Path | None = None
    invoice_key: SecretSource = field(init=False, repr=False, compare=False)
    admin_key: SecretSource | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        url = _text("url", self.url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise WalletConfigError("url must be the LNbits server's http(s):// address")
        invoice = _source("wallet.lnbits", "invoice_key", "LNbits invoice key",
                          self.invoice_key_env, self.invoice_key_file, required=True)
        assert invoice is not None
        object.__setattr__(self, "invoice_key", invoice)
        object.__setattr__(self, "admin_key", _source(
            "wallet.lnbits", "admin_key", "LNbits admin key", self.admin_key_env,
            self.admin_key_file, required=False))


@dataclass(frozen=True, slots=True)
class NwcConfig:
    """``[wallet.nwc]``: the connection URI's source (``uri``, derived); request timeout in
    seconds."""

    uri_env: str | None = None
    uri_file: Path | None = None
    request_timeout_s: int = 30
    uri: SecretSource = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        uri = _source("wallet.nwc", "uri", "NWC connection URI", self.uri_env, self.uri_file,
                      required=True)
        assert uri is not None
        object.__setattr__(self, "uri", uri)
        _int_in("request_timeout_s", self.request_timeout_s, 1, 600)


@dataclass(frozen=True, slots=True)
class LightningAddressConfig:
    """``[wallet.lightning_address]``: the agent's own address (``name@domain``)."""

    address: str
    verify_url_template: str | None = None
    poll_interval_s: int = 5

    def __post_init__(self) -> None:
        address = _text("address", self.address, 320)
        name, at, domain = address.partition("@")
        if not at or not name or not domain or "@" in domain:
            raise WalletConfigError("address must be a lightning address: name@domain")
        if self.verify_url_template is not None and (
            "{payment_hash}" not in _text("verify_url_template", self.verify_url_template)
        ):
            raise WalletConfigError("verify_url_template must contain {payment_hash}")
        _int_in("poll_interval_s", self.poll_interval_s, 1, 3600)


@dataclass(frozen=True, slots=True)
class WalletConfig:
    """``[wallet]``: see the module docstring."""

    backend: WalletBackend
    network: str | None = None
    max_fee_base_msat: int = DEFAULT_MAX_FEE_BASE_MSAT
    max_fee_ppm: int = DEFAULT_MAX_FEE_PPM
    lnurl_insecure_hosts: tuple[str, ...] = ()
    allow_dev: bool = False
    lnbits: LnbitsConfig | None = None
    nwc: NwcConfig | None = None
    lightning_address: LightningAddressConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.backend, WalletBackend):
            choices = ", ".join(f'"{b.value}"' for b in WalletBackend)
            try:
                backend = WalletBackend(self.backend) if isinstance(self.backend, str) else None
            except ValueError:
                backend = None
            if backend is None:
                raise WalletConfigError(f"backend must be one of {choices}")
            object.__setattr__(self, "backend", backend)
        if self.network is not None and self.network not in NETWORKS:
            raise WalletConfigError(f"network must be one of {sorted(NETWORKS)} (bolt11 prefixes)")
        PayoutPolicy(self.max_fee_base_msat, self.max_fee_ppm)  # validates the fee cap
        hosts = self.lnurl_insecure_hosts
        if not isinstance(hosts, tuple | list) or not all(
            isinstance(h, str) and _HOST.fullmatch(h) for h in hosts
        ):
            raise WalletConfigError(
                'lnurl_insecure_hosts must be a list of "host[:port]" values (lowercase)'
            )
        object.__setattr__(self, "lnurl_insecure_hosts", tuple(hosts))
        if not isinstance(self.allow_dev, bool):
            raise WalletConfigError("allow_dev must be true or false")
        if self.backend is WalletBackend.DEV and not self.allow_dev:
            raise WalletConfigError(
                f'backend = "dev" is the {NOT_REAL_MONEY} wallet: allow it with allow_dev = true '
                f"in [wallet], {ALLOW_DEV_WALLET_FLAG} or {ALLOW_DEV_WALLET_ENV}=1"
            )
        table = self.backend_table
        if self.backend is not WalletBackend.DEV and table is None:
            raise WalletConfigError(
                f'backend = "{self.backend.value}" needs a [wallet.{self.backend.value}] table'
            )

    @property
    def backend_table(self) -> LnbitsConfig | NwcConfig | LightningAddressConfig | None:
        """The selected backend's settings (``None`` for the dev wallet)."""
        return {
            WalletBackend.LNBITS: self.lnbits,
            WalletBackend.NWC: self.nwc,
            WalletBackend.LIGHTNING_ADDRESS: self.lightning_address,
            WalletBackend.DEV: None,
        }[self.backend]

    @property
    def payout_policy(self) -> PayoutPolicy:
        return PayoutPolicy(self.max_fee_base_msat, self.max_fee_ppm)

    def invoice_network(self) -> str:
        """The network invoices must be on when none is configured and none is asked for."""
        if self.network is not None:
            return self.network
        return "bcrt" if self.backend is WalletBackend.DEV else "bc"
