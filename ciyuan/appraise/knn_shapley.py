"""Exact Shapley values of training records for a K-nearest-neighbour classifier.

Why: Data Shapley is the principled way to share a model's accuracy among the records that made
it, but it costs exponential time in general. For the KNN utility Jia et al. (2019, "Efficient
task-specific data valuation for nearest neighbor algorithms") give an exact closed form that
needs only a sort per test point, so we can value every record of a labelled version and flag
likely mislabelled ones (they get negative values).

Utility (one test point ``(x, y)``; ``S`` a set of training records, ``K`` the neighbours)::

    U(S) = (1/K) * sum_{k=1}^{min(K, |S|)} 1[y_{a_k(S)} == y]      U(∅) = 0

where ``a_k(S)`` is the k-th nearest member of ``S``. The denominator is always ``K`` (not
``min(K, |S|)``), which is what makes the closed form exact also for ``N < K``. With training
points sorted nearest first ``a_1..a_N`` and ``m_i = 1[y_{a_i} == y]``::

    s_{a_N} = m_N * min(K, N) / (N * K)
    s_{a_i} = s_{a_{i+1}} + (m_i - m_{i+1}) / K * min(K, i) / i

For several test points the utility (and so every value) is the mean over test points. Values sum
to ``U(D) - U(∅) = U(D)``. Ties in distance are broken by training index (a stable sort) in both
the closed form and the brute force, so the two agree exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from ciyuan.errors import InvalidInput

Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]


def sq_euclidean(test_x: np.ndarray, train_x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, shape (n_test, n_train); monotone in Euclidean, so same order."""
    tt = np.einsum("ij,ij->i", test_x, test_x)[:, None]
    rr = np.einsum("ij,ij->i", train_x, train_x)[None, :]
    d = tt + rr - 2.0 * (test_x @ train_x.T)
    np.maximum(d, 0.0, out=d)
    return d


def cosine_distance(test_x: np.ndarray, train_x: np.ndarray) -> np.ndarray:
    """1 - cosine similarity; the natural distance for L2-normalised hashed n-gram features."""
    a = test_x / np.maximum(np.linalg.norm(test_x, axis=1, keepdims=True), 1e-12)
    b = train_x / np.maximum(np.linalg.norm(train_x, axis=1, keepdims=True), 1e-12)
    return 1.0 - a @ b.T


def _values_from_order(match: np.ndarray, k: int) -> np.ndarray:
    """Closed-form values for rows of ``match`` (nearest first), returned in that sorted order."""
    m_rows, n = match.shape
    if n == 0:
        return np.zeros((m_rows, 0))
    m = match.astype(np.float64)
    i = np.arange(1, n, dtype=np.float64)  # positions 1..N-1 (1-based) of a_i with a successor
    coef = np.minimum(k, i) / i / k
    steps = (m[:, :-1] - m[:, 1:]) * coef  # s_i - s_{i+1}
    last = m[:, -1] * min(k, n) / (n * k)
    s = np.empty((m_rows, n))
    s[:, -1] = last
    if n > 1:
        # s_i = last + sum_{j >= i} steps_j  -> reverse cumulative sum
        s[:, :-1] = last[:, None] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    return s


def knn_shapley(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 5,
    distance: Distance = sq_euclidean,
    chunk: int = 256,
) -> np.ndarray:
    """Exact KNN-Shapley value of each training point, averaged over the test points.

    Works in chunks of ``chunk`` test points so memory stays at ``chunk * N`` floats.
    """
    train_x = np.asarray(train_x)
    if train_x.dtype not in (np.float32, np.float64):
        train_x = train_x.astype(np.float64)
    test_x = np.asarray(test_x, dtype=train_x.dtype)
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    if k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}", hint="use k=5 unless you have a reason")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise InvalidInput("features and labels differ in length", hint="pass one label per row")
    n = len(train_x)
    values = np.zeros(n)
    if n == 0 or len(test_x) == 0:
        return values
    for start in range(0, len(test_x), chunk):
        tx, ty = test_x[start : start + chunk], test_y[start : start + chunk]
        d = distance(tx, train_x)
        order = np.argsort(d, axis=1, kind="stable")
        match = train_y[order] == ty[:, None]
        s = _values_from_order(match, k)
        np.add.at(values, order.ravel(), s.ravel())
    return values / len(test_x)


def knn_shapley_self(
    x: np.ndarray,
    y: np.ndarray,
    k: int = 5,
    distance: Distance = cosine_distance,
    chunk: int = 256,
) -> np.ndarray:
    """Value every record using every other record as a test point (leave-self-out).

    For test point ``j`` the training set is ``D \\ {j}``: the point's own column is pushed to the
    end of the order and dropped, so each row is an exact KNN-Shapley problem with ``N - 1``
    training points. Why: a labelled version rarely ships a separate clean test set, and this
    uses all of it without letting a record vote for itself.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    n = len(x)
    values = np.zeros(n)
    if n < 2:
        return values
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        d = distance(x[start:stop], x).astype(np.float64)
        rows = np.arange(stop - start)
        d[rows, rows + start] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, : n - 1]
        match = y[order] == y[start:stop, None]
        s = _values_from_order(match, k)
        np.add.at(values, order.ravel(), s.ravel())
    return values / n


# ---------------------------------------------------------------------------------------------
# Brute force, for tests: the textbook subset formula over every subset.


def knn_utility(subset: list[int], rank: np.ndarray, train_y: np.ndarray, test_y, k: int) -> float:
    """U(S) for one test point; ``rank[i]`` is training point i's place in the stable order."""
    if not subset:
        return 0.0
    nearest = sorted(subset, key=lambda i: rank[i])[:k]
    return sum(1.0 for i in nearest if train_y[i] == test_y) / k


def brute_force_shapley(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 5,
    distance: Distance = sq_euclidean,
) -> np.ndarray:
    """Shapley values by enumerating all 2^N subsets (N ≤ ~12)."""
    n = len(train_x)
    values = np.zeros(n)
    if n == 0:
        return values
    d = distance(np.asarray(test_x, dtype=np.float64), np.asarray(train_x, dtype=np.float64))
    fact = [math.factorial(i) for i in range(n + 1)]
    for t in range(len(test_x)):
        order = np.argsort(d[t], kind="stable")
        rank = np.empty(n, dtype=int)
        rank[order] = np.arange(n)
        util = {}
        for r in range(n + 1):
            for sub in itertools.combinations(range(n), r):
                util[sub] = knn_utility(list(sub), rank, train_y, test_y[t], k)
        for i in range(n):
            others = [j for j in range(n) if j != i]
            total = 0.0
            for r in range(n):
                w = fact[r] * fact[n - r - 1] / fact[n]
                for sub in itertools.combinations(others, r):
                    with_i = tuple(sorted(sub + (i,)))
                    total += w * (util[with_i] - util[sub])
            values[i] += total
    return values / len(test_x)


def utility_of_all(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 5,
    distance: Distance = sq_euclidean,
) -> float:
    """U(D) averaged over test points (U(∅) = 0), the total the values must add up to."""
    d = distance(np.asarray(test_x, dtype=np.float64), np.asarray(train_x, dtype=np.float64))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return float((np.asarray(train_y)[order] == np.asarray(test_y)[:, None]).sum(axis=1).mean() / k)
