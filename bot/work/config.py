"""Backend configuration: plain frozen dataclasses, validated on construction.

:class:`OpenAIConfig` — any OpenAI-compatible chat-completions endpoint::

    OpenAIConfig(base_url="http://127.0.0.1:11434/v1", model="llama3.2")          # Ollama
    OpenAIConfig(base_url="https://api.openai.com/v1", model="gpt-4o-mini",
                 api_key_env="OPENAI_API_KEY", max_tokens_field="max_completion_tokens")
    OpenAIConfig(base_url="https://openrouter.ai/api/v1", model="meta-llama/llama-3.1-8b-instruct",
                 api_key_file=Path("/etc/timmy/openrouter.key"),
                 headers={"HTTP-Referer": "https://example.org", "X-Title": "Timmy"})

:class:`LocalModelConfig` — the embedded model (extra ``local``); all defaults work.

``max_tokens`` is the default output cap; a request may ask for less, never more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bot.work.errors import WorkConfigError
from bot.work.result import MAX_MODEL_CHARS
from bot.work.tokens import DEFAULT_FIXED_OVERHEAD, DEFAULT_PER_MESSAGE_OVERHEAD

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WorkConfigError(f"{name} must be an integer >= 1")


def _non_negative_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WorkConfigError(f"{name} must be an integer >= 0")


def _positive_seconds(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise WorkConfigError(f"{name} must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    """An OpenAI-compatible endpoint.

    - ``base_url``: up to and including ``/v1`` (``POST {base_url}/chat/completions``).
    - ``model``: the model name the server expects.
    - ``models``: other model names of the same server a NIP-90 request may pick with its
      ``model`` param (none by default: the param may only name ``model``). Every one is priced
      with the one ``[pricing]`` table (the quote counts the prompt and caps the output the same
      way), so list only models that price allows.
    - ``api_key_env`` / ``api_key_file``: where the key is read (the file wins; it must be mode
      0600 or stricter); neither for servers that need no key. Sent as ``Authorization: Bearer``.
    - ``headers``: extra headers sent with every request (e.g. OpenRouter's ``HTTP-Referer``).
    - ``max_tokens``: the default output cap; ``max_tokens_field``: the parameter name that
      carries it (``max_completion_tokens`` for OpenAI's newer models; a server that refuses
      ``max_tokens`` and names ``max_completion_tokens`` is retried once with it).
    - ``stream``: ask for a streamed answer (time to first token measured; a stall is noticed
      at ``read_timeout_s``); usage is then requested with ``stream_options.include_usage``.
    - ``max_prompt_tokens``: a prompt estimated above this is refused as over budget before
      anything is sent (the model's context window minus ``max_tokens``).
    - ``connect_timeout_s``, ``read_timeout_s``: per-attempt limits under the request deadline.
    - ``max_attempts``, ``backoff_s``: bounded retries, only where nothing can have been
      generated (connection not established, HTTP 408/429/500/502/503); exponential backoff
      from ``backoff_s`` with jitter, honouring ``Retry-After``, never past the deadline.
    - ``tokenize``: ask the server's llama.cpp ``/apply-template`` + ``/tokenize`` endpoints
      (at the server root) for an exact prompt count; when they are absent the conservative
      bound of :mod:`bot.work.tokens` is used (``per_message_overhead``, ``fixed_overhead``).
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    max_tokens: int = 512
    max_tokens_field: MaxTokensField = "max_tokens"
    stream: bool = True
    temperature: float | None = None
    max_prompt_tokens: int = 8192
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 3
    backoff_s: float = 0.25
    tokenize: bool = True
    per_message_overhead: int = DEFAULT_PER_MESSAGE_OVERHEAD
    fixed_overhead: int = DEFAULT_FIXED_OVERHEAD
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise WorkConfigError("base_url must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise WorkConfigError("base_url must not carry credentials; use api_key_file")
        if not isinstance(self.model, str) or not self.model:
            raise WorkConfigError("model must be a non-empty string")
        if not isinstance(self.models, list | tuple) or not all(
            isinstance(m, str) and m and len(m) <= MAX_MODEL_CHARS and m.isprintable()
            for m in self.models
        ):
            raise WorkConfigError(
                f"models must be a list of model names (at most {MAX_MODEL_CHARS} characters)"
            )
        object.__setattr__(self, "models", tuple(dict.fromkeys(m for m in self.models
                                                               if m != self.model)))
        if self.max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise WorkConfigError("max_tokens_field must be max_tokens or max_completion_tokens")
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise WorkConfigError("headers must map strings to strings")
        if any(k.lower() == "authorization" for k in self.headers):
            raise WorkConfigError("put the API key in api_key_env or api_key_file, not headers")
        _positive_int("max_tokens", self.max_tokens)
        _positive_int("max_prompt_tokens", self.max_prompt_tokens)
        _positive_int("max_attempts", self.max_attempts)
        _non_negative_int("per_message_overhead", self.per_message_overhead)
        _non_negative_int("fixed_overhead", self.fixed_overhead)
        _positive_seconds("connect_timeout_s", self.connect_timeout_s)
        _positive_seconds("read_timeout_s", self.read_timeout_s)
        _positive_seconds("backoff_s", self.backoff_s)
        if self.temperature is not None and (
            not isinstance(self.temperature, int | float) or not 0 <= self.temperature <= 2
        ):
            raise WorkConfigError("temperature must be between 0 and 2")

    @property
    def server_root(self) -> str:
        """``base_url`` without a trailing ``/v1`` (where llama.cpp serves ``/tokenize``)."""
        root = self.base_url.rstrip("/")
        return root[: -len("/v1")] if root.endswith("/v1") else root


@dataclass(frozen=True, slots=True)
class LocalModelConfig:
    """The embedded model, run in-process on the CPU.

    - ``model_path``: a GGUF file; ``None`` uses the packaged gemma-3-270m (assembled once into
      the cache directory, see :func:`bot.work.local.model_cache_dir`).
    - ``model_name``: the name reported with answers.
    - ``n_ctx``: the context window in tokens; a prompt plus ``max_tokens`` above it is over
      budget. ``max_tokens``: the default output cap.
    - ``threads``: CPU threads (``None``: all cores). Requests run one at a time.
    - ``temperature``, ``seed``: sampling (a fixed seed makes answers repeatable).
    """

    model_path: Path | None = None
    model_name: str = "gemma-3-270m-q4_k_m"
    n_ctx: int = 2048
    max_tokens: int = 128
    threads: int | None = None
    temperature: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        _positive_int("n_ctx", self.n_ctx)
        _positive_int("max_tokens", self.max_tokens)
        if self.max_tokens >= self.n_ctx:
            raise WorkConfigError("max_tokens must be smaller than n_ctx")
        if self.threads is not None:
            _positive_int("threads", self.threads)
        _non_negative_int("seed", self.seed)
        if not isinstance(self.temperature, int | float) or not 0 <= self.temperature <= 2:
            raise WorkConfigError("temperature must be between 0 and 2")
        if not isinstance(self.model_name, str) or not self.model_name:
            raise WorkConfigError("model_name must be a non-empty string")
