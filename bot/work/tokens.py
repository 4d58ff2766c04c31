"""A conservative token count for backends that offer no tokenizer.

Byte-level BPE and SentencePiece-with-byte-fallback tokenizers (GPT, Llama, Gemma, Mistral,
Qwen...) never produce more tokens than the text has UTF-8 bytes, plus a few for the word-start
marker. A chat template adds a few special tokens around each message (role markers, end of
turn) and a fixed amount once (BOS, the assistant prefix, a default system preamble some
templates inject). So the bound is::

    sum(utf8_bytes(content) + per_message_overhead) + fixed_overhead

It overestimates English text about fourfold: the asker is quoted more and refunded the
difference after the backend reports the real usage.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_PER_MESSAGE_OVERHEAD = 8
DEFAULT_FIXED_OVERHEAD = 32


def text_token_bound(text: str) -> int:
    """At most this many tokens for ``text`` alone (its UTF-8 byte length, plus one)."""
    return len(text.encode("utf-8", errors="surrogatepass")) + 1


def messages_token_bound(
    contents: Iterable[str],
    per_message_overhead: int = DEFAULT_PER_MESSAGE_OVERHEAD,
    fixed_overhead: int = DEFAULT_FIXED_OVERHEAD,
) -> int:
    """An upper bound on the prompt tokens of a chat made of these message contents."""
    return fixed_overhead + sum(text_token_bound(c) + per_message_overhead for c in contents)
