"""Unit tests of TokenStream's item shape and state format (no server needed)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import default_collate

from ciyuan.sdk import TokenStream
from ciyuan.sdk.stream import collatable


def test_records_collate_by_default_even_with_none_fields_and_different_meta_keys() -> None:
    recs = [{"id": "a", "modality": "text", "text": "x", "media": None, "media_ref": None,
             "meta": json.dumps({"language": "zh"}), "tokens": 3},
            {"id": "b", "modality": "image", "text": None, "media": b"\x89PNG", "media_ref": "s3://x",
             "meta": None, "tokens": 9}]
    with pytest.raises(TypeError):  # what the README's line hit before: None does not collate
        default_collate(recs)
    batch = default_collate([collatable(r) for r in recs])
    assert batch["id"] == ["a", "b"] and batch["text"] == ["x", ""] and batch["media"] == [b"", b"\x89PNG"]
    assert [json.loads(m) for m in batch["meta"]] == [{"language": "zh"}, {}]
    assert torch.equal(batch["tokens"], torch.tensor([3, 9]))
    assert collatable({"meta": {"b": 1, "a": "中"}})["meta"] == '{"a": "中", "b": 1}'


def test_observe_takes_collated_positions_and_state_round_trips() -> None:
    ds = TokenStream("http://127.0.0.1:9", "ent_x", pack=16)
    batch = default_collate([{"input_ids": torch.zeros(16, dtype=torch.long), "_part": p, "_from": f, "_next": n,
                              "_skip": t} for p, f, n, t in [(0, 0, 3, 5), (1, 40, 44, 0), (0, 0, 4, 2)]])
    ds.observe(batch)
    ds.observe([{"_part": 1, "_from": 40, "_next": 43, "_skip": 9}])  # older than what was seen: ignored
    st = ds.state_dict()
    assert st["positions"] == {"0": [0, 4, 2], "1": [40, 44, 0]} and st["order"]["pack"] == 16
    again = TokenStream("http://127.0.0.1:9", "ent_x", pack=16)
    again.load_state_dict(json.loads(json.dumps(st)))
    assert again.state_dict() == st
    with pytest.raises(ValueError, match="same shuffle, seed, tokenize, pack"):
        TokenStream("http://127.0.0.1:9", "ent_x", pack=32).load_state_dict(st)
    old = TokenStream("http://127.0.0.1:9", "ent_x")
    old.load_state_dict({"entitlement_id": "ent_x", "parts": 2, "positions": {"0": [10, 17]}})  # the older form
    assert old.state_dict()["positions"] == {"0": [10, 17, 0]}
