"""A Nostr DM client that talks to one agent: what ``timmy ask`` and ``timmy demo``'s asker use.

:class:`DmClient` holds its own keys and :class:`~bot.relays.RelayPool`, sends a DM in NIP-17
(gift-wrapped) or NIP-04, and collects the agent's replies by the request they answer: NIP-17
replies name the request's rumor id (``e`` tag in the rumor), NIP-04 replies the request's event
id. ``send`` returns that id; ``reply(id, n)`` waits for the n-th reply to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

from bot.nostr import nip04, nip17
from bot.nostr.errors import NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.pool import GIFT_WRAP_LOOKBACK_S

Protocol = Literal["nip17", "nip04"]
CONNECT_TIMEOUT_S = 10.0


class DmClientError(RuntimeError):
    """No relay connected or accepted the DM, or no reply came in time."""


class DmClient:
    def __init__(self, keys: Keys, agent_pubkey: str, pool: RelayPool) -> None:
        self.keys = keys
        self.agent_pubkey = agent_pubkey
        self.pool = pool
        self.replies: dict[str, list[str]] = {}
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        me = self.keys.public_hex
        await self.pool.start()
        await self.pool.subscribe([{"kinds": [1059], "#p": [me]}], self._on_wrap,
                                  lookback_s=GIFT_WRAP_LOOKBACK_S)
        await self.pool.subscribe([{"kinds": [4], "#p": [me], "authors": [self.agent_pubkey]}],
                                  self._on_nip04)
        if not await self.pool.wait_connected(CONNECT_TIMEOUT_S):
            raise DmClientError(f"no relay connected within {CONNECT_TIMEOUT_S:.0f} s: "
                                f"{', '.join(self.pool.urls)}")

    async def stop(self) -> None:
        await self.pool.stop()

    def _keep(self, request_id: str, text: str) -> None:
        self.replies.setdefault(request_id, []).append(text)
        self._arrived.set()

    async def _on_wrap(self, event: Event, relay_url: str) -> None:
        try:
            message = nip17.receive(self.keys, event)
        except NostrError:
            return
        if message.sender == self.agent_pubkey and message.reply_to is not None:
            self._keep(message.reply_to, message.text)

    async def _on_nip04(self, event: Event, relay_url: str) -> None:
        if event.pubkey != self.agent_pubkey:
            return
        request_id = next((t[1] for t in event.tags if len(t) > 1 and t[0] == "e"), None)
        if request_id is None:
            return
        try:
            text = nip04.decrypt(self.keys.secret_hex, event.pubkey, event.content)
        except NostrError:
            return
        self._keep(request_id, text)

    async def send(self, text: str, protocol: Protocol = "nip17") -> str:
        """Publish the DM; the id its replies will name."""
        if protocol == "nip04":
            content = nip04.encrypt(self.keys.secret_hex, self.agent_pubkey, text)
            event = sign_event(self.keys, nip04.KIND_ENCRYPTED_DM, content,
                               [["p", self.agent_pubkey]])
            request_id = event.id
        else:
            out = nip17.private_message(self.keys, self.agent_pubkey, text)
            event, request_id = out.to_recipient, out.rumor.id
        result = await self.pool.publish(event)
        if not result.ok:
            raise DmClientError(f"no relay accepted the DM: {dict(result.refused)}")
        return request_id

    async def reply(self, request_id: str, index: int = 0, timeout_s: float = 180.0) -> str:
        """Reply number ``index`` (0-based) to ``request_id``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(self.replies.get(request_id, [])) <= index:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DmClientError(f"no reply #{index + 1} from the agent within "
                                    f"{timeout_s:.0f} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 1.0))
        return self.replies[request_id][index]
