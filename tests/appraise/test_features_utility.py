"""Hashed n-gram features and the logistic-regression learning curve."""

from __future__ import annotations

import numpy as np

from ciyuan.appraise.features import HashedNgrams, words
from ciyuan.appraise.stats import mean_ci
from ciyuan.appraise.utility_labelled import LogisticRegression, learning_curve


def test_chinese_words_are_characters_and_features_are_deterministic():
    assert words("数据 Tokens 2024年") == ["数", "据", "tokens", "2024", "年"]
    fx = HashedNgrams(dim=256)
    a = fx.dense(["今天天气很好", "the cat sat", ""])
    b = fx.dense(["今天天气很好", "the cat sat", ""])
    assert a.shape == (3, 256) and np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-5)
    assert not a[2].any()
    # similar texts are closer than different ones
    c = fx.dense(["今天天气很好啊", "股票市场大跌"])
    assert a[0] @ c[0] > a[0] @ c[1]


def test_logistic_regression_separates_and_curve_rises():
    rng = np.random.default_rng(0)
    topics = {0: "stock market shares price trading bank", 1: "football match goal team player coach"}
    texts, labels = [], []
    for i in range(300):
        lab = i % 2
        vocab = topics[lab].split() + ["the", "a", "of", "and", "in"]
        texts.append(" ".join(rng.choice(vocab, 12)))
        labels.append(lab)
    x = HashedNgrams(dim=512).dense(texts)
    y = np.array(labels)
    model = LogisticRegression().fit(x[:200], y[:200])
    assert model.accuracy(x[200:], y[200:]) > 0.95
    out = learning_curve(x, y, seeds=(0, 1, 2), fractions=(0.02, 1.0))
    assert out["lift"]["mean"] > 0.3
    assert out["lift"]["low"] > 0
    assert out["curve"][-1]["mean"] >= out["curve"][0]["mean"]


def test_mean_ci():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci["mean"] == 2.0 and ci["low"] < 2.0 < ci["high"]
    assert mean_ci([5.0])["low"] is None


def test_dual_and_primal_fits_agree():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 20)).astype(np.float32) / 5
    y = rng.integers(0, 3, 60)
    primal = LogisticRegression(iters=40).fit(x, y)  # n > d
    padded = np.concatenate([x, np.zeros((60, 80), np.float32)], axis=1)  # d > n: the Gram form
    dual = LogisticRegression(iters=40).fit(padded, y)
    np.testing.assert_allclose(dual.w_[:20], primal.w_, atol=1e-5)
    assert not dual.w_[20:].any()
