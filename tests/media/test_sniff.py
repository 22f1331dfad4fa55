"""sniff: every format from its bytes, made by the tools that write it; names never consulted."""

from __future__ import annotations

import os

import pytest
from media_gen import audio_bytes, image_bytes, video_bytes

from ciyuan.ingest.probe import format_of_name, sniff


@pytest.mark.parametrize(("pil", "fmt"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"),
                                          ("TIFF", "tiff"), ("BMP", "bmp")])
def test_images(pil, fmt):
    assert sniff(image_bytes(pil)[:64]) == ("image", fmt)


@pytest.mark.parametrize(("fmt", "subtype", "expect"), [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"),
                                                        ("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "ogg"),
                                                        ("MP3", "MPEG_LAYER_III", "mp3")])
def test_audio(fmt, subtype, expect):
    rate = 48000 if subtype == "OPUS" else 16000
    assert sniff(audio_bytes(fmt, subtype, rate=rate)[:4096]) == ("audio", expect)


def test_mp3_behind_an_id3_tag_and_bare_frames():
    mp3 = audio_bytes("MP3", "MPEG_LAYER_III")
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10  # a 10-byte ID3v2.4 tag body
    assert sniff(tag + mp3) == ("audio", "mp3")
    assert mp3[:1] == b"\xff" and sniff(mp3) == ("audio", "mp3")  # MPEG-2 frames, no tag
    mpeg1 = audio_bytes("MP3", "MPEG_LAYER_III", rate=44100)
    assert mpeg1[:2] == b"\xff\xfb" and sniff(mpeg1) == ("audio", "mp3")
    assert sniff(tag + b"fLaC" + b"\x00" * 40) == ("audio", "flac")  # an ID3 tag in front of a FLAC stream


@pytest.mark.parametrize(("fmt", "codec", "expect"), [("mp4", "libx264", "mp4"), ("mov", "libx264", "mov"),
                                                      ("webm", "libvpx-vp9", "webm"), ("matroska", "libx264", "mkv")])
def test_video(fmt, codec, expect):
    assert sniff(video_bytes(fmt, codec, frames=3)[:4096]) == ("video", expect)


def test_not_media():
    assert sniff(b"") is None
    assert sniff(b'{"text": "hello"}\n') is None
    assert sniff("维护日志: 齿轮箱".encode()) is None
    assert sniff(b"%PDF-1.7\n") is None
    # a single MPEG sync word in random bytes is not enough: the next frame must be where it says
    assert sniff(b"\xff\xfb\x90\x00" + b"\x01" * 2000) is None
    rng = __import__("random").Random(7)
    hits = [sniff(os.urandom(0) + bytes(rng.getrandbits(8) for _ in range(512))) for _ in range(300)]
    assert sum(h is not None for h in hits) <= 3


def test_names_are_only_compared():
    assert format_of_name("cat.JPG") == "jpeg" and format_of_name("clip.m4v") == "mp4"
    assert format_of_name("notes.txt") is None and format_of_name(".png") is None
    png = image_bytes("PNG")
    assert sniff(png) == ("image", "png")  # whatever the file is called
