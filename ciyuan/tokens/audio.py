"""Audio token schedules from the probed stream: what Whisper's encoder and Qwen2-Audio count.

Both models hear 16 kHz mono in 30-second pieces of log-mel frames (100 a second, hop 160):

* Whisper pads every piece to 30 s, so each started window costs its full 1,500 encoder positions
  (50 a second): 31 s of speech is two windows, 3,000 tokens. A window starts only where there is
  at least one whole mel frame (10 ms) left.
* Qwen2-Audio's processor masks the padding, so a piece of L mel frames costs
  ``((L-1)//2+1 - 2)//2 + 1`` tokens plus ``<|audio_bos|>``/``<|audio_eos|>``. Its processor keeps
  only the first 30 s; a longer recording is counted as consecutive 30-s pieces, the way a training
  set feeds it.

The sample count at 16 kHz comes from the probe: ``ceil(samples * 16000 / sample_rate)`` when the
probe gave the per-channel sample count (the length a resampler such as librosa's produces), else
``ceil(duration_s * 16000)`` from the decoded duration, exactly, as written.
"""

from __future__ import annotations

from ciyuan.errors import InvalidInput
from ciyuan.tokens.probed import ProbedSchedule, ceil_div, ceil_frac, exact, rid, whole
from ciyuan.tokens.schedule import register_schedule


def samples_at(record: dict, facts: dict, rate: int) -> int:
    """The recording's length in samples once resampled to ``rate`` Hz."""
    key = "samples" if "samples" in facts else ("frames" if "frames" in facts else None)
    if key is not None and "sample_rate" in facts:
        n = whole(record, "audio", facts, key, minimum=0)
        sr = whole(record, "audio", facts, "sample_rate")
        return ceil_div(n * rate, sr)
    dur = exact(record, "audio", facts, "duration_s", positive=False)
    if dur is None:
        raise InvalidInput(f"record {rid(record)}: meta.audio.duration_s is missing",
                           hint="re-ingest the audio so the probe fills it")  # fmt: skip
    return ceil_frac(dur * rate)


def _whisper(s: ProbedSchedule, record: dict, facts: dict) -> int:
    p = s.params
    mel = samples_at(record, facts, p["sample_rate"]) // p["hop_length"]
    per_window = p["window_s"] * p["sample_rate"] // p["hop_length"]
    return ceil_div(mel, per_window) * p["window_tokens"]


def qwen_audio_piece(mel_frames: int) -> int:
    """Encoder outputs for one masked piece: a stride-2 conv, then a stride-2 pooling."""
    after_conv = (mel_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def _qwen2_audio(s: ProbedSchedule, record: dict, facts: dict) -> int:
    p = s.params
    n = samples_at(record, facts, p["sample_rate"])
    piece = p["chunk_s"] * p["sample_rate"]
    full, rest = divmod(n, piece)
    per_full = qwen_audio_piece(piece // p["hop_length"])
    total = full * (per_full + p["audio_tokens"])
    if rest or not full:  # the last, shorter piece (or the only one, even if empty)
        total += qwen_audio_piece(ceil_div(rest, p["hop_length"])) + p["audio_tokens"]
    return total


WHISPER = {"sample_rate": 16000, "hop_length": 160, "window_s": 30, "window_tokens": 1500}
QWEN2_AUDIO = {"sample_rate": 16000, "hop_length": 160, "chunk_s": 30, "audio_tokens": 2}

SCHEDULES = [
    ProbedSchedule("whisper-audio", "audio", 1, WHISPER, _whisper,
                   "Whisper encoder: 1,500 tokens per started 30-s window (padded to 30 s), 50 a second"),
    ProbedSchedule("qwen2-audio", "audio", 1, QWEN2_AUDIO, _qwen2_audio,
                   "Qwen2-Audio: per 30-s piece of L mel frames (100/s), a=(L-1)//2+1, (a-2)//2+1 tokens "
                   "+ audio bos/eos"),
]  # fmt: skip

for _s in SCHEDULES:
    register_schedule(_s.name, lambda s=_s: s, _s.description)
