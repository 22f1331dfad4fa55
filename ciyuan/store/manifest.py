"""Version manifests and content-addressed version ids.

The id is the sha256 of the manifest's canonical JSON without ``created_at``: the same records made
the same way give the same id, whenever and wherever they were made.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

FORMAT = "ciyuan.manifest/1"
UNHASHED = ("created_at", "id")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def version_id(manifest: dict) -> str:
    hashed = {k: v for k, v in manifest.items() if k not in UNHASHED}
    return hashlib.sha256(canonical(hashed)).hexdigest()


_KINDS = [
    ("malformed JSON", re.compile(r"^malformed JSON", re.I)),
    ("invalid UTF-8", re.compile(r"^invalid UTF-8", re.I)),
    ("missing text field", re.compile(r"^missing text field", re.I)),
    ("empty text", re.compile(r"is empty$|only whitespace$", re.I)),
    ("text not a string", re.compile(r"^text field .* not a string", re.I)),
    ("not a JSON object", re.compile(r"^JSON value is .* not an object", re.I)),
    ("line too long", re.compile(r"^line too long", re.I)),
    ("nested too deeply", re.compile(r"^JSON nested too deeply", re.I)),
    ("unpaired surrogate", re.compile(r"^unpaired surrogate", re.I)),
    ("number out of range", re.compile(r"^number out of range", re.I)),
    ("unreadable file", re.compile(r"^cannot read (file|folder)", re.I)),
    ("record too large", re.compile(r"^CSV record too large", re.I)),
    ("unclosed quote", re.compile(r"^unclosed quote", re.I)),
    ("unreadable Parquet row group", re.compile(r"^Parquet row group \d+ unreadable", re.I)),
    ("unreadable Parquet cell", re.compile(r"^Parquet cell unreadable", re.I)),
    ("truncated or corrupt compressed file", re.compile(r"truncated|corrupt|stream", re.I)),
    ("wrong number of fields", re.compile(r"^row has \d+ fields", re.I)),
]


_MEDIA = re.compile(r"^((?:media|episode)\.[a-z_]+):")


def reason_kind(reason: str) -> str:
    """The kind of a quarantine or rejection reason, for counts by reason (details stay in the item).

    A media or episode reason starts with its code (``media.bomb: ...``, ``episode.frame_index_gap: ...``,
    docs/ingest.md): the code is the kind.
    """
    media = _MEDIA.match(reason)
    if media:
        return media.group(1)
    for kind, pattern in _KINDS:
        if pattern.search(reason):
            return kind
    return reason.split(":", 1)[0].strip()
