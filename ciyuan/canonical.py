"""The one canonical JSON form: keys sorted, no spaces, UTF-8 kept as is.

Everything that is hashed, signed or compared byte for byte goes through here: version manifests
and record metadata (store), the audit chain and signed receipts (ledger), settlement statements,
selection ids, curation scratch files. Two copies that drifted apart (a space, an escaped é) would
give the same data two hashes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def canonical_json(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as canonical JSON text; ``default=str`` writes values JSON has no type for as text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default)


def canonical_bytes(obj: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """:func:`canonical_json` as UTF-8 bytes (what is hashed and signed)."""
    return canonical_json(obj, default=default).encode()
