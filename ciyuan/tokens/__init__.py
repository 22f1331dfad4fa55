"""Token accounting: offline tokenizers, parallel counting, and token schedules for every modality.

Other layers import from here only: ``get_tokenizer``, ``list_tokenizers``, ``count_parallel``,
``count_records_parallel``, ``get_schedule``, ``schedule_version``, ``default_schedule``,
``list_schedules``. See docs/tokens.md.
"""

from ciyuan.tokens import audio as _audio  # noqa: F401  (registers the probed audio schedules)
from ciyuan.tokens import episode as _episode  # noqa: F401  (registers the robot episode schedules)
from ciyuan.tokens import vision as _vision  # noqa: F401  (registers the probed image and video schedules)
from ciyuan.tokens.parallel import count_parallel, count_records_parallel
from ciyuan.tokens.schedule import (
    DECLARED_DEFAULTS,
    MODALITY_DEFAULTS,
    TokenSchedule,
    default_schedule,
    get_schedule,
    list_schedules,
    register_schedule,
    schedule_aliases,
    schedule_for_modality,
    schedule_version,
)
from ciyuan.tokens.tokenizers import Tokenizer, clear_cache, get_tokenizer, list_tokenizers, tokenizer_version

__all__ = [
    "DECLARED_DEFAULTS",
    "MODALITY_DEFAULTS",
    "TokenSchedule",
    "Tokenizer",
    "clear_cache",
    "count_parallel",
    "count_records_parallel",
    "default_schedule",
    "get_schedule",
    "get_tokenizer",
    "list_schedules",
    "list_tokenizers",
    "register_schedule",
    "schedule_aliases",
    "schedule_for_modality",
    "schedule_version",
    "tokenizer_version",
]
