"""Decoding media for curation: the bytes of a record, its decoded content, and its perceptual hashes.

Curation judges what a buyer's loader will see, not the file: an exact duplicate is the same pixels
or PCM samples (a PNG and a lossless WebP of one picture are one picture), and a near duplicate is
within a Hamming distance of another record's perceptual hash:

- images: the DCT hash of :mod:`ciyuan.curate.phash`;
- video: that hash of a few frames taken at fixed shares of the clip (``keyframe_hashes``), so a
  re-encoded or resized copy yields frames at the same moments;
- audio: :func:`audio_hash`, the same DCT sign hash over a coarse log-mel spectrogram (32 time
  segments x 32 mel bands, floored 40 dB below its loudest cell): volume changes move only its DC
  term, re-encoding and resampling barely move the band energies, different sounds differ in
  about half the bits.

A record carries its bytes in ``media`` or, for a big object, a ``media_ref`` ("sha256:<hex>")
into the blob store; :func:`open_media` opens either and says why when it cannot.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import BinaryIO

import numpy as np

from ciyuan.curate.phash import hash_pixels, phash

AUDIO_HASH_SEGMENTS = 32  # time segments of the audio hash's spectrogram
AUDIO_HASH_BANDS = 32  # mel bands
AUDIO_FLOOR_DB = 40.0  # band energies are floored this far below the loudest
_FRAMES_PER_SEGMENT = 8  # FFT frames averaged per segment (bounded work for long clips)


class NoMedia(Exception):
    """A record whose media cannot be had or decoded; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


Media = bytes | BinaryIO  # what the decoders take: the bytes, or a seekable file (a blob, read lazily)


def _file(src: Media):
    """A seekable file at its start for ``src`` (each decoder attempt reads from the beginning)."""
    if isinstance(src, bytes | bytearray | memoryview):
        return io.BytesIO(src)
    src.seek(0)
    return src


@contextmanager
def open_media(record: dict) -> Iterator[Media]:
    """The record's media: its inline ``media`` bytes, else the blob its ``media_ref`` names, opened
    as a file so a 2 GB video is decoded from storage, never loaded whole."""
    data = record.get("media")
    if data:
        yield bytes(data)
        return
    ref = record.get("media_ref")
    rid = record.get("id")
    if not ref:
        raise NoMedia("no_media", f"record {rid}: no media bytes and no media_ref")
    try:
        from ciyuan.store import blobs  # the content-addressed store of large media objects
    except ImportError:
        why = f"record {rid}: media_ref {ref} needs ciyuan.store.blobs, not installed"
        raise NoMedia("blob_unavailable", why) from None
    store, digest_of = getattr(blobs, "BlobStore", None), getattr(blobs, "digest_of", None)
    if store is None or digest_of is None:
        raise NoMedia("blob_unavailable", f"record {rid}: ciyuan.store.blobs has no BlobStore to read {ref}")
    try:
        fh = store().open(digest_of(ref))
    except Exception as exc:  # a missing or misnamed blob is a reason, not a crash
        raise NoMedia("blob_unreadable", f"record {rid}: blob {ref}: {exc}") from None
    with fh:
        yield fh


def media_bytes(record: dict) -> bytes:
    """The record's media bytes, read whole (for callers that need them in memory)."""
    with open_media(record) as src:
        return src if isinstance(src, bytes) else src.read()


# decoded content ---------------------------------------------------------------------------------


def _digest(h) -> int:
    return int.from_bytes(h.digest(), "big")


def image_content_key(data: Media) -> int:
    """64-bit hash of the displayed pixels: size, a lossless common mode, raw pixels, frame count.

    Palette, grey and RGB pictures of the same colours hash alike (each is converted to RGB, or RGBA
    when it has transparency); 16-bit and float modes are hashed as they are.
    """
    from PIL import Image, ImageOps

    with Image.open(_file(data)) as im:
        frames = getattr(im, "n_frames", 1)
        shown = ImageOps.exif_transpose(im)
        has_alpha = "A" in shown.mode or "transparency" in shown.info
        if shown.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            px = shown
        else:
            px = shown.convert("RGBA" if has_alpha else "RGB")
        h = hashlib.blake2b(digest_size=8)
        h.update(f"image:{px.mode}:{px.size[0]}x{px.size[1]}:{frames}:".encode())
        h.update(px.tobytes())
        return _digest(h)


