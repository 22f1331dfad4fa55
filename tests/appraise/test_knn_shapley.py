"""KNN-Shapley's closed form against brute-force Shapley, and the efficiency axiom."""

from __future__ import annotations

import numpy as np
import pytest

from ciyuan.appraise.knn_shapley import (
    brute_force_shapley,
    cosine_distance,
    knn_shapley,
    knn_shapley_self,
    utility_of_all,
)


def _case(rng: np.random.Generator):
    n = int(rng.integers(1, 9))  # N <= 8
    k = int(rng.integers(1, 7))  # often N < K
    dim = int(rng.integers(1, 4))
    classes = int(rng.integers(2, 4))
    n_test = int(rng.integers(1, 4))
    train_x = rng.normal(size=(n, dim))
    test_x = rng.normal(size=(n_test, dim))
    if rng.random() < 0.2:  # ties in distance: duplicated training points
        train_x[-1] = train_x[0]
    return train_x, rng.integers(0, classes, n), test_x, rng.integers(0, classes, n_test), k


def test_closed_form_equals_brute_force_on_200_cases():
    rng = np.random.default_rng(20190101)
    n_below_k = 0
    for _ in range(200):
        tx, ty, qx, qy, k = _case(rng)
        n_below_k += len(tx) < k
        fast = knn_shapley(tx, ty, qx, qy, k=k)
        slow = brute_force_shapley(tx, ty, qx, qy, k=k)
        np.testing.assert_allclose(fast, slow, atol=1e-12)
        # efficiency: values add up to U(D) - U(∅), with U(∅) = 0
        assert fast.sum() == pytest.approx(utility_of_all(tx, ty, qx, qy, k=k), abs=1e-12)
    assert n_below_k >= 20  # the N < K branch was really exercised


def test_self_valuation_is_leave_self_out():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 2)).astype(np.float32)
    y = rng.integers(0, 2, 6)
    fast = knn_shapley_self(x, y, k=3)
    expected = np.zeros(6)
    for j in range(6):
        keep = [i for i in range(6) if i != j]
        v = brute_force_shapley(x[keep], y[keep], x[j : j + 1], y[j : j + 1], k=3, distance=cosine_distance)
        expected[keep] += v
    np.testing.assert_allclose(fast, expected / 6, atol=1e-6)


def test_mislabelled_points_get_low_values():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-2, 1, (100, 2)), rng.normal(2, 1, (100, 2))])
    y = np.array([0] * 100 + [1] * 100)
    flipped = rng.choice(200, 20, replace=False)
    y[flipped] = 1 - y[flipped]
    v = knn_shapley_self(x, y, k=5, distance=lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    lowest = set(np.argsort(v)[:20].tolist())
    assert len(lowest & set(flipped.tolist())) >= 15
