"""One way to build the configured wallet: :func:`make_wallet`.

``await make_wallet(config, keys=, http=, receipt_relays=, environ=)`` reads the backend's
secrets (``bot.secrets``: an environment variable or a 0600 file), builds the backend that
``config.backend`` names, and checks that it answers with one cheap call before returning it:

- ``lnbits``: ``GET /api/v1/wallet`` with the invoice key, and again with the admin key when one
  is configured (it must be an admin key); the wallet's network is ``[wallet] network`` or ``bc``.
- ``nwc``: the wallet service's info event through the URI's relays, then ``get_info`` (or
  ``get_balance``) when the service offers it; ``[wallet] network``, when set, must be the one
  the service reports.
- ``lightning_address``: the address's LNURL-pay document, which must allow zaps; the wallet's
  verify poller is started (``aclose`` stops it). ``receipt_relays`` are where the agent asks
  zap receipts of its own invoices to be published (its read relays).
- ``dev``: the in-process dev wallet (NOT REAL MONEY; the configuration refuses it unless
  allowed).

Every failure is a :class:`~bot.wallets.base.WalletStartError` whose message names the setting
and the fix, e.g. ``wallet not answering at http://127.0.0.1:5000: check [wallet.lnbits] url``;
its ``setting`` attribute is that setting. Messages never contain a secret. The caller owns the
wallet and closes it with ``aclose()``; the injected ``http`` client stays the caller's.

:func:`make_lnurl_client` builds the LNURL client with ``[wallet] lnurl_insecure_hosts``, for
the payouts to lightning addresses and the zap intake.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import httpx

from bot.nostr.keys import Keys
from bot.nostr.nip47 import Nip47Error, NwcUri, parse_nwc_uri
from bot.secrets import Secret, SecretError
from bot.wallets.base import (
    LnurlError,
    Wallet,
    WalletError,
    WalletProtocolError,
    WalletRefused,
    WalletStartError,
    WalletUnavailable,
)
from bot.wallets.config import (
    LightningAddressConfig,
    LnbitsConfig,
    NwcConfig,
    SecretSource,
    WalletBackend,
    WalletConfig,
)
from bot.wallets.dev import DevNetwork, DevWallet
from bot.wallets.lightning_address import AgentAddress, LightningAddressWallet
from bot.wallets.lnbits import LnbitsWallet
from bot.wallets.lnurl import LnurlClient
from bot.wallets.nwc import NETWORK_PREFIXES, NwcWallet

DEFAULT_ANSWER_TIMEOUT_S = 10.0
"""How long the start-up check waits for the backend's answer."""

T = TypeVar("T")


def make_lnurl_client(config: WalletConfig | None, http: httpx.AsyncClient) -> LnurlClient:
    """The LNURL client, with the configured insecure-host allow-list (none without config)."""
    hosts = frozenset(config.lnurl_insecure_hosts) if config is not None else frozenset()
    return LnurlClient(http, insecure_hosts=hosts)


async def make_wallet(
    config: WalletConfig | None,
    *,
    keys: Keys,
    http: httpx.AsyncClient,
    receipt_relays: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    dev_network: DevNetwork | None = None,
    answer_timeout_s: float = DEFAULT_ANSWER_TIMEOUT_S,
) -> Wallet:
    """The configured wallet, answering; see the module docstring."""
    env = os.environ if environ is None else environ
    if config is None:
        raise WalletStartError(
            "no [wallet] section in the configuration: add one with backend = \"lnbits\", "
            "\"nwc\", \"lightning_address\" or \"dev\" (see docs/OPERATIONS.md)",
            "[wallet]",
        )
    backend = config.backend
    if backend is WalletBackend.DEV:
        return DevWallet(network=config.invoice_network(), dev_network=dev_network)
    table = config.backend_table
    if isinstance(table, LnbitsConfig):
        return await _lnbits(config, table, http, env, answer_timeout_s)
    if isinstance(table, NwcConfig):
        return await _nwc(config, table, http, env, answer_timeout_s)
    assert isinstance(table, LightningAddressConfig)  # the config checks the table is there
    return await _lightning_address(config, table, keys, http, receipt_relays, answer_timeout_s)


def _secret(source: SecretSource, environ: Mapping[str, str]) -> Secret:
    try:
        return source.read(environ)
    except SecretError as exc:
        raise WalletStartError(f"{source.setting}: {exc}", source.setting) from None


