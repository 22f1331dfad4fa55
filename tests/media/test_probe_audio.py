"""Audio probe: durations from the decoded samples, zero-length and truncated files refused.
Every file is written here by soundfile."""

from __future__ import annotations

import struct

import pytest
from media_gen import audio_bytes, image_bytes

from ciyuan.ingest.probe import Limits, MediaError, compare_declared, probe, probe_audio

LIMITS = Limits()
CASES = [("WAV", "PCM_16", 16000, "wav", "pcm_16"), ("FLAC", "PCM_16", 16000, "flac", "pcm_16"),
         ("OGG", "VORBIS", 16000, "ogg", "vorbis"), ("OGG", "OPUS", 48000, "ogg", "opus"),
         ("MP3", "MPEG_LAYER_III", 16000, "mp3", "mp3float")]


@pytest.mark.parametrize(("fmt", "subtype", "rate", "name", "codec"), CASES)
def test_facts(fmt, subtype, rate, name, codec):
    data = audio_bytes(fmt, subtype, seconds=1.5, rate=rate, channels=2)
    modality, facts = probe(data, name=f"a.{name}", limits=LIMITS)
    assert modality == "audio" and facts["format"] == name and facts["codec"] == codec
    assert facts["sample_rate"] == rate and facts["channels"] == 2
    assert facts["frames"] == int(1.5 * rate) and facts["duration_s"] == pytest.approx(1.5)
    assert facts["bytes"] == len(data)


def _wav_with_data_size(data: bytes, size: int) -> bytes:
    i = data.find(b"data")
    return data[: i + 4] + struct.pack("<I", size) + data[i + 8 :]


def test_duration_comes_from_the_samples_not_the_header():
    data = audio_bytes("WAV", "PCM_16", seconds=2.0)
    streamed = _wav_with_data_size(data, 0xFFFFFFFF)  # "length unknown", as a live recorder writes it
    facts = probe_audio(streamed, name="live.wav", limits=LIMITS)
    assert facts["duration_s"] == pytest.approx(2.0) and facts["frames"] == 32000


def test_header_claiming_more_than_the_file_is_truncated():
    data = audio_bytes("WAV", "PCM_16", seconds=2.0)
    with pytest.raises(MediaError) as err:
        probe_audio(_wav_with_data_size(data, 64000 * 10), name="long.wav", limits=LIMITS)
    assert err.value.reason == "truncated" and "320,000 frames" in err.value.message


@pytest.mark.parametrize(("fmt", "subtype", "rate", "name", "codec"), CASES)
def test_truncated(fmt, subtype, rate, name, codec):
    data = audio_bytes(fmt, subtype, seconds=3.0, rate=rate)
    with pytest.raises(MediaError) as err:
        probe_audio(data[: len(data) // 2], name=f"cut.{name}", limits=LIMITS)
    # FLAC's decoder loses sync at the cut: it cannot tell a cut from damage
    assert err.value.reason == ("corrupt" if name == "flac" else "truncated"), err.value.message
    assert f"cut.{name}" in err.value.message


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("OGG", "VORBIS")])
def test_zero_length_audio_is_an_error(fmt, subtype):
    data = audio_bytes(fmt, subtype, seconds=0.0)
    assert data  # a valid header, no samples
    with pytest.raises(MediaError) as err:
        probe_audio(data, name="silence.wav", limits=LIMITS)
    assert err.value.reason == "empty_audio" and "silence.wav" in err.value.message


def test_zero_byte_file_is_no_media():
    assert audio_bytes("FLAC", "PCM_16", seconds=0.0) == b""  # libsndfile writes nothing for no samples
    with pytest.raises(MediaError) as err:
        probe_audio(b"", name="empty.flac", limits=LIMITS)
    assert err.value.reason == "not_media" and "empty (0 bytes)" in err.value.message


def test_absurd_duration_refused_before_decoding():
    data = audio_bytes("WAV", "PCM_16", seconds=3.0)
    with pytest.raises(MediaError) as err:
        probe_audio(data, name="long.wav", limits=Limits(max_duration_s=2))
    assert err.value.reason == "absurd_duration"


def test_absurd_channel_count():
    data = bytearray(audio_bytes("WAV", "PCM_16", seconds=0.5))
    i = data.find(b"fmt ")
    struct.pack_into("<H", data, i + 10, 0)  # channels = 0
    with pytest.raises(MediaError) as err:
        probe_audio(bytes(data), name="odd.wav", limits=LIMITS)
    assert err.value.reason in ("absurd_dimension", "corrupt")


def test_not_audio():
    with pytest.raises(MediaError) as err:
        probe_audio(image_bytes("PNG"), name="song.mp3", limits=LIMITS)
    assert err.value.reason == "wrong_modality"
    with pytest.raises(MediaError) as err:
        probe_audio(b"RIFF\x00\x00\x00\x00TEXTnot audio", name="song.wav", limits=LIMITS)
    assert err.value.reason == "not_media"


def test_flac_named_wav_is_read_as_flac_and_mismatch_recorded():
    data = audio_bytes("FLAC", "PCM_16", seconds=1.0)
    modality, facts = probe(data, name="take1.wav", limits=LIMITS)
    assert facts["format"] == "flac"
    mism = compare_declared({"duration_s": 10, "sample_rate": 16000}, {"audio": facts}, name="take1.wav")
    assert {m["field"] for m in mism} == {"extension", "duration_s"}
