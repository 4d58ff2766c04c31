"""The application: the running agent that joins the ledger, relays, wallets and work.

Transport (``bot.relays``) and adapters (``bot.wallets``, ``bot.work``) hold no application
rules; everything that decides what a DM, a payment or a zap does lives here.
"""
