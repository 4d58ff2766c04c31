"""The LNbits fixture itself: a real server, funded wallets, an internal payment."""

from collections.abc import Callable

import httpx

from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer


def test_funded_wallet_pays_another(
    lnbits_server: LnbitsServer, lnbits_new_wallet: Callable[..., LnbitsAccount]
) -> None:
    payer = lnbits_new_wallet("payer", balance_sat=1000)
    payee = lnbits_new_wallet("payee")
    with httpx.Client(base_url=lnbits_server.url, timeout=30.0) as client:
        wallet = client.get("/api/v1/wallet", headers={"X-Api-Key": payer.inkey}).json()
        assert wallet["balance"] == 1_000_000
        invoice = client.post(
            "/api/v1/payments",
            headers={"X-Api-Key": payee.inkey},
            json={"out": False, "amount": 21, "memo": "fixture"},
        ).json()
        paid = client.post(
            "/api/v1/payments",
            headers={"X-Api-Key": payer.adminkey},
            json={"out": True, "bolt11": invoice["bolt11"]},
        )
        assert paid.status_code == 201
        status = client.get(
            f"/api/v1/payments/{invoice['payment_hash']}", headers={"X-Api-Key": payee.inkey}
        ).json()
        assert status["paid"] is True
        assert payee.lightning_address.endswith(lnbits_server.url.removeprefix("http://"))
