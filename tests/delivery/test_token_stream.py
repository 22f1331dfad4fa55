"""``TokenStream`` as PyTorch users expect: default collate, state without track(), seeded resumable
shuffling, tokenisation with the listing's tokenizer and packing, each resumable exactly.

Real uvicorn server, real ledger; a fully consumed entitlement is re-read from the start as a free
replay, so one entitlement serves several runs and is still billed exactly its quote.
"""

from __future__ import annotations

import json

import pytest

from ciyuan.db import tx
from ciyuan.delivery import plan, stream
from ciyuan.sdk import Client, TokenStream
from ciyuan.tokens import get_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture
def live(home, h, server_factory):
    env = h.make_market()
    e = h.metered_entitlement(env)
    srv = server_factory().start()
    return env, e, srv


def _billed_exactly(e: dict) -> None:
    ent = e["entitlement"]["id"]
    m = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["amount_posted"] == e["quote"]["amount"]


def _ids(batch) -> list[str]:
    return list(batch["id"]) if isinstance(batch, dict) else [r["id"] for r in batch]


def test_default_collate_and_state_without_track_resume_exactly(live, h) -> None:
    import torch
    from torch.utils.data import DataLoader

    env, e, srv = live
    ent = e["entitlement"]["id"]
    c = Client(srv.url, env.key)
    everything = [f"r{i:05d}" for i in range(h.N_RECORDS)]
    # the plain DataLoader line, default collate: records have no None and meta is JSON text
    ds = TokenStream(c, ent, max_tokens=1500, num_workers=2)
    seen: list[str] = []
    for batch in DataLoader(ds, batch_size=8, num_workers=2):
        assert isinstance(batch["tokens"], torch.Tensor) and isinstance(batch["media"][0], bytes)
        assert all(isinstance(json.loads(m), dict) for m in batch["meta"])
        seen += _ids(batch)
    assert sorted(seen) == everything and len(seen) == len(set(seen))
    _billed_exactly(e)
    # ds.loader(): the same DataLoader, and state_dict() is current with no track() call
    ds = TokenStream(c, ent, max_tokens=1500, num_workers=2)
    first: list[str] = []
    for k, batch in enumerate(ds.loader(batch_size=7)):
        first += _ids(batch)
        if k == 4:  # preempted after 5 batches; the workers had prefetched more
            break
    state = json.loads(json.dumps(ds.state_dict()))  # a checkpoint survives JSON
    assert state["parts"] == 2 and state["positions"]
    ds2 = TokenStream(c, ent, max_tokens=1500, num_workers=2)
    ds2.load_state_dict(state)
    rest = [i for batch in ds2.loader(batch_size=7) for i in _ids(batch)]
    assert len(first) == 35 and not set(first) & set(rest)
    assert sorted(first + rest) == everything
    _billed_exactly(e)


def test_shuffle_is_seeded_and_resumes_exactly(live, h) -> None:
    env, e, srv = live
    ent = e["entitlement"]["id"]
    c = Client(srv.url, env.key)
    everything = [f"r{i:05d}" for i in range(h.N_RECORDS)]

    def run(seed: int) -> list[str]:
        return [r["id"] for r in TokenStream(c, ent, max_tokens=1500, shuffle=50, seed=seed)]

    a = run(7)
    assert sorted(a) == everything and a != everything
    assert run(7) == a  # same seed, same order
    assert run(8) != a
    for stop in (1, 49, 50, 73, 239):  # inside, at the edge of and across shuffle windows
        ds = TokenStream(c, ent, max_tokens=1500, shuffle=50, seed=7)
        head = []
        for r in ds:
            head.append(r["id"])
            if len(head) == stop:
                break
        ds2 = TokenStream(c, ent, max_tokens=1500, shuffle=50, seed=7)
        ds2.load_state_dict(json.loads(json.dumps(ds.state_dict())))
        assert head + [r["id"] for r in ds2] == a, stop
    other = TokenStream(c, ent, shuffle=50, seed=8)
    with pytest.raises(ValueError, match="same shuffle, seed"):
        other.load_state_dict(ds.state_dict())
    _billed_exactly(e)


