"""Perceptual hash and near-duplicate index: the index equals all-pairs comparison exactly, and
the hash finds resized, recompressed and lightly cropped copies of generated pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_gen import encode, near_copies, picture
from PIL import Image

from ciyuan.curate.phash import HammingIndex, all_pairs, choose_layout, hamming, phash

U64 = st.integers(0, 2**64 - 1)


def _clustered(draw) -> list[int]:
    centres = draw(st.lists(U64, min_size=1, max_size=12))
    out = []
    for c in centres:
        for _ in range(draw(st.integers(1, 12))):
            flips = draw(st.lists(st.integers(0, 63), max_size=14))
            h = c
            for b in flips:
                h ^= 1 << b
            out.append(h)
    return out


@st.composite
def hash_sets(draw) -> list[int]:
    kind = draw(st.sampled_from(["random", "clustered", "mixed"]))
    if kind == "random":
        return draw(st.lists(U64, max_size=300))
    if kind == "clustered":
        return _clustered(draw)
    return _clustered(draw) + draw(st.lists(U64, max_size=100))


@settings(max_examples=300)
@given(hash_sets(), st.integers(0, 24))
def test_index_equals_all_pairs(hashes, k):
    idx = HammingIndex(k)
    idx.add(hashes)
    got = idx.pairs()
    want = all_pairs(hashes, k)
    assert np.array_equal(got, want)
    for i, j, d in got[:50]:
        assert hamming(hashes[i], hashes[j]) == d <= k


@settings(max_examples=100)
@given(hash_sets(), hash_sets(), st.integers(0, 16))
def test_query_equals_brute_force(stored, queries, k):
    idx = HammingIndex(k)
    idx.add(stored[: len(stored) // 2])
    idx.add(stored[len(stored) // 2 :])  # added in two parts: ids keep their order
    got = {tuple(r) for r in idx.query(queries).tolist()}
    want = {(qi, j, hamming(q, h)) for qi, q in enumerate(queries) for j, h in enumerate(stored)
            if hamming(q, h) <= k}
    assert got == want


def test_index_at_scale_equals_all_pairs_with_planted_clusters():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**64 - 1, 6000, dtype=np.uint64, endpoint=True)
    copies = base[:600].copy()
    for _ in range(5):
        copies ^= np.uint64(1) << rng.integers(0, 64, 600).astype(np.uint64)
    h = np.concatenate([base, copies])
    for k in (0, 4, 8, 10):
        idx = HammingIndex(k)
        idx.add(h)
        assert choose_layout(k, len(h)) is not None  # the index, not the fallback, answers
        assert np.array_equal(idx.pairs(), all_pairs(h, k))


def test_hash_is_64_bits_and_stable():
    im = picture(1)
    h = phash(im)
    assert 0 <= h < 2**64 and h == phash(im) == phash(encode(im, "PNG"))
    assert bin(h).count("1") == 32  # median split of 64 coefficients: half the bits set


def test_orientation_tagged_copy_hashes_as_displayed():
    im = picture(2)
    turned = im.transpose(Image.Transpose.ROTATE_90)  # pixels stored turned a quarter...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged to be shown turned back
    tagged = Image.open(io.BytesIO(encode(turned, "PNG", exif=exif.tobytes())))
    assert hamming(phash(tagged), phash(im)) <= 2
    assert hamming(phash(turned), phash(im)) > 10


@pytest.mark.slow
def test_recall_and_precision_on_near_copies():
    """200 pictures and 4 copies each (resized, JPEG, cropped 1-3 % a side, resized+JPEG): every
    pair inside a family is a true duplicate, every pair across families a false one."""
    hashes, family = [], []
    for seed in range(200):
        im = picture(seed)
        hashes.append(phash(im))
        family.append(seed)
        for _, copy in near_copies(im, seed):
            hashes.append(phash(encode(copy, "PNG")))
            family.append(seed)
    fam = np.array(family)
    idx = HammingIndex(8)
    idx.add(hashes)
    found = idx.pairs()
    correct = fam[found[:, 0]] == fam[found[:, 1]]
    true_pairs = 200 * 10  # C(5, 2) per family
    recall = correct.sum() / true_pairs
    precision = correct.sum() / max(len(found), 1)
    assert recall >= 0.95, recall
    assert precision >= 0.99, precision
    # and the planted families are not trivially far from the rest: the nearest stranger is close
    everything = all_pairs(hashes, 64)
    across = everything[fam[everything[:, 0]] != fam[everything[:, 1]]]
    assert across[:, 2].min() <= 20
