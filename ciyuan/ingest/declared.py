"""What a provider declares about a dataset (its card): read from a YAML or JSON file and checked.

The card's fields are Croissant's and its Responsible-AI (``rai:``) vocabulary. They travel with
every version in ``manifest.extra.card``, feed the Croissant export, and are what the appraisal's
documentation indicator counts, so a typo in a field name is refused rather than silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ciyuan.errors import InvalidInput

CARD_FIELDS = (
    "name", "description", "license", "creator", "publisher", "url", "version", "datePublished",
    "citeAs", "keywords", "inLanguage",
    "rai:dataCollection", "rai:dataCollectionType", "rai:dataPreprocessingProtocol",
    "rai:dataUseCases", "rai:dataLimitations", "rai:dataBiases", "rai:personalSensitiveInformation",
    "rai:dataSocialImpact", "rai:hasSyntheticData",
)  # fmt: skip
"""The card fields a dataset can have filled (the documentation indicator's denominator)."""

SET_BY_CIYUAN = ("name", "version")
"""Filled from the dataset name and version id; a declared value would contradict them."""


def _check_value(path: str, key: str, value: Any) -> None:
    if key == "rai:hasSyntheticData":
        if not isinstance(value, bool):
            raise InvalidInput(f"{path}: field {key!r} must be true or false, not {value!r}",
                               hint=f"write {key}: false (or true)")  # fmt: skip
        return
    ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if not ok or value in ("", []):
        raise InvalidInput(f"{path}: field {key!r} must be a non-empty text or list of texts, not {value!r}",
                           hint="quote the value, e.g. description: \"Work orders of 12 wind farms\"")  # fmt: skip


def load_card(path: str | Path) -> dict:
    """The card declared in ``path`` (YAML or JSON mapping), checked field by field."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read card file {p}: {exc.strerror or exc}", hint="check the path") from None
    try:
        doc = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}",
                           hint="a card is a mapping of field: value") from None  # fmt: skip
    return check_card(doc, str(p))


def check_card(doc: Any, where: str = "card") -> dict:
    """``doc`` if it is a valid card (``where`` names it in errors: the file, or "card")."""
    p = where
    if not isinstance(doc, dict):
        raise InvalidInput(f"{p}: a card must be a mapping of field: value, not {type(doc).__name__}",
                           hint="e.g. description: ..., creator: ..., rai:dataCollection: ...")  # fmt: skip
    unknown = sorted(k for k in doc if k not in CARD_FIELDS)
    if unknown:
        raise InvalidInput(f"{p}: unknown card field(s) {', '.join(map(repr, unknown))}",
                           hint="known fields: " + ", ".join(f for f in CARD_FIELDS if f not in SET_BY_CIYUAN))
    fixed = sorted(k for k in doc if k in SET_BY_CIYUAN)
    if fixed:
        raise InvalidInput(f"{p}: field(s) {', '.join(map(repr, fixed))} are set by ciyuan",
                           hint="the dataset name and the version id fill them; remove them from the card")
    for key, value in doc.items():
        _check_value(p, key, value)
    return dict(doc)
