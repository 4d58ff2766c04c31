"""Fixtures shared by the wallet tests."""

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client per test, closed after it."""
    async with httpx.AsyncClient() as client:
        yield client