def decode_audio(data: Media, dtype: str = "float32") -> tuple[np.ndarray, int]:
    """``(samples[frames, channels], sample_rate)`` by soundfile, or PyAV for what it cannot read."""
    import soundfile as sf

    try:
        x, sr = sf.read(_file(data), dtype=dtype, always_2d=True)
        return x, int(sr)
    except Exception:  # noqa: BLE001 - not a libsndfile format (AAC, Opus in MP4...): try PyAV
        pass
    import av

    try:
        with av.open(_file(data)) as c:
            if not c.streams.audio:
                raise NoMedia("no_audio_stream", "no audio stream")
            st = c.streams.audio[0]
            chunks = []
            sr = st.rate
            for frame in c.decode(st):
                arr = frame.to_ndarray()
                arr = arr.T if frame.format.is_planar else arr.reshape(-1, len(frame.layout.channels))
                chunks.append(arr)
    except NoMedia:
        raise
    except Exception as exc:
        raise NoMedia("undecodable", f"audio does not decode: {exc}") from None
    if not chunks:
        raise NoMedia("undecodable", "audio decodes to no samples")
    x = np.concatenate(chunks)
    if x.dtype.kind in "iu":
        x = x.astype(np.float64) / float(np.iinfo(x.dtype).max)
    return x.astype(dtype if dtype.startswith("float") else np.float32), int(sr)


