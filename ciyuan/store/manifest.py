"""Version manifests and content-addressed version ids.

The id is the sha256 of the manifest's canonical JSON without ``created_at``: the same records made
the same way give the same id, whenever and wherever they were made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT = "ciyuan.manifest/1"
UNHASHED = ("created_at", "id")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def version_id(manifest: dict) -> str:
    hashed = {k: v for k, v in manifest.items() if k not in UNHASHED}
    return hashlib.sha256(canonical(hashed)).hexdigest()


def reason_kind(reason: str) -> str:
    """The kind of a quarantine or rejection reason: the text before its first colon."""
    return reason.split(":", 1)[0].strip()
