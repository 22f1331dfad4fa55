"""A reference language model for text utility: interpolated modified Kneser-Ney n-grams.

Why this model: the issue asks for the held-out perplexity drop of a small, fixed, documented
model trained on a baseline corpus versus baseline plus the dataset at equal token budgets. A
Kneser-Ney trigram over cl100k token ids trains in seconds on a CPU, has no hyper-parameters to
tune (the discounts come from count-of-counts), and its perplexity reacts to domain match, which
is what a buyer wants to know.

Everything is numpy: an n-gram is packed into one int64 key (20 bits per token), counts come from
``np.unique`` and lookups from ``np.searchsorted``. Model (Chen & Goodman 1999, interpolated)::

    P_n(w | h) = max(c(h w) - D_n(c(h w)), 0) / c(h ·) + gamma_n(h) * P_{n-1}(w | h')
    gamma_n(h) = (D_n1 N1(h ·) + D_n2 N2(h ·) + D_n3+ N3+(h ·)) / c(h ·)
    P_0(w)     = 1 / V

``c`` is the raw count at the top order and the continuation count (number of distinct left
extensions) below it; an unseen history falls through to the lower order. Discounts per order,
from n_r = number of n-grams whose count is r:  Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1,
D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3 (each clipped to [0.1, r]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ciyuan.appraise.stats import mean_ci
from ciyuan.errors import InvalidInput

BITS = 20
BASE = 1 << BITS
BOS = BASE - 2
EOS = BASE - 1
CL100K_VOCAB = 100_277  # ids 0..100276 in cl100k_base (including its special tokens)

Encoder = Callable[[str], list[int]]


def default_encoder(tokenizer: str = "cl100k_base") -> tuple[Encoder, int, str]:
    """``(encode, vocab_size, name)`` of ciyuan's tokenizer ``tokenizer``."""
    from ciyuan.tokens import get_tokenizer

    tok = get_tokenizer(tokenizer)
    vocab = CL100K_VOCAB if tokenizer == "cl100k_base" else BASE - 2
    return tok.encode, vocab, tokenizer


def _pack(seqs: Sequence[np.ndarray], order: int) -> np.ndarray:
    """All n-gram keys (n = order) of BOS-padded, EOS-terminated sequences, as int64.

    Documents are concatenated once and windows that would cross a document edge are dropped,
    so the cost is a few numpy passes whatever the number of documents.
    """
    if not seqs:
        return np.zeros(0, np.int64)
    lens = np.array([len(s) for s in seqs], dtype=np.int64) + order  # pad + tokens + EOS
    ends = np.cumsum(lens)
    full = np.empty(int(ends[-1]), dtype=np.int64)
    starts = ends - lens
    for s, st in zip(seqs, starts, strict=True):
        full[st : st + order - 1] = BOS
        full[st + order - 1 : st + order - 1 + len(s)] = s
    full[ends - 1] = EOS
    m = len(full) - order + 1
    k = np.zeros(m, dtype=np.int64)
    for j in range(order):
        k = (k << BITS) | full[j : j + m]
    pos = np.arange(m)
    doc = np.searchsorted(ends, pos, side="right")
    return k[pos + order <= ends[np.minimum(doc, len(ends) - 1)]]


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Modified KN discounts [0, D1, D2, D3+] from the count-of-counts of one order."""
    n = [int((counts == r).sum()) for r in (1, 2, 3, 4)]
    if n[0] == 0 or n[1] == 0:
        return np.array([0.0, 0.5, 1.0, 1.5])  # too little data for the estimate: mild defaults
    y = n[0] / (n[0] + 2 * n[1])
    d1 = 1 - 2 * y * n[1] / n[0]
    d2 = 2 - 3 * y * n[2] / n[1] if n[1] else 1.0
    d3 = 3 - 4 * y * n[3] / n[2] if n[2] else 1.5
    # floored at 0.1 so every seen history keeps some mass for unseen words (no zero probability)
    return np.array([0.0, min(max(d1, 0.1), 1.0), min(max(d2, 0.1), 2.0), min(max(d3, 0.1), 3.0)])


@dataclass
class _Level:
    keys: np.ndarray  # sorted n-gram keys
    counts: np.ndarray  # raw (top) or continuation counts
    disc: np.ndarray  # [0, D1, D2, D3+]
    hkeys: np.ndarray  # sorted history keys
    htotal: np.ndarray  # sum of counts per history
    hgamma_num: np.ndarray  # D1 N1 + D2 N2 + D3 N3+ per history


def _level(keys: np.ndarray, counts: np.ndarray) -> _Level:
    disc = _discounts(counts)
    hist = keys >> BITS
    hk, inv = np.unique(hist, return_inverse=True)
    htotal = np.bincount(inv, weights=counts, minlength=len(hk))
    dc = disc[np.minimum(counts, 3)]
    gnum = np.bincount(inv, weights=dc, minlength=len(hk))
    return _Level(keys, counts.astype(np.float64), disc, hk, htotal, gnum)


def _lookup(sorted_keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each query in ``sorted_keys`` and whether it was found."""
    if len(sorted_keys) == 0:
        return np.zeros(len(q), np.int64), np.zeros(len(q), bool)
    i = np.searchsorted(sorted_keys, q)
    i = np.minimum(i, len(sorted_keys) - 1)
    return i, sorted_keys[i] == q


