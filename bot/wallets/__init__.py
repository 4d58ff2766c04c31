"""Lightning wallets: one interface (``bot.wallets.base``) and its backends.

- ``base``        the :class:`Wallet` protocol, result values and the exception hierarchy
- ``bolt11``      decoding and checking bolt11 strings (the ``bolt11`` library, all networks)
- ``lnbits``      LNbits over REST (httpx) with its websocket for settlements
- ``dev``         an in-process wallet for local runs and tests: not real money
- ``lnurl``       LNURL-pay / lightning-address client (LUD-06/16)
- ``nwc``         Nostr Wallet Connect (NIP-47) over the relay pool
- ``lightning_address``  the agent's own lightning address as a receive-only backend

Adapters only: what the agent does with payments (settlements, zaps, payouts) is in
``bot.agent``.
"""

from bot.wallets.base import (
    DEFAULT_INVOICE_EXPIRY_S,
    InvalidInvoice,
    Invoice,
    InvoiceState,
    InvoiceStatus,
    LnurlError,
    PaymentResult,
    PaymentState,
    Settlement,
    SettlementSource,
    Wallet,
    WalletError,
    WalletProtocolError,
    WalletRefused,
    WalletUnavailable,
)

__all__ = [
    "DEFAULT_INVOICE_EXPIRY_S",
    "InvalidInvoice",
    "Invoice",
    "InvoiceState",
    "InvoiceStatus",
    "LnurlError",
    "PaymentResult",
    "PaymentState",
    "Settlement",
    "SettlementSource",
    "Wallet",
    "WalletError",
    "WalletProtocolError",
    "WalletRefused",
    "WalletUnavailable",
]