async def _answer(call: Awaitable[T], timeout_s: float) -> T:
    """``call``'s result; no answer within ``timeout_s`` is ``WalletUnavailable``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except TimeoutError:
        raise WalletUnavailable("no answer in time") from None


async def _lnbits(
    config: WalletConfig,
    table: LnbitsConfig,
    http: httpx.AsyncClient,
    environ: Mapping[str, str],
    timeout_s: float,
) -> Wallet:
    invoice_key = _secret(table.invoice_key, environ)
    admin_key = _secret(table.admin_key, environ) if table.admin_key is not None else None
    url = table.url.rstrip("/")
    wallet = LnbitsWallet(
        http,
        url=url,
        invoice_key=invoice_key.reveal(),
        admin_key=admin_key.reveal() if admin_key is not None else None,
        network=config.invoice_network(),
        timeout_s=timeout_s,
    )
    checks: list[tuple[SecretSource, Callable[[], Awaitable[object]]]] = [
        (table.invoice_key, wallet.balance_msat)
    ]
    if table.admin_key is not None:
        checks.append((table.admin_key, wallet.check_admin_key))
    for source, check in checks:
        try:
            await _answer(check(), timeout_s)
        except WalletUnavailable:
            raise WalletStartError(
                f"wallet not answering at {url}: check [wallet.lnbits] url", "[wallet.lnbits] url"
            ) from None
        except WalletProtocolError:
            raise WalletStartError(
                f"{url} does not answer like an LNbits server: check [wallet.lnbits] url",
                "[wallet.lnbits] url",
            ) from None
        except WalletRefused as exc:
            what = "is not an admin key" if exc.code == "not_admin" else "was refused"
            raise WalletStartError(
                f"the {source.label} ({source.describe()}) {what} by LNbits at {url}: check "
                f"{source.setting}",
                source.setting,
            ) from None
    return wallet


async def _nwc(
    config: WalletConfig,
    table: NwcConfig,
    http: httpx.AsyncClient,
    environ: Mapping[str, str],
    timeout_s: float,
) -> Wallet:
    setting = table.uri.setting
    secret = _secret(table.uri, environ)
    try:
        uri: NwcUri = parse_nwc_uri(secret.reveal())
    except Nip47Error as exc:
        raise WalletStartError(f"{setting}: not a NWC connection URI ({exc})", setting) from None
    except ValueError:
        raise WalletStartError(f"{setting}: not a NWC connection URI", setting) from None
    relays = ", ".join(uri.relays)
    try:
        wallet = await NwcWallet.open(
            uri,
            network=config.network,
            request_timeout_s=float(table.request_timeout_s),
            info_timeout_s=timeout_s,
            connect_timeout_s=timeout_s,
            http_client=http,
        )
    except WalletUnavailable as exc:
        raise WalletStartError(
            f"NWC wallet not answering on {relays} ({exc}): check {setting} (its relay and "
            f"wallet pubkey) and that the wallet service is running",
            setting,
        ) from None
    except WalletError as exc:
        raise WalletStartError(
            f"NWC wallet on {relays} answered badly ({exc}): check {setting}", setting
        ) from None
    try:
        await _nwc_check(config, wallet, setting, relays, timeout_s)
    except BaseException:
        await wallet.aclose()
        raise
    return wallet


async def _nwc_check(
    config: WalletConfig, wallet: NwcWallet, setting: str, relays: str, timeout_s: float
) -> None:
    methods = wallet.info.methods
    try:
        if "get_info" in methods:
            info = await _answer(wallet.get_info(), timeout_s)
            reported = NETWORK_PREFIXES.get(str(info.get("network", "")).lower())
            if config.network is not None and reported not in (None, config.network):
                raise WalletStartError(
                    f"the NWC wallet is on {reported} but [wallet] network = "
                    f"\"{config.network}\": check [wallet] network",
                    "[wallet] network",
                )
        elif "get_balance" in methods:
            await _answer(wallet.balance_msat(), timeout_s)
    except WalletUnavailable:
        raise WalletStartError(
            f"NWC wallet not answering on {relays}: check {setting} and that the wallet service "
            f"is running",
            setting,
        ) from None
    except WalletRefused as exc:
        raise WalletStartError(
            f"the NWC wallet refused this connection ({exc.code}): check {setting} (the "
            f"connection's permissions)",
            setting,
        ) from None
    except WalletProtocolError as exc:
        raise WalletStartError(
            f"NWC wallet on {relays} answered badly ({exc}): check {setting}", setting
        ) from None


async def _lightning_address(
    config: WalletConfig,
    table: LightningAddressConfig,
    keys: Keys,
    http: httpx.AsyncClient,
    receipt_relays: Sequence[str],
    timeout_s: float,
) -> Wallet:
    setting = "[wallet.lightning_address] address"
    if not receipt_relays:
        raise WalletStartError(
            "the lightning-address wallet needs the agent's read relays for zap receipts: "
            "check relays.toml",
            "relays",
        )
    lnurl = make_lnurl_client(config, http)
    try:
        address = AgentAddress(table.address, lnurl)
    except LnurlError:
        raise WalletStartError(
            f"{table.address!r} is not a lightning address: check {setting}", setting
        ) from None
    try:
        await _answer(address.pay_request(), timeout_s)
    except (WalletUnavailable, LnurlError) as exc:
        code = exc.code if isinstance(exc, LnurlError) else "unreachable"
        raise _address_error(code, str(exc), address.url, table.address) from None
    wallet = LightningAddressWallet(
        address=address,
        lnurl=lnurl,
        keys=keys,
        receipt_relays=receipt_relays,
        network=config.invoice_network(),
        poll_interval_s=float(table.poll_interval_s),
        verify_url_template=table.verify_url_template,
    )
    wallet.start()
    return wallet


def _address_error(code: str, detail: str, url: str, address: str) -> WalletStartError:
    setting = "[wallet.lightning_address] address"
    if code == "unreachable":
        return WalletStartError(f"wallet not answering at {url}: check {setting}", setting)
    if code == "no_zaps":
        return WalletStartError(
            f"the lightning address {address} does not support zaps (allowsNostr, nostrPubkey): "
            f"check {setting}",
            setting,
        )
    if code == "bad_address":
        hosts = "[wallet] lnurl_insecure_hosts"
        return WalletStartError(
            f"{url} may not be reached (plain http, an IP or a local host): use https, or list "
            f"its host in {hosts}",
            hosts,
        )
    return WalletStartError(f"{url} answered badly ({detail}): check {setting}", setting)
