"""Timmy on Nostr: the agent — everything that talks to the outside world."""
