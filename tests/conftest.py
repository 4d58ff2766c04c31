"""Shared test configuration.

Every module in ``tests/fixtures/`` is loaded as a pytest plugin, so a fixture written there
(a real relay, a real LNbits server, a test AI server...) is available to every test without
imports. Each area owns its own fixture module.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
