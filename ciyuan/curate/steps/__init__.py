"""The built-in curation steps, by name. ``registry()`` is what ``ciyuan steps`` lists."""

from __future__ import annotations

from typing import Any

from ciyuan.curate.codes import code_matches, rejection_code
from ciyuan.curate.steps.base import REJECTED, GlobalStep, Param, Step, StepStats
from ciyuan.curate.steps.decontaminate import Decontaminate
from ciyuan.curate.steps.episode import EpisodeFilter, EpisodeIdleTrim, EpisodeStats, EpisodeTaskText
from ciyuan.curate.steps.episode_dedup import EpisodeExactDedup, EpisodeNearDedup
from ciyuan.curate.steps.exact_dedup import ExactDedup
from ciyuan.curate.steps.graph import GraphCanonical, GraphDedup, GraphPii, ShaclFilter
from ciyuan.curate.steps.langid import LangId
from ciyuan.curate.steps.length import Length
from ciyuan.curate.steps.media_dedup import MediaExactDedup, MediaNearDedup
from ciyuan.curate.steps.media_filters import AudioQuality, CaptionLength, MediaFilter
from ciyuan.curate.steps.near_dedup import NearDedup
from ciyuan.curate.steps.normalize import Normalize
from ciyuan.curate.steps.pii import Pii
from ciyuan.curate.steps.quality import Quality
from ciyuan.errors import InvalidInput

__all__ = [
    "REJECTED",
    "GlobalStep",
    "Param",
    "Step",
    "StepStats",
    "code_matches",
    "describe",
    "make_step",
    "registry",
    "rejection_code",
]

_STEPS: tuple[type[Step], ...] = (
    Normalize, LangId, Quality, Pii, ExactDedup, NearDedup, Decontaminate, Length,
    MediaFilter, AudioQuality, CaptionLength, MediaExactDedup, MediaNearDedup,
    EpisodeTaskText, EpisodeIdleTrim, EpisodeFilter, EpisodeExactDedup, EpisodeNearDedup, EpisodeStats,
    GraphCanonical, GraphDedup, GraphPii, ShaclFilter,
)  # fmt: skip


def registry() -> dict[str, type[Step]]:
    """Step name -> class, in the order a typical recipe uses them."""
    return {cls.name: cls for cls in _STEPS}


def make_step(name: str, params: dict[str, Any] | None = None) -> Step:
    """Build a step by name, checking its parameters."""
    reg = registry()
    if name not in reg:
        raise InvalidInput(f"unknown step {name!r}", hint=f"built-in steps: {', '.join(reg)}")
    return reg[name](**(params or {}))


def describe() -> list[dict]:
    """Every step with kind, the modalities it applies to, description and parameters."""
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "modalities": sorted(c.modalities),
            "description": c.description,
            "params": [p.to_dict() for p in c.params],
        }
        for c in _STEPS
    ]