class KneserNeyLM:
    """Interpolated modified Kneser-Ney over integer token ids (order 3 by default)."""

    def __init__(self, order: int = 3, vocab_size: int = CL100K_VOCAB):
        if not 1 <= order <= 3:
            raise InvalidInput(f"order must be 1, 2 or 3, got {order}", hint="use the default 3")
        self.order = order
        self.vocab_size = vocab_size + 1  # + EOS, which the model also predicts
        self.levels: list[_Level] = []
        self.tokens = 0

    def fit(self, seqs: Sequence[Sequence[int]]) -> KneserNeyLM:
        arrays = [np.asarray(s, dtype=np.int64) for s in seqs]
        self.tokens = int(sum(len(a) for a in arrays))
        top_keys, top_counts = np.unique(_pack(arrays, self.order), return_counts=True)
        levels = [_level(top_keys, top_counts)]
        keys = top_keys
        mask = (1 << (BITS * (self.order - 1))) - 1
        for _ in range(self.order - 1, 0, -1):
            # continuation count of the lower-order suffix: distinct left extensions among (n+1)-grams
            suffix = keys & mask
            keys, counts = np.unique(suffix, return_counts=True)
            # n-grams whose whole history is padding only ever follow BOS: nothing to drop
            levels.append(_level(keys, counts))
            mask >>= BITS
        self.levels = levels[::-1]  # levels[0] is unigrams
        return self

    def _probs(self, keys: np.ndarray) -> np.ndarray:
        """P(last token | the tokens before it) for each packed n-gram key."""
        p = np.full(len(keys), 1.0 / self.vocab_size)
        for n, lev in enumerate(self.levels, start=1):
            q = keys & ((1 << (BITS * n)) - 1)
            ki, kfound = _lookup(lev.keys, q)
            hi, hfound = _lookup(lev.hkeys, q >> BITS)
            c = np.where(kfound, lev.counts[ki], 0.0)
            tot = np.where(hfound, lev.htotal[hi], 0.0)
            gnum = np.where(hfound, lev.hgamma_num[hi], 0.0)
            d = lev.disc[np.minimum(c, 3).astype(np.int64)]
            seen = tot > 0
            safe = np.where(seen, tot, 1.0)
            p = np.where(seen, (np.maximum(c - d, 0.0) + gnum * p) / safe, p)
        return p

    def logprob(self, seqs: Sequence[Sequence[int]], chunk: int = 1 << 22) -> tuple[float, int]:
        """Total natural-log probability of the sequences and the number of predicted tokens."""
        keys = _pack([np.asarray(s, dtype=np.int64) for s in seqs], self.order)
        total = 0.0
        for i in range(0, len(keys), chunk):
            total += float(np.log(self._probs(keys[i : i + chunk])).sum())
        return total, len(keys)

    def perplexity(self, seqs: Sequence[Sequence[int]]) -> float:
        lp, n = self.logprob(seqs)
        return math.exp(-lp / n) if n else math.nan

    def prob_table(self, history: Sequence[int]) -> np.ndarray:
        """P(w | history) for w = 0..V-2 and EOS, for small vocabularies (tests: sums to 1)."""
        h = [BOS] * (self.order - 1) + list(history)
        h = h[len(h) - (self.order - 1) :] if self.order > 1 else []
        cand = np.concatenate([np.arange(self.vocab_size - 1, dtype=np.int64), [EOS]])
        keys = np.zeros(len(cand), dtype=np.int64)
        for t in h:
            keys = (keys << BITS) | t
        return self._probs((keys << BITS) | cand)