def test_shuffle_under_dataloader_workers_resumes_exactly(live, h) -> None:
    env, e, srv = live
    ent = e["entitlement"]["id"]
    c = Client(srv.url, env.key)

    def per_part(batches) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {0: [], 1: []}
        for b in batches:
            for p, i in zip(b["_part"].tolist(), b["id"], strict=True):
                out[p].append(i)
        return out

    whole = per_part(TokenStream(c, ent, max_tokens=1500, num_workers=2, shuffle=30, seed=1).loader(batch_size=6))
    ds = TokenStream(c, ent, max_tokens=1500, num_workers=2, shuffle=30, seed=1)
    got: list = []
    for k, b in enumerate(ds.loader(batch_size=6)):
        got.append(b)
        if k == 6:
            break
    ds2 = TokenStream(c, ent, max_tokens=1500, num_workers=2, shuffle=30, seed=1)
    ds2.load_state_dict(ds.state_dict())
    got += list(ds2.loader(batch_size=6))
    assert per_part(got) == whole
    assert sorted(whole[0] + whole[1]) == [f"r{i:05d}" for i in range(h.N_RECORDS)]
    _billed_exactly(e)


def test_tokenize_with_the_listings_tokenizer_and_pack_resumes_exactly(live, h) -> None:
    import torch

    env, e, srv = live
    ent = e["entitlement"]["id"]
    c = Client(srv.url, env.key)
    name = c.entitlement(ent)["schedule"]
    tok = get_tokenizer(name)
    recs = list(TokenStream(c, ent, max_tokens=1500, tokenize=True))
    assert recs and all(r["input_ids"] == tok.encode(r["text"]) for r in recs)
    eos = tok.encoding.n_vocab
    stream = [t for r in recs for t in tok.encode(r["text"]) + [eos]]

    def blocks(ds) -> list[list[int]]:
        return [b["input_ids"].tolist() for b in ds]

    size = 64
    whole = blocks(TokenStream(c, ent, max_tokens=1500, pack=size))
    assert whole and all(len(b) == size for b in whole)
    assert [t for b in whole for t in b] == stream[: len(stream) // size * size]  # EOS between documents
    for stop in (1, 5, len(whole) - 1):
        ds = TokenStream(c, ent, max_tokens=1500, pack=size)
        head = []
        for b in ds:
            head.append(b["input_ids"].tolist())
            if len(head) == stop:
                break
        assert ds.state_dict()["positions"]["0"][2] > 0 or stop == len(whole) - 1  # mid-document: a partial pack
        ds2 = TokenStream(c, ent, max_tokens=1500, pack=size)
        ds2.load_state_dict(json.loads(json.dumps(ds.state_dict())))
        assert head + blocks(ds2) == whole, stop
    _billed_exactly(e)
    # packed and shuffled under two workers, default collate: [batch, size] tensors, resumed exactly
    e = h.metered_entitlement(env, key="k2")  # a stream's partition count is fixed: a second entitlement
    ent = e["entitlement"]["id"]
    mk = lambda: TokenStream(c, ent, max_tokens=1500, num_workers=2, pack=size, shuffle=20, seed=3)  # noqa: E731
    full = [x for b in mk().loader(batch_size=4) for x in zip(b["_part"].tolist(), b["input_ids"].tolist(),
                                                               strict=True)]
    ds = mk()
    got = []
    for k, b in enumerate(ds.loader(batch_size=4)):
        assert isinstance(b["input_ids"], torch.Tensor) and b["input_ids"].shape[1] == size
        got += list(zip(b["_part"].tolist(), b["input_ids"].tolist(), strict=True))
        if k == 2:
            break
    ds2 = mk()
    ds2.load_state_dict(ds.state_dict())
    got += [x for b in ds2.loader(batch_size=4) for x in zip(b["_part"].tolist(), b["input_ids"].tolist(),
                                                              strict=True)]
    assert [x for x in got if x[0] == 0] == [x for x in full if x[0] == 0]
    assert [x for x in got if x[0] == 1] == [x for x in full if x[0] == 1]
    _billed_exactly(e)
