"""Utility of robot episodes, verified by training a fixed behaviour-cloning policy: ridge state -> action.

Why this model: as for text and labels (docs/appraisal.md), data is judged fairly only when the
model and its budget are fixed and the data is what changes. The policy maps the state vector of a
frame (standardised, plus a bias) to its action vector by ridge regression, fitted in closed form:
seeded, CPU only, no torch. Because ridge needs only the sufficient statistics ``X^T X``, ``X^T Y``
and ``sum y^2`` of each episode, a policy on any subset of episodes is one small solve, so

* the learning curve trains on growing subsets of the training episodes and measures held-out
  action MSE (split by episode, never by frame: frames of one episode are near copies), against
  two no-data baselines: the zero action and the mean training action (a policy that ignores the
  state);
* every episode is valued by Monte-Carlo permutation Shapley (Ghorbani & Zou 2019, "Data Shapley")
  with the held-out action error as utility: ``U(S) = MSE(zero action) - MSE(policy on S)``, over
  episode-level K folds so each episode is valued on episodes it was not trained on. A
  demonstration whose actions do not follow its states (noise, a wrong robot, shifted actions)
  pulls the policy away and gets a negative value.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ciyuan.appraise.stats import mean_ci

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
EPISODE_SAMPLE = 500  # episodes the policy reads (a deterministic sample by id hash beyond this)
MIN_EPISODES = 4
RIDGE = 1e-3  # per frame, on the standardised state (not on the bias)
TEST_SHARE = 0.2
FOLDS = 5
PERMUTATIONS = 48  # per fold
LISTED = 10  # top and bottom episodes listed in the appraisal


@dataclass
class Episode:
    id: str
    state: np.ndarray  # (frames, state_dim)
    action: np.ndarray  # (frames, action_dim)
    task: str | None = None
    index: int | None = None


def episode_records(version, episodes: int) -> Iterator[dict]:
    """Episode records of a version with their frame tables, 1 in ``ceil(episodes / EPISODE_SAMPLE)``
    by a hash of the id (a stride would alias with any period in the recording)."""
    every = max(1, math.ceil(episodes / EPISODE_SAMPLE))
    for r in version.iter_records(columns=["id", "modality", "media", "media_ref", "meta"], resolve_media=True):
        if r.get("modality") == "episode" and (
            every == 1 or zlib.crc32(str(r["id"]).encode("utf-8", "surrogatepass")) % every == 0
        ):
            yield r


def read_episodes(records: Iterable[dict], cap: int = EPISODE_SAMPLE) -> tuple[list[Episode], dict]:
    """State and action arrays of episode records (measured roles from ``meta.episode.features``).

    Returns the episodes of the commonest (state width, action width) and what was left out why.
    """
    from ciyuan.curate import episode as ep_mod
    from ciyuan.curate.media import NoMedia

    out: list[Episode] = []
    skipped: Counter[str] = Counter()
    for rec in records:
        f = ep_mod.facts(rec)
        try:
            table = ep_mod.load_table(rec)
        except NoMedia:
            skipped["no_frame_table"] += 1
            continue
        feats = f.get("features") or {}
        s, a = ep_mod.numbers(table, feats, "state"), ep_mod.numbers(table, feats, "action")
        if not s.shape[1] or not a.shape[1] or not len(s):
            skipped["no_state_or_action"] += 1
            continue
        if not (np.isfinite(s).all() and np.isfinite(a).all()):
            skipped["non_finite"] += 1
            continue
        tasks = f.get("tasks") or []
        out.append(Episode(str(rec.get("id")), s, a, tasks[0] if tasks else None, f.get("episode_index")))
    if out:
        dims = Counter((e.state.shape[1], e.action.shape[1]) for e in out)
        (ds, da), _ = dims.most_common(1)[0]
        other = sum(1 for e in out if (e.state.shape[1], e.action.shape[1]) != (ds, da))
        if other:
            skipped["other_widths"] += other
        out = [e for e in out if (e.state.shape[1], e.action.shape[1]) == (ds, da)]
    if len(out) > cap:  # deterministic by id, spread over the version
        skipped["beyond_sample"] = len(out) - cap
        out = sorted(out, key=lambda e: zlib.crc32(e.id.encode("utf-8", "surrogatepass")))[:cap]
    return out, dict(skipped)


class Stats:
    """Per-episode sufficient statistics of the ridge policy (standardised state plus a bias)."""

    def __init__(self, episodes: Sequence[Episode]) -> None:
        allx = np.concatenate([e.state for e in episodes])
        self.mu = allx.mean(0)
        self.sd = np.where(allx.std(0) > 1e-12, allx.std(0), 1.0)
        d = allx.shape[1] + 1
        self.a = np.empty((len(episodes), d, d))
        self.b = np.empty((len(episodes), d, episodes[0].action.shape[1]))
        self.c = np.empty(len(episodes))  # sum of squared actions
        self.sy = np.empty((len(episodes), episodes[0].action.shape[1]))  # sum of actions
        self.n = np.empty(len(episodes))
        for i, e in enumerate(episodes):
            x = np.hstack([(e.state - self.mu) / self.sd, np.ones((len(e.state), 1))])
            self.a[i], self.b[i] = x.T @ x, x.T @ e.action
            self.c[i], self.sy[i], self.n[i] = float((e.action**2).sum()), e.action.sum(0), len(e.state)
        self.reg = np.eye(d) * RIDGE
        self.reg[-1, -1] = 0.0
        self.da = episodes[0].action.shape[1]

    def fit(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Ridge weights for stacked sums ``a`` (k, d, d), ``b`` (k, d, da) over ``n`` (k,) frames."""
        return np.linalg.solve(a + n[:, None, None] * self.reg[None] + 1e-9 * np.eye(a.shape[1])[None], b)

    def mse(self, w: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Held-out action MSE (per action number) of each weight stack ``w`` (k, d, da) on episodes ``test``."""
        at, bt, ct = self.a[test].sum(0), self.b[test].sum(0), self.c[test].sum()
        quad = np.einsum("kdj,de,kej->k", w, at, w)
        return (quad - 2 * np.einsum("kdj,dj->k", w, bt) + ct) / (self.n[test].sum() * self.da)

    def zero_mse(self, test: np.ndarray) -> float:
        return float(self.c[test].sum() / (self.n[test].sum() * self.da))

    def mean_mse(self, train: np.ndarray, test: np.ndarray) -> float:
        m = self.sy[train].sum(0) / self.n[train].sum()
        nt = self.n[test].sum()
        return float((self.c[test].sum() - 2 * m @ self.sy[test].sum(0) + nt * m @ m) / (nt * self.da))


def learning_curve(st: Stats, seeds: Sequence[int], fractions: Sequence[float] = FRACTIONS) -> dict:
    """Held-out action MSE of the policy on growing shares of the training episodes, per seed."""
    n = len(st.n)
    curve: dict[float, list[float]] = {f: [] for f in fractions}
    zero, mean, drop, drop_zero = [], [], [], []
    n_test = max(1, round(TEST_SHARE * n))
    for seed in seeds:
        perm = np.random.default_rng(seed).permutation(n)
        test, train = perm[:n_test], perm[n_test:]
        for f in fractions:
            k = max(1, round(f * len(train)))
            sub = train[:k]
            w = st.fit(st.a[sub].sum(0)[None], st.b[sub].sum(0)[None], np.array([st.n[sub].sum()]))
            curve[f].append(float(st.mse(w, test)[0]))
        zero.append(st.zero_mse(test))
        mean.append(st.mean_mse(train, test))
        full = curve[fractions[-1]][-1]
        drop.append(1.0 - full / mean[-1] if mean[-1] > 0 else 0.0)
        drop_zero.append(1.0 - full / zero[-1] if zero[-1] > 0 else 0.0)
    return {
        "curve": [{"fraction": f, **mean_ci(curve[f])} for f in fractions],
        "baseline_zero_action": mean_ci(zero),
        "baseline_mean_action": mean_ci(mean),
        "relative_drop": mean_ci(drop),
        "relative_drop_vs_zero": mean_ci(drop_zero),
        "test_episodes": n_test,
        "train_episodes": n - n_test,
    }


def shapley(st: Stats, seed: int = 0, folds: int = FOLDS, permutations: int = PERMUTATIONS) -> np.ndarray:
    """Monte-Carlo permutation Shapley of each episode; utility = zero-action MSE - policy MSE on the
    held-out fold. An episode's value is its mean over the folds it trains in."""
    n = len(st.n)
    folds = max(2, min(folds, n))
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(n) % folds
    total, seen = np.zeros(n), np.zeros(n)
    for f in range(folds):
        test, train = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        u0 = st.zero_mse(test)
        acc = np.zeros(len(train))
        for _ in range(permutations):
            order = train[rng.permutation(len(train))]
            w = st.fit(np.cumsum(st.a[order], 0), np.cumsum(st.b[order], 0), np.cumsum(st.n[order]))
            util = u0 - st.mse(w, test)
            marg = np.diff(np.concatenate([[0.0], util]))
            acc[np.searchsorted(train, order)] += marg
        total[train] += acc / permutations
        seen[train] += 1
    return total / np.maximum(seen, 1)


def _hist(values: np.ndarray, bins: int = 20) -> dict:
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def appraise_episodes(
    records: Iterable[dict], total: int, seeds: Sequence[int]
) -> tuple[dict | None, dict | None, list[str], np.ndarray]:
    """``(utility, values summary, ids, values)`` of the episode records (None, None when too few)."""
    eps, skipped = read_episodes(records)
    base = {"episodes": len(eps), "of": total, "skipped": skipped}
    if len(eps) < MIN_EPISODES:
        return (
            {**base, "relative_drop": None, "why": f"fewer than {MIN_EPISODES} episodes with finite state and action"},
            None,
            [],
            np.zeros(0),
        )
    st = Stats(eps)
    util = {
        **base,
        "policy": "ridge regression state -> action (standardised state, bias, "
        f"lambda {RIDGE} per frame), closed form, CPU",
        "eval": f"held-out {int(TEST_SHARE * 100)} % of episodes (split by episode), one split per seed",
        "metric": "action MSE per action number",
        "frames": int(st.n.sum()),
        "state_dim": int(eps[0].state.shape[1]),
        "action_dim": st.da,
        "seeds": list(seeds),
        **learning_curve(st, seeds),
    }
    vals = shapley(st, seed=seeds[0] if seeds else 0)
    order = np.argsort(vals, kind="stable")

    def row(i: int) -> dict:
        e = eps[i]
        return {"id": e.id, "value": float(vals[i]), "task": e.task, "episode_index": e.index, "length": len(e.state)}

    summary = {
        "method": f"Monte-Carlo permutation Shapley ({PERMUTATIONS} permutations x {min(FOLDS, len(eps))} "
        "episode folds) of the ridge policy; utility = zero-action MSE - held-out action MSE",
        "episodes": len(eps),
        "mean": float(vals.mean()),
        "negative": int((vals < 0).sum()),
        "histogram": _hist(vals),
        "top": [row(i) for i in order[::-1][:LISTED]],
        "bottom": [row(i) for i in order[:LISTED]],
    }
    return util, summary, [e.id for e in eps], vals