def _take_budget(rng: np.random.Generator, docs: Sequence[np.ndarray], budget: int) -> list[np.ndarray]:
    """Shuffle documents and take them until ``budget`` tokens; the last one is cut to fit."""
    out, have = [], 0
    for i in rng.permutation(len(docs)):
        if have >= budget:
            break
        d = docs[i][: budget - have]
        out.append(d)
        have += len(d)
    return out


def encode_all(texts: Sequence[str], encode: Encoder) -> list[np.ndarray]:
    return [np.asarray(encode(t), dtype=np.int64) for t in texts if t]


def perplexity_lift(
    baseline_texts: Sequence[str],
    dataset_texts: Sequence[str],
    eval_texts: Sequence[str],
    token_budget: int,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    order: int = 3,
    encode: Encoder | None = None,
    vocab_size: int | None = None,
    dataset_share: float = 0.5,
    tokenizer: str = "cl100k_base",
) -> dict:
    """Perplexity on ``eval_texts`` of a model trained on baseline only versus baseline + dataset.

    Both models see exactly ``token_budget`` training tokens: the first all from the baseline, the
    second ``dataset_share`` of them from the dataset and the rest from the baseline. Per seed the
    documents are reshuffled; the drop ``ppl_base - ppl_mix`` and the relative drop
    ``1 - ppl_mix / ppl_base`` are reported as means with 95 % t-intervals.
    """
    if encode is None:
        encode, vocab, name = default_encoder(tokenizer)
    else:
        vocab, name = vocab_size or BASE - 2, "custom"
    vocab = vocab_size or vocab
    base = encode_all(baseline_texts, encode)
    data = encode_all(dataset_texts, encode)
    ev = encode_all(eval_texts, encode)
    if not data or not ev:
        raise InvalidInput("perplexity lift needs dataset and evaluation text", hint="pass --eval FILE")
    n_data = int(round(token_budget * dataset_share))
    have_base = sum(len(b) for b in base)
    have_data = sum(len(d) for d in data)
    if have_base < token_budget and base:
        raise InvalidInput(
            f"baseline has {have_base} tokens, fewer than the budget {token_budget}",
            hint="lower the token budget or give a larger baseline",
        )
    if have_data < n_data:
        raise InvalidInput(
            f"dataset has {have_data} tokens, fewer than its share {n_data} of the budget",
            hint="lower the token budget",
        )
    drops, rel, p_base, p_mix = [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        only = _take_budget(rng, base, token_budget) if base else []
        mix = _take_budget(rng, base, token_budget - n_data) + _take_budget(rng, data, n_data)
        pb = KneserNeyLM(order, vocab).fit(only).perplexity(ev)
        pm = KneserNeyLM(order, vocab).fit(mix).perplexity(ev)
        p_base.append(pb)
        p_mix.append(pm)
        drops.append(pb - pm)
        rel.append(1 - pm / pb)
    return {
        "model": f"interpolated-modified-kneser-ney(order={order})",
        "tokenizer": name,
        "token_budget": token_budget,
        "dataset_share": dataset_share,
        "eval_tokens": int(sum(len(e) for e in ev)),
        "perplexity_baseline": mean_ci(p_base),
        "perplexity_with_dataset": mean_ci(p_mix),
        "drop": mean_ci(drops),
        "relative_drop": mean_ci(rel),
        "seeds": list(seeds),
    }
