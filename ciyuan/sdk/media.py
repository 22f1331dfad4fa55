"""Decoding delivered media on request: PIL images, numpy arrays or torch tensors.

The exchange delivers a media record's bytes as they were ingested (``media``; base64 in NDJSON, a
binary column in Arrow) with the probed facts in ``meta``; decoding is the buyer's choice, so it
happens in the SDK and only when asked (``decode=`` on :meth:`Batch.records`,
:meth:`Client.stream` and :class:`TokenStream`). A decoded record gains:

=========  ==========================================  ============================================
modality   ``decoded``                                 also
=========  ==========================================  ============================================
image      ``pil``: ``PIL.Image`` (RGB or RGBA, EXIF    --
           orientation applied); ``numpy``: uint8
           ``(H, W, C)``; ``torch``: uint8 ``(C, H, W)``
audio      ``pil``/``numpy``: float32 ``(samples,)``    ``sample_rate`` (Hz)
           mono or ``(samples, channels)``; ``torch``:
           float32 ``(channels, samples)``
video      ``pil``: list of ``PIL.Image``; ``numpy``:   ``fps``
           uint8 ``(T, H, W, 3)``; ``torch``: uint8
           ``(T, 3, H, W)``
=========  ==========================================  ============================================

Text records are returned unchanged. Pillow decodes images, soundfile audio (PyAV for what
libsndfile cannot read, e.g. AAC in MP4), PyAV video; each is imported only when first needed.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Mapping
from typing import Any

from ciyuan.errors import InvalidInput

DECODERS = ("pil", "numpy", "torch")
MAX_VIDEO_FRAMES = 10_000  # a guard against decoding an hour of video into memory by accident


def check_decode(how: str | None) -> str | None:
    """``how`` if it is a decoder name (or None), else a clear error listing them."""
    if how is not None and how not in DECODERS:
        raise InvalidInput(f"decode={how!r} is not a decoder", hint=f"use one of {', '.join(DECODERS)} or None")
    if how == "torch" and importlib.util.find_spec("torch") is None:  # say so before anything is streamed
        raise InvalidInput("decode='torch' needs PyTorch, which is not installed here",
                           hint="pip install torch, or use decode='numpy'")
    return how


def _bytes(rec: Mapping[str, Any]) -> bytes:
    data = rec.get("media")
    if isinstance(data, str):  # an NDJSON record not yet turned back into bytes
        import base64

        data = base64.b64decode(data)
    if not data:
        ref = rec.get("media_ref") or ""
        raise InvalidInput(
            f"record {rec.get('id')!r} ({rec.get('modality')}) has no media bytes to decode"
            + (f": it refers to {ref}" if ref else ""),
            hint="its bytes are a blob: keep resolve_media=True (the default) so the SDK fetches them, "
                 "or fetch them with Client.media(entitlement_id, media_ref)",
            code="no_media_bytes",
        )
    return bytes(data)


def decode_image(data: bytes, how: str = "pil") -> Any:
    """An image's bytes as a PIL image, a uint8 HWC array, or a uint8 CHW tensor."""
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)  # the picture as it is shown, as the probe's display size
    if im.mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    im.load()
    if how == "pil":
        return im
    import numpy as np

    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if how == "numpy":
        return arr
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def decode_audio(data: bytes, how: str = "numpy") -> tuple[Any, int]:
    """An audio file's samples as float32 in [-1, 1] and its sample rate."""
    import numpy as np

    try:
        import soundfile as sf

        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception:  # noqa: BLE001 - libsndfile cannot read this format: PyAV can
        samples, rate = _audio_av(data)
    samples = np.asarray(samples, dtype=np.float32)
    if how == "torch":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(samples))
        return (t[None, :] if t.ndim == 1 else t.T.contiguous()), int(rate)
    return samples, int(rate)


def _audio_av(data: bytes) -> tuple[Any, int]:
    """Samples by PyAV, resampled to planar float32 so every codec comes out the same shape."""
    import av
    import numpy as np

    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        rate = int(stream.rate or 0)
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate or None)
        chunks = [f.to_ndarray() for frame in c.decode(stream) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    if not chunks:
        return np.zeros(0, np.float32), rate
    arr = np.concatenate(chunks, axis=1).astype(np.float32).T  # (samples, channels)
    return (arr[:, 0] if arr.shape[1] == 1 else arr), rate


def decode_video(data: bytes, how: str = "numpy", max_frames: int = MAX_VIDEO_FRAMES) -> tuple[Any, float]:
    """A video's frames (RGB) and its frame rate; at most ``max_frames`` frames."""
    import av
    import numpy as np

    frames = []
    with av.open(io.BytesIO(data)) as c:
        if not c.streams.video:
            raise InvalidInput("the video has no video stream", hint="decode it as audio", code="no_video_stream")
        stream = c.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        for frame in c.decode(stream):
            frames.append(frame.to_image() if how == "pil" else frame.to_ndarray(format="rgb24"))
            if len(frames) >= max_frames:
                break
    if how == "pil":
        return frames, fps
    arr = np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    if how == "numpy":
        return arr, fps
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))), fps


def decode_record(rec: dict, how: str | None) -> dict:
    """``rec`` with ``decoded`` (and ``sample_rate`` / ``fps``) added for media; unchanged for text."""
    if how is None:
        return rec
    modality = rec.get("modality")
    if modality not in ("image", "audio", "video"):
        return rec
    data = _bytes(rec)
    try:
        if modality == "image":
            return rec | {"decoded": decode_image(data, how)}
        if modality == "audio":
            samples, rate = decode_audio(data, how)
            return rec | {"decoded": samples, "sample_rate": rate}
        frames, fps = decode_video(data, how)
        return rec | {"decoded": frames, "fps": fps}
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - name the record rather than the decoder's internals
        raise InvalidInput(f"record {rec.get('id')!r}: its {modality} bytes do not decode ({exc})",
                           hint="report the record id to the provider; decode=None gives the raw bytes",
                           code="undecodable_media") from exc
