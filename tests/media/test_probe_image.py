"""Image probe: facts from headers, bombs refused before decoding, truncation and corruption found,
lying names read by their bytes. Every file is made here with Pillow."""

from __future__ import annotations

import io
import tarfile

import pytest
from media_gen import image_bytes, picture, png_header_only
from PIL import Image

from ciyuan.ingest.probe import Limits, MediaError, compare_declared, probe, probe_image

LIMITS = Limits()
FORMATS = [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"), ("TIFF", "tiff"), ("BMP", "bmp")]


@pytest.mark.parametrize(("pil", "fmt"), FORMATS)
@pytest.mark.parametrize("check", ["structure", "decode"])
def test_facts(pil, fmt, check):
    data = image_bytes(pil, (96, 64))
    facts = probe_image(data, name=f"x.{fmt}", limits=LIMITS, check=check)
    assert facts["format"] == fmt and (facts["width"], facts["height"]) == (96, 64)
    assert facts["orientation"] == 1 and (facts["display_width"], facts["display_height"]) == (96, 64)
    assert facts["frames"] == 1 and facts["bytes"] == len(data)
    assert facts["mode"] == ("P" if fmt == "gif" else "RGB")


@pytest.mark.parametrize("pil", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_turns_the_displayed_size(pil):
    facts = probe_image(image_bytes(pil, (96, 64), orientation=6), name="p", limits=LIMITS)
    assert facts["orientation"] == 6
    assert (facts["width"], facts["height"]) == (96, 64)  # as stored
    assert (facts["display_width"], facts["display_height"]) == (64, 96)  # as shown
    assert probe_image(image_bytes(pil, orientation=3), name="p", limits=LIMITS)["display_width"] == 96


def test_gif_frames_counted_first_frame_is_the_image():
    data = image_bytes("GIF", (40, 30), frames=4)
    facts = probe_image(data, name="anim.gif", limits=LIMITS, check="decode")
    assert facts["frames"] == 4 and (facts["width"], facts["height"]) == (40, 30)


def test_bomb_refused_from_the_header_pillow_floor():
    bomb = png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    for check in ("structure", "decode"):
        with pytest.raises(MediaError) as err:
            probe_image(bomb, name="bomb.png", limits=LIMITS, check=check)
        assert err.value.reason == "bomb" and "bomb.png" in err.value.message


def test_bomb_refused_by_our_limit_below_pillows():
    # 10,000 x 10,000 = 100 MP: Pillow only warns (its error is at 179 MP); media_max_pixels (80 MP) refuses
    bomb = png_header_only(10_000, 10_000)
    with pytest.raises(MediaError) as err:
        probe_image(bomb, name="big.png", limits=LIMITS, check="decode")
    assert err.value.reason == "bomb" and "media_max_pixels" in err.value.message
    assert "100,000,000 pixels" in err.value.message


def test_limit_comes_from_settings(home, monkeypatch):
    from ciyuan.config import settings

    monkeypatch.setenv("CIYUAN_MEDIA_MAX_PIXELS", "5000")
    settings.cache_clear()
    data = image_bytes("PNG", (96, 64))  # 6,144 pixels
    with pytest.raises(MediaError) as err:
        probe_image(data, name="a.png")
    assert err.value.reason == "bomb" and "5,000" in err.value.message
    monkeypatch.setenv("CIYUAN_MEDIA_MAX_PIXELS", "7000")
    settings.cache_clear()
    assert probe_image(data, name="a.png")["width"] == 96


@pytest.mark.parametrize(("pil", "fmt"), FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.9, -1])
def test_truncated(pil, fmt, keep):
    data = image_bytes(pil, (96, 64))
    cut = data[: int(len(data) * keep)] if keep > 0 else data[:-1]
    with pytest.raises(MediaError) as err:
        probe_image(cut, name=f"cut.{fmt}", limits=LIMITS)
    assert err.value.reason == "truncated", err.value.message
    assert err.value.file == f"cut.{fmt}"


def test_corrupt_data_found_by_decode_only():
    im = picture(3, (128, 96))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    idat = data.find(b"IDAT")
    for i in range(idat + 40, idat + 80):
        data[i] ^= 0x5A  # scramble compressed pixels; the file still ends with IEND
    probe_image(bytes(data), name="bad.png", limits=LIMITS)  # the structure is intact
    with pytest.raises(MediaError) as err:
        probe_image(bytes(data), name="bad.png", limits=LIMITS, check="decode")
    assert err.value.reason in ("corrupt", "truncated") and "bad.png" in err.value.message


def test_lying_extension_read_by_its_bytes(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes("JPEG", (50, 40)))  # a JPEG named .png
    modality, facts = probe(path, limits=LIMITS)
    assert (modality, facts["format"], facts["width"]) == ("image", "jpeg", 50)
    assert compare_declared({}, facts, name=path.name) == [{"field": "extension", "declared": "png",
                                                            "probed": "jpeg"}]


def test_named_as_media_but_no_media(tmp_path):
    path = tmp_path / "cat.jpg"
    path.write_text("this is not a picture of a cat\n")
    with pytest.raises(MediaError) as err:
        probe_image(path, limits=LIMITS)
    assert err.value.reason == "not_media" and str(path) in err.value.message
    with pytest.raises(MediaError) as err:
        probe_image(b"", name="empty.jpg", limits=LIMITS)
    assert err.value.reason == "not_media"


def test_other_modality_is_refused_by_the_image_probe():
    from media_gen import audio_bytes

    with pytest.raises(MediaError) as err:
        probe_image(audio_bytes("WAV", "PCM_16"), name="x.png", limits=LIMITS)
    assert err.value.reason == "wrong_modality" and "wav" in err.value.message


def test_tar_member_named_and_read_in_place(tmp_path):
    good, bad = image_bytes("PNG", (30, 20)), image_bytes("JPEG")[:200]
    tar_path = tmp_path / "shard-000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for member, data in (("k1.png", good), ("k2.jpg", bad)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tar_path) as tar:
        assert probe_image(tar.extractfile("k1.png"), name=tar_path.name, member="k1.png", limits=LIMITS)["width"] == 30
        with pytest.raises(MediaError) as err:
            probe_image(tar.extractfile("k2.jpg"), name=tar_path.name, member="k2.jpg", limits=LIMITS)
    assert err.value.member == "k2.jpg" and "shard-000.tar (member k2.jpg)" in err.value.message


def test_zero_sized_header_is_absurd():
    with pytest.raises(MediaError) as err:
        probe_image(png_header_only(0, 10), name="zero.png", limits=LIMITS)
    assert err.value.reason in ("absurd_dimension", "corrupt")


def test_pillow_global_limit_untouched():
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(MediaError):
        probe_image(png_header_only(10_000, 10_000), name="b.png", limits=LIMITS)
    assert before == Image.MAX_IMAGE_PIXELS
