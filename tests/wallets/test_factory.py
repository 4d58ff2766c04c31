"""make_wallet: the configured backend, built and answering, or one WalletStartError naming the
setting and the fix. Real LNbits, the NWC service fixture, the LNURL provider fixture."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import parse_settings
from bot.nostr.keys import Keys
from bot.secrets import write_secret_file
from bot.wallets.base import InvoiceState, SettlementSource, Wallet, WalletStartError
from bot.wallets.config import (
    LightningAddressConfig,
    LnbitsConfig,
    NwcConfig,
    WalletBackend,
    WalletConfig,
)
from bot.wallets.dev import NOT_REAL_MONEY, DevNetwork, DevWallet
from bot.wallets.factory import make_lnurl_client, make_wallet
from bot.wallets.lightning_address import LightningAddressWallet
from bot.wallets.lnbits import LnbitsWallet
from bot.wallets.nwc import NwcWallet
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider
from tests.fixtures.nwc_service import NwcServiceFactory

AGENT = Keys.generate()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def lnbits_config(url: str, **keys: Any) -> WalletConfig:
    return WalletConfig(WalletBackend.LNBITS, lnbits=LnbitsConfig(url=url, **keys))


async def setup_error(config: WalletConfig | None, http: httpx.AsyncClient,
                      environ: dict[str, str], **kwargs: Any) -> WalletStartError:
    with pytest.raises(WalletStartError) as info:
        await make_wallet(config, keys=AGENT, http=http, environ=environ, **kwargs)
    return info.value


# --- LNbits ------------------------------------------------------------------------------------


async def test_lnbits_from_env_and_0600_file_answers(
    tmp_path: Path, http: httpx.AsyncClient, lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("agent", 3)
    admin_file = tmp_path / "admin.key"
    write_secret_file(admin_file, account.adminkey)
    config = lnbits_config(lnbits_server.url, invoice_key_env="INKEY", admin_key_file=admin_file)
    wallet = await make_wallet(config, keys=AGENT, http=http, environ={"INKEY": account.inkey})
    try:
        assert isinstance(wallet, LnbitsWallet) and isinstance(wallet, SettlementSource)
        assert wallet.network == "bc" and wallet.is_real_money
        assert await wallet.balance_msat() == 3_000
        invoice = await wallet.make_invoice(2_000, description="config test")
        status = await wallet.lookup_invoice(invoice.payment_hash)
        assert status.state is InvoiceState.PENDING
        assert account.inkey not in repr(wallet) and account.adminkey not in repr(wallet)
    finally:
        await wallet.aclose()


async def test_lnbits_not_answering_names_the_url_setting(http: httpx.AsyncClient) -> None:
    url = closed_port_url()
    error = await setup_error(lnbits_config(url, invoice_key_env="K"), http, {"K": "k" * 32})
    assert str(error) == f"wallet not answering at {url}: check [wallet.lnbits] url"
    assert error.setting == "[wallet.lnbits] url"


async def test_lnbits_refused_keys_name_their_setting(
    tmp_path: Path, http: httpx.AsyncClient, lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("agent")
    wrong = await setup_error(
        lnbits_config(lnbits_server.url, invoice_key_env="K"), http, {"K": "0" * 32}
    )
    assert wrong.setting == "[wallet.lnbits] invoice_key_env"
    assert "LNbits invoice key (env K) was refused" in str(wrong) and "0" * 32 not in str(wrong)
    # the invoice key where the admin key belongs: it cannot pay, so it is refused at start
    swapped = await setup_error(
        lnbits_config(lnbits_server.url, invoice_key_env="K", admin_key_env="A"),
        http, {"K": account.inkey, "A": account.inkey},
    )
    assert swapped.setting == "[wallet.lnbits] admin_key_env"
    assert "is not an admin key" in str(swapped) and account.inkey not in str(swapped)


async def test_missing_and_loose_secrets_name_their_setting(
    tmp_path: Path, http: httpx.AsyncClient, lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("agent")
    unset = await setup_error(lnbits_config(lnbits_server.url, invoice_key_env="INKEY"), http, {})
    assert unset.setting == "[wallet.lnbits] invoice_key_env"
    assert "INKEY" in str(unset) and "not set" in str(unset)
    loose = tmp_path / "invoice.key"
    loose.write_text(account.inkey)
    loose.chmod(0o644)
    error = await setup_error(lnbits_config(lnbits_server.url, invoice_key_file=loose), http, {})
    assert error.setting == "[wallet.lnbits] invoice_key_file"
    assert "chmod 600" in str(error) and account.inkey not in str(error)
    missing = await setup_error(
        lnbits_config(lnbits_server.url, invoice_key_file=tmp_path / "nope"), http, {}
    )
    assert "cannot be read" in str(missing)


# --- NWC ---------------------------------------------------------------------------------------


async def test_nwc_from_a_0600_file_answers(
    tmp_path: Path, http: httpx.AsyncClient, relay_url: str,
    nwc_service_factory: NwcServiceFactory,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=2)
    uri_file = tmp_path / "nwc.uri"
    write_secret_file(uri_file, service.uri.to_uri())
    config = WalletConfig(WalletBackend.NWC, nwc=NwcConfig(uri_file=uri_file))
    wallet = await make_wallet(config, keys=AGENT, http=http, environ={})
    try:
        assert isinstance(wallet, NwcWallet)
        assert wallet.network == "bc"  # asked: the service says mainnet
        assert await wallet.balance_msat() == 2_000
    finally:
        await wallet.aclose()
    assert any(method == "get_info" for method, _ in service.requests_seen)


async def test_nwc_network_must_match_the_service(
    http: httpx.AsyncClient, relay_url: str, nwc_service_factory: NwcServiceFactory
) -> None:
    service = await nwc_service_factory(relay_url)
    config = WalletConfig(WalletBackend.NWC, network="tb", nwc=NwcConfig(uri_env="NWC"))
    error = await setup_error(config, http, {"NWC": service.uri.to_uri()})
    assert error.setting == "[wallet] network"
    assert "on bc" in str(error) and service.uri.secret not in str(error)


async def test_nwc_without_a_service_is_not_answering(
    http: httpx.AsyncClient, relay_url: str
) -> None:
    uri = f"nostr+walletconnect://{Keys.generate().public_hex}?relay={relay_url}&secret={'1' * 64}"
    config = WalletConfig(WalletBackend.NWC, nwc=NwcConfig(uri_env="NWC"))
    error = await setup_error(config, http, {"NWC": uri}, answer_timeout_s=1.0)
    assert error.setting == "[wallet.nwc] uri_env"
    assert "NWC wallet not answering" in str(error) and "1" * 64 not in str(error)
    bad = await setup_error(config, http, {"NWC": "nostr+walletconnect://nope"})
    assert "not a NWC connection URI" in str(bad) and bad.setting == "[wallet.nwc] uri_env"


# --- the lightning address ---------------------------------------------------------------------


async def test_lightning_address_answers_and_invoices(
    http: httpx.AsyncClient, relay_url: str,
    lnurl_provider_factory: Callable[..., LnurlProvider],
) -> None:
    provider = lnurl_provider_factory("timmy")
    config = WalletConfig(
        WalletBackend.LIGHTNING_ADDRESS,
        lnurl_insecure_hosts=(provider.host,),
        lightning_address=LightningAddressConfig(
            address=provider.address,
            verify_url_template=provider.base_url + "/lnurlp/verify/{payment_hash}",
        ),
    )
    wallet = await make_wallet(config, keys=AGENT, http=http, receipt_relays=[relay_url],
                               environ={})
    try:
        assert isinstance(wallet, LightningAddressWallet)
        assert wallet.address.address == provider.address
        assert await wallet.address.nostr_pubkey() == provider.keys.public_hex
        invoice = await wallet.make_invoice(5_000, description="config test")
        assert invoice.amount_msat == 5_000
    finally:
        await wallet.aclose()


async def test_lightning_address_errors_name_the_setting(
    http: httpx.AsyncClient, relay_url: str,
    lnurl_provider_factory: Callable[..., LnurlProvider],
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    provider = lnurl_provider_factory("timmy")
    address = LightningAddressConfig(address=provider.address)
    not_listed = await setup_error(
        WalletConfig(WalletBackend.LIGHTNING_ADDRESS, lightning_address=address),
        http, {}, receipt_relays=[relay_url],
    )
    assert not_listed.setting == "[wallet] lnurl_insecure_hosts"
    assert "may not be reached" in str(not_listed)
    gone = lnurl_provider_factory("gone")
    gone.stop()
    down = await setup_error(
        WalletConfig(WalletBackend.LIGHTNING_ADDRESS, lnurl_insecure_hosts=(gone.host,),
                     lightning_address=LightningAddressConfig(address=gone.address)),
        http, {}, receipt_relays=[relay_url],
    )
    assert str(down).startswith("wallet not answering at http://")
    assert down.setting == "[wallet.lightning_address] address"
    no_relays = await setup_error(
        WalletConfig(WalletBackend.LIGHTNING_ADDRESS, lnurl_insecure_hosts=(provider.host,),
                     lightning_address=address),
        http, {},
    )
    assert no_relays.setting == "relays"
    plain = lnbits_new_wallet("plain")  # LNbits' own address: LNURL-pay without zaps
    host = plain.lightning_address.split("@")[1]
    no_zaps = await setup_error(
        WalletConfig(WalletBackend.LIGHTNING_ADDRESS, lnurl_insecure_hosts=(host,),
                     lightning_address=LightningAddressConfig(address=plain.lightning_address)),
        http, {}, receipt_relays=[relay_url],
    )
    assert no_zaps.setting == "[wallet.lightning_address] address"
    assert "does not support zaps" in str(no_zaps)


# --- the dev wallet and no wallet --------------------------------------------------------------


async def test_dev_wallet_when_allowed(http: httpx.AsyncClient) -> None:
    settings = parse_settings({"wallet": {"backend": "dev"}}, environ={}, allow_dev_wallet=True)
    net = DevNetwork()
    wallet = await make_wallet(settings.wallet, keys=AGENT, http=http, environ={},
                               dev_network=net)
    try:
        assert isinstance(wallet, DevWallet) and isinstance(wallet, Wallet)
        assert not wallet.is_real_money and wallet.network == "bcrt"
        invoice = await wallet.make_invoice(1_000)
        payer = DevWallet(balance_msat=5_000, dev_network=net)
        assert (await payer.pay_invoice(invoice.bolt11, max_fee_msat=0)).succeeded
        assert (await wallet.lookup_invoice(invoice.payment_hash)).state is InvoiceState.SETTLED
    finally:
        await wallet.aclose()
    with pytest.raises(ValueError, match=NOT_REAL_MONEY):
        WalletConfig(WalletBackend.DEV)


async def test_no_wallet_section_says_how_to_add_one(http: httpx.AsyncClient) -> None:
    error = await setup_error(None, http, {})
    assert error.setting == "[wallet]" and 'backend = "lnbits"' in str(error)


def test_lnurl_client_uses_the_allow_list(http: httpx.AsyncClient) -> None:
    config = WalletConfig(WalletBackend.DEV, allow_dev=True,
                          lnurl_insecure_hosts=("127.0.0.1:5000",))
    assert make_lnurl_client(config, http).address_url("a@127.0.0.1:5000").startswith("http://")
    assert make_lnurl_client(None, http).address_url("a@example.com").startswith("https://")
