"""API keys: from a 0600 file or the environment; never printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.work.apikey import Secret, load_api_key
from bot.work.errors import ApiKeyError

KEY = "sk-test-0123456789abcdefXYZ"


def _key_file(tmp_path: Path, mode: int, content: str = KEY + "\n") -> Path:
    path = tmp_path / "api.key"
    path.write_text(content)
    path.chmod(mode)
    return path


def test_key_from_private_file(tmp_path: Path) -> None:
    secret = load_api_key(None, _key_file(tmp_path, 0o600))
    assert secret is not None and secret.reveal() == KEY
    assert KEY not in repr(secret) and KEY not in str(secret) and KEY not in f"{secret}"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ApiKeyError) as info:
        load_api_key(None, _key_file(tmp_path, mode))
    assert "chmod 600" in str(info.value)
    assert KEY not in str(info.value)


def test_missing_and_empty_key_files(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError):
        load_api_key(None, tmp_path / "absent.key")
    with pytest.raises(ApiKeyError):
        load_api_key(None, _key_file(tmp_path, 0o600, "  \n"))
    with pytest.raises(ApiKeyError):
        load_api_key(None, tmp_path)


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMMY_TEST_AI_KEY", KEY)
    secret = load_api_key("TIMMY_TEST_AI_KEY", None)
    assert secret == Secret(KEY)
    monkeypatch.delenv("TIMMY_TEST_AI_KEY")
    with pytest.raises(ApiKeyError) as info:
        load_api_key("TIMMY_TEST_AI_KEY", None)
    assert "TIMMY_TEST_AI_KEY" in str(info.value)


def test_no_key_configured() -> None:
    assert load_api_key(None, None) is None
    assert "TIMMY_SURELY_UNSET" not in os.environ
