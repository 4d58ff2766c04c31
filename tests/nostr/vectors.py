"""Loads the official test data copied, unmodified, into ``tests/vectors/``."""

import hashlib
import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
NIP44_SHA256 = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def sha256_of(name: str) -> str:
    return hashlib.sha256((VECTORS / name).read_bytes()).hexdigest()
