"""Settings: from the environment first, then ``$CIYUAN_HOME/config.toml``, then defaults.

Only loopback and the home folder are needed by default; PostgreSQL and object storage are
chosen by URL, so the same code runs embedded or on a cluster.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ciyuan.errors import InvalidInput

DEFAULT_TOKENIZER = "cl100k_base"
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: the largest API body (a publish with tiers and a licence text) is ~40 KiB
MAX_JSON_DEPTH = 64  # a selection filter may nest 12 levels (about 26 JSON levels with its envelope)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    storage_url: str
    default_tokenizer: str = DEFAULT_TOKENIZER
    platform_fee_bps: int = 1000  # 10.00 % of each charge goes to the platform
    hold_timeout_s: int = 300
    # a metered batch never exceeds these, whatever max_tokens a request asks for (ciyuan/delivery/stream.py)
    delivery_max_batch_tokens: int = 8_000_000
    delivery_max_batch_bytes: int = 64 << 20  # record bytes (text, media, meta, ...) before encoding
    quote_ttl_s: int = 900
    secret: str = ""
    max_body_bytes: int = MAX_BODY_BYTES  # an API request body above this is refused with 413 before parsing
    max_json_depth: int = MAX_JSON_DEPTH  # JSON bodies nested deeper are refused with 422
    extra: dict = field(default_factory=dict)
    # ingest: the largest line, CSV record (quoted newlines included) or text file kept; larger ones
    # are quarantined, so one runaway field cannot take the memory
    ingest_max_record_bytes: int = 8 << 20
    ingest_quarantine_cap: int = 1000  # quarantine rows listed per input file; the rest are counted
    # media probing (ciyuan/ingest/probe): refused from the header before any pixel or sample is decoded
    media_max_pixels: int = 80_000_000  # per image (first frame); decoding one costs at most ~4 bytes a pixel
    media_max_video_side: int = 16_384  # a video's width or height above this is absurd
    media_max_duration_s: int = 86_400  # audio or video longer than a day is absurd
    media_max_fps: int = 1_000
    # ingest: media objects up to this size sit inside the Parquet shards; larger ones are
    # content-addressed blobs on the same storage (ciyuan/store/blobs.py), referenced by media_ref
    media_inline_max_bytes: int = 1 << 20
    # robot episodes: |timestamp - frame_index/fps| allowed (LeRobot's loader checks 1e-4 s)
    episode_timestamp_tolerance_s: float = 1e-4
    # RLDS / Open X-Embodiment folders declare no frame rate: their episodes get this one
    rlds_default_fps: float = 10.0

    @property
    def store_root(self) -> str:
        return self.storage_url.rstrip("/")


def _read_config_file(home: Path) -> dict:
    path = home / "config.toml"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _secret(home: Path) -> str:
    """A per-home secret for signing URLs and receipts, made once and kept in the home."""
    path = home / "secret.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(os.urandom(32).hex())
        path.chmod(0o600)
    return path.read_text().strip()


def _positive(name: str, value: object) -> int:
    """A limit must be a positive whole number: a typo must not silently remove it."""
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n <= 0:
        raise InvalidInput(
            f"setting {name} = {value!r} is not a positive whole number",
            hint=f"set {name} (config.toml) or CIYUAN_{name.upper()} to a positive number (or remove it: default)",
        )
    return n


def load_settings(home: str | Path | None = None) -> Settings:
    home_path = Path(home or os.environ.get("CIYUAN_HOME") or Path.home() / ".ciyuan").expanduser().resolve()
    home_path.mkdir(parents=True, exist_ok=True)
    conf = _read_config_file(home_path)

    def pick(env: str, key: str, default):
        return os.environ.get(env) or conf.get(key) or default

    db_url = pick("CIYUAN_DATABASE_URL", "database_url", f"sqlite:///{home_path / 'ciyuan.db'}")
    storage = pick("CIYUAN_STORAGE_URL", "storage_url", str(home_path / "store"))
    return Settings(
        home=home_path,
        database_url=db_url,
        storage_url=storage,
        default_tokenizer=pick("CIYUAN_TOKENIZER", "default_tokenizer", DEFAULT_TOKENIZER),
        platform_fee_bps=int(pick("CIYUAN_PLATFORM_FEE_BPS", "platform_fee_bps", 1000)),
        hold_timeout_s=int(pick("CIYUAN_HOLD_TIMEOUT_S", "hold_timeout_s", 300)),
        delivery_max_batch_tokens=int(pick("CIYUAN_DELIVERY_MAX_BATCH_TOKENS", "delivery_max_batch_tokens",
                                           8_000_000)),
        delivery_max_batch_bytes=int(pick("CIYUAN_DELIVERY_MAX_BATCH_BYTES", "delivery_max_batch_bytes", 64 << 20)),
        quote_ttl_s=int(pick("CIYUAN_QUOTE_TTL_S", "quote_ttl_s", 900)),
        max_body_bytes=_positive("max_body_bytes", pick("CIYUAN_MAX_BODY_BYTES", "max_body_bytes", MAX_BODY_BYTES)),
        max_json_depth=_positive("max_json_depth", pick("CIYUAN_MAX_JSON_DEPTH", "max_json_depth", MAX_JSON_DEPTH)),
        secret=os.environ.get("CIYUAN_SECRET") or conf.get("secret") or _secret(home_path),
        extra=conf,
        ingest_max_record_bytes=int(pick("CIYUAN_INGEST_MAX_RECORD_BYTES", "ingest_max_record_bytes", 8 << 20)),
        ingest_quarantine_cap=int(pick("CIYUAN_INGEST_QUARANTINE_CAP", "ingest_quarantine_cap", 1000)),
        episode_timestamp_tolerance_s=float(pick("CIYUAN_EPISODE_TIMESTAMP_TOLERANCE_S",
                                                 "episode_timestamp_tolerance_s", 1e-4)),
        rlds_default_fps=float(pick("CIYUAN_RLDS_DEFAULT_FPS", "rlds_default_fps", 10.0)),
        **{
            key: _positive(key, pick(f"CIYUAN_{key.upper()}", key, default))
            for key, default in (("media_max_pixels", 80_000_000), ("media_max_video_side", 16_384),
                                 ("media_max_duration_s", 86_400), ("media_max_fps", 1_000),
                                 ("media_inline_max_bytes", 1 << 20))
        },
    )


@cache
def settings() -> Settings:
    """Process-wide settings; tests call ``settings.cache_clear()`` after changing the environment."""
    return load_settings()
