"""Pure Nostr protocol code: one module per NIP, no sockets, no asyncio.

- ``errors``  the typed error hierarchy every codec raises on bad input
- ``keys``    secp256k1 key pairs (hex, nsec), BIP-340 signing
- ``event``   NIP-01 events: canonical serialization, id recomputation, signature checks
- ``nip04``   legacy encrypted DMs (AES-CBC)
- ``nip44``   versioned encryption v2 (ChaCha20 + HMAC-SHA256)
- ``nip59``   gift wrap / seal / rumor, and NIP-17 private DMs on top of it
- ``nip19``   bech32 entities (npub, nsec, note, nprofile, nevent, naddr)
- ``nip42``   AUTH events
- ``nip11``   relay information documents
- ``nip65``   relay lists (kind 10002) and DM relay lists (kind 10050)
"""
