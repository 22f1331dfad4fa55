"""Media schedules against their references, size by size.

Each reference below is a port written for this test, line by line from the cited source, and kept
apart from ciyuan/tokens/vision.py and audio.py (which are written differently on purpose: integer
rounding, exact fractions, isqrt), so a shared mistake is unlikely. Where the real reference code is
installed (transformers' ``smart_resize``, ``WhisperFeatureExtractor`` and Qwen2-Audio's
``_get_feat_extract_output_lengths``), it is run too.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ciyuan.errors import InvalidInput
from ciyuan.tokens import get_schedule, list_schedules, schedule_aliases

# =============================================================================================
# Port 1: qwen-vl-utils, QwenLM/Qwen2.5-VL, qwen-vl-utils/src/qwen_vl_utils/vision_process.py
# (read from the fork gzpeng1984/Qwen2.5-VL at 1a3995319509496337cc261e8d34216a5dd865e2):
# round_by_factor, ceil_by_factor, floor_by_factor, smart_resize, smart_nframes and the pixel
# budget of fetch_video; token counts as in transformers' Qwen2-VL processor
# (image_grid_thw.prod() // merge_size**2, grid = resized side // patch_size, t = frames // 2).
# =============================================================================================
REF_IMAGE_FACTOR = 28
REF_MIN_PIXELS = 4 * 28 * 28
REF_MAX_PIXELS = 16384 * 28 * 28
REF_MAX_RATIO = 200
REF_VIDEO_MIN_PIXELS = 128 * 28 * 28
REF_VIDEO_MAX_PIXELS = 768 * 28 * 28
REF_FRAME_FACTOR = 2
REF_FPS = 2.0
REF_FPS_MIN_FRAMES = 4
REF_FPS_MAX_FRAMES = 768
REF_VIDEO_TOTAL_PIXELS = int(float(128000 * 28 * 28 * 0.9))  # the env default of VIDEO_MAX_PIXELS


def ref_round_by_factor(number, factor):
    return round(number / factor) * factor


def ref_ceil_by_factor(number, factor):
    return math.ceil(number / factor) * factor


def ref_floor_by_factor(number, factor):
    return math.floor(number / factor) * factor


def ref_smart_resize(height, width, factor=REF_IMAGE_FACTOR, min_pixels=REF_MIN_PIXELS, max_pixels=REF_MAX_PIXELS):
    if max(height, width) / min(height, width) > REF_MAX_RATIO:
        raise ValueError("absolute aspect ratio must be smaller than 200")
    h_bar = max(factor, ref_round_by_factor(height, factor))
    w_bar = max(factor, ref_round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, ref_floor_by_factor(height / beta, factor))
        w_bar = max(factor, ref_floor_by_factor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ref_ceil_by_factor(height * beta, factor)
        w_bar = ref_ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def ref_qwen_image_tokens(width, height, min_pixels=REF_MIN_PIXELS, max_pixels=REF_MAX_PIXELS):
    resized_height, resized_width = ref_smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    patch_size, merge_size, temporal_patch_size = 14, 2, 2
    grid_t = temporal_patch_size // temporal_patch_size  # one image is repeated to the temporal patch
    grid_h, grid_w = resized_height // patch_size, resized_width // patch_size
    return (grid_t * grid_h * grid_w) // (merge_size**2) + 2  # + <|vision_start|>, <|vision_end|>


def ref_smart_nframes(total_frames, video_fps):
    fps = REF_FPS
    min_frames = ref_ceil_by_factor(REF_FPS_MIN_FRAMES, REF_FRAME_FACTOR)
    max_frames = ref_floor_by_factor(min(REF_FPS_MAX_FRAMES, total_frames), REF_FRAME_FACTOR)
    nframes = total_frames / video_fps * fps
    nframes = min(min(max(nframes, min_frames), max_frames), total_frames)
    nframes = ref_floor_by_factor(nframes, REF_FRAME_FACTOR)
    if not REF_FRAME_FACTOR <= nframes <= total_frames:
        raise ValueError(f"nframes should in interval [{REF_FRAME_FACTOR}, {total_frames}], but got {nframes}.")
    return nframes


def ref_qwen_video_tokens(width, height, total_frames, video_fps):
    nframes = ref_smart_nframes(total_frames, video_fps)
    min_pixels = REF_VIDEO_MIN_PIXELS
    total_pixels = REF_VIDEO_TOTAL_PIXELS
    max_pixels = max(min(REF_VIDEO_MAX_PIXELS, total_pixels / nframes * REF_FRAME_FACTOR), int(min_pixels * 1.05))
    resized_height, resized_width = ref_smart_resize(height, width, factor=REF_IMAGE_FACTOR, min_pixels=min_pixels,
                                                     max_pixels=max_pixels)  # fmt: skip
    grid_t, grid_h, grid_w = nframes // 2, resized_height // 14, resized_width // 14
    return (grid_t * grid_h * grid_w) // 4 + 2


# =============================================================================================
# Port 2: OpenAI, "Images and vision" guide, section "Calculating costs"
# (https://platform.openai.com/docs/guides/images-vision#calculating-costs; the wording is quoted at
# https://docs.camel-ai.org/reference/camel.utils.token_counting). "detail: low" costs 85. High:
# "first scaled to fit within a 2048 x 2048 square, maintaining their aspect ratio. Then, they are
# scaled such that the shortest side of the image is 768px long. Finally, we count how many 512px
# squares the image consists of. Each of those squares costs 170 tokens. Another 85 tokens are
# always added." The guide's examples only ever scale down
# (https://community.openai.com/t/reading-videos-with-gpt4v/523568/13: "downsized so the shortest
# dimension is 768 or under"). Sizes are kept as exact numerator/denominator pairs.
# =============================================================================================
def ref_gpt4o_tokens(width, height, detail="high"):
    if detail == "low":
        return 85
    num_w, num_h, den = width, height, 1  # side = num / den
    if max(num_w, num_h) > 2048 * den:
        longest = max(num_w, num_h)
        num_w, num_h, den = num_w * 2048, num_h * 2048, longest  # side * 2048 / longest (den was 1)
    if min(num_w, num_h) > 768 * den:
        shortest = min(num_w, num_h)
        num_w, num_h, den = num_w * 768, num_h * 768, shortest  # side * 768 / shortest
    tiles_w = -(-num_w // (512 * den))
    tiles_h = -(-num_h // (512 * den))
    return 170 * tiles_w * tiles_h + 85


# =============================================================================================
# Port 3: Anthropic, "Vision", sections "Evaluate image size" and "Calculate image costs"
# (https://docs.claude.com/en/docs/vision): "If your image's long edge is more than 1568 pixels, or
# your image is more than ~1,600 tokens, it will first be scaled down, preserving aspect ratio,
# until it's within the size limits." ... "tokens = (width px * height px)/750". We read "~1,600"
# as 1,600 and floor the scaled sides (the guide names no rounding); the count is rounded up.
# =============================================================================================
def ref_claude_tokens(width, height):
    if max(width, height) > 1568 or Fraction(width * height, 750) > 1600:
        scale_sq = min(Fraction(1568, max(width, height)) ** 2, Fraction(1600 * 750, width * height))
        width, height = (max(1, math.isqrt(math.floor(side * side * scale_sq))) for side in (width, height))
    return math.ceil(Fraction(width * height, 750))


# =============================================================================================
# Port 4: Whisper, openai/whisper: whisper/audio.py (SAMPLE_RATE 16000, HOP_LENGTH 160, N_FFT 400,
# CHUNK_LENGTH 30, N_FRAMES 3000, log_mel_spectrogram(..., padding=N_SAMPLES) drops the last STFT
# frame), whisper/transcribe.py (content_frames = mel.shape[-1] - N_FRAMES; while seek <
# content_frames: each segment is pad_or_trim'ed to N_FRAMES and encoded), whisper/model.py
# (AudioEncoder: conv1 k3 s1 p1, conv2 k3 s2 p1, n_audio_ctx 1500). Seeking advances one full window
# (what a fixed-stride encoder pass does; timestamp-driven seeking depends on the decoded text).
# =============================================================================================
def ref_whisper_tokens(n_samples_16k):
    N_SAMPLES, HOP_LENGTH, N_FFT, N_FRAMES = 480000, 160, 400, 3000
    padded = n_samples_16k + N_SAMPLES
    stft_frames = 1 + (padded + 2 * (N_FFT // 2) - N_FFT) // HOP_LENGTH  # torch.stft, center=True
    mel_frames = stft_frames - 1  # magnitudes = stft[..., :-1]
    content_frames = mel_frames - N_FRAMES
    seek, tokens = 0, 0
    while seek < content_frames:
        segment_size = min(N_FRAMES, content_frames - seek)
        frames = N_FRAMES  # pad_or_trim(mel_segment, N_FRAMES)
        after_conv1 = (frames + 2 * 1 - 3) // 1 + 1
        after_conv2 = (after_conv1 + 2 * 1 - 3) // 2 + 1
        tokens += after_conv2
        seek += segment_size
    return tokens


# =============================================================================================
# Port 5: Qwen2-Audio, huggingface/transformers:
# models/whisper/feature_extraction_whisper.py (padding="max_length" to n_samples = 30 s,
# truncation; attention_mask[:, ::hop_length]) and models/qwen2_audio/processing_qwen2_audio.py /
# modeling_qwen2_audio.py _get_feat_extract_output_lengths: input_length = (L - 1) // 2 + 1,
# num_audio_tokens = (input_length - 2) // 2 + 1, wrapped in <|audio_bos|> <|audio_eos|>. A recording
# longer than 30 s is cut into consecutive 30-s pieces, each processed the same way.
# =============================================================================================
def ref_qwen2_audio_tokens(n_samples_16k):
    n_samples, hop_length = 30 * 16000, 160
    pieces = [min(n_samples, n_samples_16k - s) for s in range(0, n_samples_16k, n_samples)] or [0]
    total = 0
    for length in pieces:
        mask = [1] * length + [0] * (n_samples - length)  # padded to max_length
        audio_length = sum(mask[::hop_length])
        input_length = (audio_length - 1) // 2 + 1
        total += (input_length - 2) // 2 + 1 + 2
    return total


# ============================================================================================= helpers


def img(rid="i", **facts) -> dict:
    return {"id": rid, "modality": "image", "text": None, "meta": {"image": facts}, "tokens": {}}


def aud(rid="a", **facts) -> dict:
    return {"id": rid, "modality": "audio", "text": None, "meta": {"audio": facts}, "tokens": {}}


def vid(rid="v", **facts) -> dict:
    return {"id": rid, "modality": "video", "text": None, "meta": {"video": facts}, "tokens": {}}


SIDES = sorted(
    set(range(1, 80))
    | {k * 28 + d for k in range(1, 64) for d in (-1, 0, 1, 14)}
    | {k * 512 + d for k in range(1, 12) for d in (-1, 0, 1)}
    | {767, 768, 769, 1092, 1567, 1568, 1569, 2047, 2048, 2049, 3000, 4096, 5000, 7168, 8192, 12000, 20000}
)


def _image_grid() -> list[tuple[int, int]]:
    return [(w, h) for w, h in itertools.product(SIDES, SIDES) if max(w, h) <= 200 * min(w, h)]


def _counts(name: str, pairs: list[tuple[int, int]]) -> list[int]:
    return get_schedule(name).count_records([img(f"{w}x{h}", width=w, height=h) for w, h in pairs])


# ============================================================================================= images


def test_qwen_image_matches_the_port_on_every_size_of_the_grid() -> None:
    pairs = _image_grid()
    assert len(pairs) > 100_000
    want = [ref_qwen_image_tokens(w, h) for w, h in pairs]
    got = _counts("qwen2-vl-image", pairs)
    bad = [(p, g, x) for p, g, x in zip(pairs, got, want, strict=True) if g != x]
    assert not bad, bad[:10]


@settings(max_examples=3000)
@given(st.integers(1, 40_000), st.integers(1, 40_000))
def test_qwen_image_matches_the_port_on_random_sizes(w: int, h: int) -> None:
    if max(w, h) > 200 * min(w, h):
        with pytest.raises(ValueError):
            ref_smart_resize(h, w)
        with pytest.raises(InvalidInput, match="aspect ratio over 200"):
            get_schedule("qwen2-vl-image").count_records([img("wide", width=w, height=h)])
        return
    assert get_schedule("qwen2-vl-image").count_records([img(width=w, height=h)]) == [ref_qwen_image_tokens(w, h)]


def test_qwen_image_matches_transformers_smart_resize_where_both_sides_are_over_14() -> None:
    """transformers' own smart_resize (the processor's) agrees wherever no side rounds to 0 patches.

    At 14 px and below (round(14/28) is 0: a tie goes to the even multiple) qwen-vl-utils first
    lifts a side to 28 (``max(factor, round_by_factor(...))``) and transformers does not; we follow
    qwen-vl-utils, the path Qwen's model cards use, whose output the processor then leaves as it is
    (a multiple of 28 inside its pixel budget).
    """
    pil = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    pairs = [(w, h) for w, h in _image_grid() if min(w, h) > 14][::3]  # every count is checked against the port
    got = _counts("qwen2-vl-image", pairs)
    for (w, h), n in zip(pairs, got, strict=True):
        rh, rw = pil.smart_resize(h, w, factor=28, min_pixels=REF_MIN_PIXELS, max_pixels=REF_MAX_PIXELS)
        assert n == (rh // 28) * (rw // 28) + 2, (w, h)
    # the documented divergence below 14 px: 1000x10 is 36 + 2 through qwen-vl-utils, 20 + 2 through transformers
    rh, rw = pil.smart_resize(10, 1000, factor=28, min_pixels=REF_MIN_PIXELS, max_pixels=REF_MAX_PIXELS)
    assert (rh // 28) * (rw // 28) + 2 == 22
    assert _counts("qwen2-vl-image", [(1000, 10)]) == [38]


def test_qwen_image_known_sizes_and_parameters() -> None:
    assert _counts("qwen2-vl-image", [(1920, 1080), (28, 28), (1, 1), (448, 448)]) == [
        (1932 // 28) * (1092 // 28) + 2, 4 + 2, 4 + 2, 256 + 2]  # fmt: skip
    s = get_schedule("qwen2-vl-image")
    assert s.params == {"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056,
                        "max_ratio": 200, "vision_tokens": 2}  # fmt: skip
    # a tighter budget (as a processor configured with max_pixels=1280*28*28) is another version
    from dataclasses import replace

    small = replace(s, params={**s.params, "max_pixels": 1280 * 28 * 28})
    assert small.version != s.version
    assert small.count_records([img(width=4000, height=3000)]) == [ref_qwen_image_tokens(4000, 3000,
                                                                                          max_pixels=1280 * 784)]


def test_gpt4o_matches_the_guide_on_every_size_and_its_worked_examples() -> None:
    assert ref_gpt4o_tokens(1024, 1024) == 765 and ref_gpt4o_tokens(2048, 4096) == 1105  # the guide's examples
    assert ref_gpt4o_tokens(4096, 8192, "low") == 85
    pairs = _image_grid()
    got = _counts("gpt-4o-image", pairs)
    bad = [(p, g) for p, g in zip(pairs, got, strict=True) if g != ref_gpt4o_tokens(*p)]
    assert not bad, bad[:10]
    assert _counts("gpt-4o-image", [(1024, 1024), (2048, 4096), (512, 512)]) == [765, 1105, 255]
    assert set(_counts("gpt-4o-image-low", pairs[:500])) == {85}


@settings(max_examples=2000)
@given(st.integers(1, 50_000), st.integers(1, 50_000))
def test_gpt4o_matches_the_guide_on_random_sizes(w: int, h: int) -> None:
    assert _counts("gpt-4o-image", [(w, h)]) == [ref_gpt4o_tokens(w, h)]


def test_claude_matches_the_guide_on_every_size() -> None:
    pairs = _image_grid()
    got = _counts("claude-image", pairs)
    bad = [(p, g) for p, g in zip(pairs, got, strict=True) if g != ref_claude_tokens(*p)]
    assert not bad, bad[:10]
    # the guide's table: 200x200 ~54, 1000x1000 ~1334, 1092x1092 ~1590 (not resized); never over 1,600
    assert _counts("claude-image", [(200, 200), (1000, 1000), (1092, 1092)]) == [54, 1334, 1590]
    assert max(got) == 1600
    assert _counts("claude-image", [(3136, 1568)]) == _counts("claude-image", [(1568, 784)])  # long edge first


@settings(max_examples=2000)
@given(st.integers(1, 50_000), st.integers(1, 50_000))
def test_claude_matches_the_guide_on_random_sizes(w: int, h: int) -> None:
    assert _counts("claude-image", [(w, h)]) == [ref_claude_tokens(w, h)]


# ============================================================================================= video

FPS_VALUES = [1, 2, 5, 10, 12.5, 15, 23.976, 24, 25, 29.97, 30, 50, 59.94, 60, 120]
FRAME_COUNTS = sorted({*range(2, 60), 61, 89, 90, 91, 119, 120, 121, 299, 300, 301, 1000, 1537, 1538,
                       9000, 20_000, 46_080, 100_000})  # fmt: skip
VIDEO_SIDES = [14, 28, 100, 240, 320, 360, 426, 480, 640, 720, 854, 1080, 1280, 1920, 2160, 3840]


def test_qwen_video_matches_the_port_on_every_case() -> None:
    cases = [c for c in itertools.product(VIDEO_SIDES, VIDEO_SIDES, FRAME_COUNTS, FPS_VALUES)
             if max(c[0], c[1]) <= 200 * min(c[0], c[1])]  # fmt: skip
    assert len(cases) > 100_000
    recs = [vid(f"c{i}", width=w, height=h, frames=n, fps=f, duration_s=n / f) for i, (w, h, n, f) in enumerate(cases)]
    got = get_schedule("qwen2.5-vl-video").count_records(recs)
    bad = [(c, g) for c, g in zip(cases, got, strict=True) if g != ref_qwen_video_tokens(*c)]
    assert not bad, bad[:10]


@settings(max_examples=2000)
@given(st.integers(14, 4000), st.integers(14, 4000), st.integers(2, 200_000),
       st.sampled_from(FPS_VALUES) | st.floats(0.5, 240, allow_nan=False))  # fmt: skip
def test_qwen_video_matches_the_port_on_random_clips(w: int, h: int, frames: int, fps: float) -> None:
    assume(max(w, h) <= 200 * min(w, h))
    r = vid(width=w, height=h, frames=frames, fps=fps)
    assert get_schedule("qwen2.5-vl-video").count_records([r]) == [ref_qwen_video_tokens(w, h, frames, fps)]


def test_qwen_video_fps_as_a_fraction_too_short_clips_and_missing_frames() -> None:
    s = get_schedule("qwen2.5-vl-video")
    ntsc = vid(width=1280, height=720, frames=900, fps="30000/1001")
    assert s.count_records([ntsc]) == [ref_qwen_video_tokens(1280, 720, 900, 30000 / 1001)]
    with pytest.raises(InvalidInput, match="record v: the video has 1 frame"):
        s.count_records([vid(width=64, height=64, frames=1, fps=25)])
    with pytest.raises(ValueError):
        ref_smart_nframes(1, 25)
    # a container that does not say its frame count: frames = round(duration_s * fps)
    by_dur = s.count_records([vid(width=640, height=360, frames=0, fps=25, duration_s=12.0)])
    assert by_dur == [ref_qwen_video_tokens(640, 360, 300, 25)]
    with pytest.raises(InvalidInput, match=r"meta\.video\.fps is missing"):
        s.count_records([vid(width=640, height=360, frames=10)])


# ============================================================================================= audio

N16 = sorted({*range(0, 400), *range(479_000, 481_000, 37), 479_840, 479_999, 480_000, 480_001, 480_160,
              960_000, 960_159, 960_160, 960_161, 16000 * 31, 16000 * 3600 + 1})  # fmt: skip


def test_whisper_matches_the_port_for_every_length() -> None:
    got = get_schedule("whisper-audio").count_records([aud(f"n{n}", samples=n, sample_rate=16000) for n in N16])
    assert got == [ref_whisper_tokens(n) for n in N16]
    by_s = get_schedule("whisper-audio").count_records([aud(duration_s=d) for d in (0, 1, 29.99, 30, 30.01, 31, 60)])
    assert by_s == [0, 1500, 1500, 1500, 3000, 3000, 3000]  # a started window is a whole one (padded to 30 s)


def test_qwen2_audio_matches_the_port_and_transformers_for_every_length() -> None:
    s = get_schedule("qwen2-audio")
    got = s.count_records([aud(f"n{n}", samples=n, sample_rate=16000) for n in N16 if n < 2_000_000])
    assert got == [ref_qwen2_audio_tokens(n) for n in N16 if n < 2_000_000]
    assert s.count_records([aud(duration_s=30)]) == [750 + 2]


def test_qwen2_audio_against_the_installed_feature_extractor() -> None:
    """WhisperFeatureExtractor's own mask gives L; Qwen2AudioEncoder's own method gives the tokens."""
    np = pytest.importorskip("numpy")
    tf = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    fe = tf.WhisperFeatureExtractor()
    for n in [1, 159, 160, 161, 16_000, 16_001, 100_000, 479_999, 480_000]:
        feats = fe(np.zeros(n, dtype=np.float32), sampling_rate=16000, return_attention_mask=True,
                   padding="max_length")  # fmt: skip
        length = torch.tensor(int(feats["attention_mask"].sum()))
        _, out = Qwen2AudioEncoder._get_feat_extract_output_lengths(None, length)
        assert get_schedule("qwen2-audio").count_records([aud(samples=n, sample_rate=16000)]) == [int(out) + 2], n


def test_audio_resampled_lengths_and_bad_facts() -> None:
    w = get_schedule("whisper-audio")
    # 44.1 kHz: ceil(n * 16000 / 44100) samples at 16 kHz (librosa's resampled length)
    n = 44_100 * 30 + 1
    assert w.count_records([aud(samples=n, sample_rate=44_100)]) == [ref_whisper_tokens(-(-n * 16000 // 44_100))]
    assert w.count_records([aud(frames=n, sample_rate=44_100)]) == w.count_records([aud(samples=n, sample_rate=44_100)])
    with pytest.raises(InvalidInput, match=r"record a: meta\.audio\.duration_s is -1"):
        w.count_records([aud(duration_s=-1)])
    with pytest.raises(InvalidInput, match=r"meta\.audio\.sample_rate is 0"):
        w.count_records([aud(samples=10, sample_rate=0)])


# ============================================================================================= common


def test_declared_numbers_never_count_and_the_error_says_what_to_do() -> None:
    declared = {"id": "d1", "modality": "image", "meta": {"width": 4000, "height": 3000}}
    for name in ["qwen2-vl-image", "gpt-4o-image", "claude-image"]:
        with pytest.raises(InvalidInput, match=r"record d1: meta\.image is missing") as e:
            get_schedule(name).count_records([declared])
        assert "image-patch28-declared" in (e.value.hint or "")
    lying = img(width=100, height=100)
    lying["meta"].update(width=9999, height=9999)  # a declared value beside the probe is ignored
    assert _counts("qwen2-vl-image", [(100, 100)]) == get_schedule("qwen2-vl-image").count_records([lying])
    with pytest.raises(InvalidInput, match=r"record i: meta\.image\.width is 12\.5"):
        get_schedule("qwen2-vl-image").count_records([img(width=12.5, height=10)])
    with pytest.raises(InvalidInput, match=r"meta\.image\.height is missing"):
        get_schedule("claude-image").count_records([img(width=10)])


def test_other_modalities_count_zero_and_meta_from_a_shard_is_read() -> None:
    import json

    text = {"id": "t", "modality": "text", "text": "hello", "meta": {}}
    shard = img(width=56, height=56)
    shard["meta"] = json.dumps(shard["meta"])
    assert get_schedule("qwen2-vl-image").count_records([text, shard]) == [0, 4 + 2]
    assert get_schedule("whisper-audio").count_records([shard]) == [0]


def test_registry_versions_and_old_names() -> None:
    rows = {r["name"]: r for r in list_schedules()}
    media = ["qwen2-vl-image", "gpt-4o-image", "gpt-4o-image-low", "claude-image", "whisper-audio", "qwen2-audio",
             "qwen2.5-vl-video"]  # fmt: skip
    for name in media:
        assert rows[name]["modality"] == get_schedule(name).modality and rows[name]["description"]
    assert len({rows[n]["version"] for n in media}) == len(media)
    # old names resolve to the declared formulas with the versions listings were priced under
    old = {"image-patch28": "402ff4635f451c39", "audio-25hz": "68a8758052eb933c", "video-frames": "a822cea8668a126c"}
    for name, version in old.items():
        s = get_schedule(name)
        assert (s.name, s.version) == (name, version)
        assert rows[schedule_aliases()[name]]["version"] == version
        assert name not in rows
    assert get_schedule("image-patch28").count_records([{"id": "x", "meta": {"width": 56, "height": 28}}]) == [2]
