"""Gopher's repetition measures: repeated lines/paragraphs and n-gram shares, in numpy.

Kept apart from the quality step because they are the one numeric kernel of it, tested on their
own against a direct count (tests/curate/test_steps.py) and shared by every language's path.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def dup_stats(items: list[str], counts: Counter[str] | None = None) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats).

    ``items`` are the non-blank ones; ``counts`` their Counter when the caller has it already.
    Every occurrence after an item's first is a repeat, so the counts give both shares without
    walking the items in order.
    """
    if not items:
        return 0.0, 0.0
    if counts is None:
        counts = Counter(items)
    dup_n = len(items) - len(counts)
    if not dup_n:
        return 0.0, 0.0
    dup_chars = sum(len(x) * (c - 1) for x, c in counts.items() if c > 1)
    return dup_n / len(items), dup_chars / max(sum(map(len, items)), 1)


P_NGRAM = np.uint64(0x100000001B3)


def repetition(
    ids: np.ndarray, lens: np.ndarray, top: set[int], dup: set[int], limits: dict[int, float] | None = None
) -> dict[int, float]:
    """Gopher's n-gram repetition shares for every n in ``top`` and ``dup``, from one growing pass.

    ``top``: characters in the most frequent n-gram (all its occurrences; ties go to the one seen
    first) over all word characters. ``dup``: characters covered by n-grams that repeat an earlier
    occurrence, over all word characters. A repeated n-gram starts where an (n-1)-gram repeats, so
    after n = 2 only the positions whose previous gram occurs twice or more are hashed and sorted.

    ``limits`` (n -> largest share that passes, for the ``dup`` sizes) lets the pass stop early: the
    words a repeated (n+1)-gram covers are covered by repeated n-grams too, so the share never grows
    with n, and once it is within every larger size's limit those sizes pass. They are then given
    the last share computed (an upper bound, not their exact share), which decides their rules the
    same way; without ``limits`` every share is exact.
    """
    out = dict.fromkeys(top | dup, 0.0)
    n_max = max(out, default=0)
    dup_sorted = sorted(dup)
    length = len(ids)
    if length < 2 or n_max < 2:
        return out
    cum = np.zeros(length + 1, dtype=np.int64)
    np.cumsum(lens, out=cum[1:])
    total = float(cum[-1]) or 1.0
    cand = np.arange(length - 1)  # start positions still worth hashing, in text order
    with np.errstate(over="ignore"):
        acc = ids[:-1] * P_NGRAM + ids[1:]
        for n in range(2, n_max + 1):
            if n > 2:  # candidates are in text order, so the ones with room for n words are a prefix
                k = int(cand.searchsorted(length - n, side="right"))
                cand, acc = cand[:k], acc[:k] * P_NGRAM + ids[cand[:k] + (n - 1)]
            if len(cand) < 2:
                break
            order = np.argsort(acc, kind="stable")  # stable: the first of equal grams is the earliest
            srt = acc[order]
            new = np.empty(len(srt), dtype=bool)
            new[0] = True
            np.not_equal(srt[1:], srt[:-1], out=new[1:])
            group = new.cumsum() - 1
            counts = np.bincount(group)
            repeated = counts[group] >= 2  # in sorted order
            if not repeated.any():
                break
            if n in top:
                heads = cand[order[new]]  # first position of each group, groups in key order
                best = counts.max()
                first = int(heads[counts == best].min())
                out[n] = float(best) * float(cum[first + n] - cum[first]) / total
            if n in dup:
                starts = cand[order[~new]]  # occurrences after the first
                cover = np.bincount(starts, minlength=length + 1)[: length + 1]
                cover = cover - np.bincount(starts + n, minlength=length + 1)[: length + 1]
                covered = cover[:length].cumsum() > 0
                out[n] = float(lens[covered].sum()) / total
                if limits is not None and n >= max(top, default=0):
                    rest = [m for m in dup_sorted if m > n]
                    if all(out[n] <= limits[m] for m in rest):
                        for m in rest:
                            out[m] = out[n]
                        break
            mask = np.empty(len(cand), dtype=bool)
            mask[order] = repeated
            cand, acc = cand[mask], acc[mask]
    return out
