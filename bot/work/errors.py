"""Exceptions of ``bot.work``: configuration mistakes and programming errors only.

A backend that fails to answer does **not** raise: it returns a
:class:`bot.work.result.WorkFailure` value. Exceptions are kept for what the caller cannot plan
around at request time::

    WorkError                   base of everything raised by bot.work (a ValueError)
    ├── InvalidWorkRequest      a request built with bad values (empty question, max_tokens < 1...)
    ├── PricingError            a Pricing with negative or non-integer prices, or bad token counts
    └── WorkConfigError         a backend configuration that cannot work
        ├── ApiKeyError         the API key file/variable is missing, empty or too permissive
        └── LocalModelUnavailable  the embedded model cannot be used (extra not installed,
                                   model file missing or unloadable)

Messages never contain API keys or other secrets.
"""

from __future__ import annotations


class WorkError(ValueError):
    """Base of every exception raised by ``bot.work``."""


class InvalidWorkRequest(WorkError):
    """A :class:`~bot.work.result.WorkRequest` was built with values that cannot be served."""


class PricingError(WorkError):
    """A price or token count that is negative, not an integer, or otherwise unusable."""


class WorkConfigError(WorkError):
    """A backend configuration that cannot work."""


class ApiKeyError(WorkConfigError):
    """The API key could not be read, is empty, or its file is readable by others."""


class LocalModelUnavailable(WorkConfigError):
    """The embedded model cannot be used here; the message says how to fix it."""