def audio_content_key(data: Media) -> int:
    """64-bit hash of the PCM samples and their rate: a WAV and a FLAC of the same samples agree.

    Read as 32-bit integers, which hold 8-, 16- and 24-bit PCM exactly.
    """
    import soundfile as sf

    h = hashlib.blake2b(digest_size=8)
    try:
        x, sr = sf.read(_file(data), dtype="int32", always_2d=True)
        h.update(f"audio:{sr}:{x.shape[1]}:".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    except Exception:  # noqa: BLE001 - a format soundfile cannot read: decoded floats through PyAV
        x, sr = decode_audio(data)
        h.update(f"audio-f:{sr}:{x.shape[1]}:".encode())
        h.update(np.ascontiguousarray((x * 2**23).round().astype(np.int32)).tobytes())
    return _digest(h)


def video_content_key(data: Media) -> int:
    """64-bit hash of every decoded frame's pixels (RGB) in order, streamed frame by frame."""
    import av

    h = hashlib.blake2b(digest_size=8)
    try:
        with av.open(_file(data)) as c:
            if not c.streams.video:
                raise NoMedia("no_video_stream", "no video stream")
            st = c.streams.video[0]
            n = 0
            for frame in c.decode(st):
                arr = frame.to_ndarray(format="rgb24")
                h.update(f"{arr.shape}".encode())
                h.update(arr.tobytes())
                n += 1
    except NoMedia:
        raise
    except Exception as exc:
        raise NoMedia("undecodable", f"video does not decode: {exc}") from None
    if not n:
        raise NoMedia("undecodable", "video decodes to no frames")
    h.update(f"video:{n}".encode())
    return _digest(h)


def content_key(modality: str, data: Media) -> int:
    """The decoded-content key of media bytes of ``modality``."""
    try:
        if modality == "image":
            return image_content_key(data)
        if modality == "audio":
            return audio_content_key(data)
        if modality == "video":
            return video_content_key(data)
    except NoMedia:
        raise
    except Exception as exc:
        raise NoMedia("undecodable", f"{modality} does not decode: {exc}") from None
    raise NoMedia("unsupported", f"no decoded-content key for modality {modality!r}")


# perceptual hashes -------------------------------------------------------------------------------


def image_hash(data: Media) -> int:
    try:
        return phash(data if isinstance(data, bytes) else _file(data))
    except Exception as exc:
        raise NoMedia("undecodable", f"image does not decode: {exc}") from None


def keyframe_hashes(data: Media, frames: int = 4) -> list[int]:
    """Perceptual hashes of ``frames`` frames at the middles of equal shares of the clip.

    Seeks to each moment (a long clip is not decoded whole) and hashes the first frame at or after
    it; a clip too short for a seek yields its frames decoded in order instead.
    """
    import av

    try:
        with av.open(_file(data)) as c:
            if not c.streams.video:
                raise NoMedia("no_video_stream", "no video stream")
            st = c.streams.video[0]
            tb = float(st.time_base) if st.time_base else None
            dur = None
            if st.duration and tb:
                dur = st.duration * tb
            elif c.duration:
                dur = c.duration / 1_000_000
            if not dur or not tb:
                every = [f.to_image() for f in c.decode(st)]
                return _spread(every, frames)
            start = float(st.start_time or 0) * tb
            out: list[int] = []
            for k in range(frames):
                t = start + dur * (k + 0.5) / frames
                c.seek(int(t / tb), stream=st, backward=True, any_frame=False)
                picked = None
                for f in c.decode(st):
                    picked = f
                    if f.time is not None and f.time + 1e-6 >= t:
                        break
                if picked is None:
                    raise NoMedia("undecodable", f"no frame at {t:.2f} s")
                out.append(phash(picked.to_image()))
            return out
    except NoMedia:
        raise
    except Exception as exc:
        raise NoMedia("undecodable", f"video does not decode: {exc}") from None


def _spread(images: list, frames: int) -> list[int]:
    if not images:
        raise NoMedia("undecodable", "video decodes to no frames")
    idx = [min(len(images) - 1, int(len(images) * (k + 0.5) / frames)) for k in range(frames)]
    return [phash(images[i]) for i in idx]


@cache
def _mel_bank(sr: int, n_fft: int, bands: int) -> np.ndarray:
    """Triangular mel filters (``bands`` x ``n_fft // 2 + 1``) from 50 Hz to min(8 kHz, Nyquist)."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(50.0), mel(min(8000.0, sr / 2)), bands + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    bank = np.zeros((bands, len(freqs)))
    for b in range(bands):
        lo, mid, hi = edges[b : b + 3]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        bank[b] = np.clip(np.minimum(up, down), 0, None)
    return bank


def log_mel_segments(x: np.ndarray, sr: int) -> np.ndarray:
    """A ``AUDIO_HASH_SEGMENTS`` x ``AUDIO_HASH_BANDS`` log-mel energy matrix of mono samples ``x``.

    FFT frames of about 32 ms (a power of two at this rate); each time segment averages up to
    ``_FRAMES_PER_SEGMENT`` of its frames, evenly spaced.
    """
    n_fft = 1 << max(6, int(np.ceil(np.log2(0.032 * sr))))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    window = np.hanning(n_fft)
    bank = _mel_bank(sr, n_fft, AUDIO_HASH_BANDS)
    bounds = np.linspace(0, len(x) - n_fft, AUDIO_HASH_SEGMENTS + 1)
    out = np.empty((AUDIO_HASH_SEGMENTS, AUDIO_HASH_BANDS))
    for s in range(AUDIO_HASH_SEGMENTS):
        lo, hi = bounds[s], max(bounds[s + 1], bounds[s])
        starts = np.unique(np.linspace(lo, hi, _FRAMES_PER_SEGMENT).astype(np.int64))
        frames = np.stack([x[i : i + n_fft] for i in starts]) * window
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
        out[s] = np.log10(bank @ power + 1e-10)
    return out


def audio_hash(data: Media) -> int:
    """The 64-bit acoustic fingerprint of audio bytes (see the module docstring)."""
    try:
        x, sr = decode_audio(data)
    except NoMedia:
        raise
    except Exception as exc:
        raise NoMedia("undecodable", f"audio does not decode: {exc}") from None
    if not len(x):
        raise NoMedia("undecodable", "audio decodes to no samples")
    energy = log_mel_segments(x.mean(axis=1), sr)
    # 40 dB below the loudest cell is silence alike: a lossy codec that strips the noise floor (Vorbis)
    # otherwise moves a dozen bits of a copy's hash
    return hash_pixels(np.maximum(energy, energy.max() - AUDIO_FLOOR_DB / 10))
