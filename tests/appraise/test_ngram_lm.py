"""Kneser-Ney reference model: proper distributions, and perplexity lift follows the domain."""

from __future__ import annotations

import numpy as np
import pytest

from ciyuan.appraise.ngram_lm import KneserNeyLM, perplexity_lift


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_history_gives_a_distribution(order):
    rng = np.random.default_rng(order)
    seqs = [rng.integers(0, 6, rng.integers(0, 12)).tolist() for _ in range(30)]
    lm = KneserNeyLM(order, vocab_size=6).fit(seqs)
    for history in ([], [0], [1, 2], [5, 5], [2, 4, 1], [0, 0, 0]):
        assert lm.prob_table(history).sum() == pytest.approx(1.0, abs=1e-9)
    assert lm.perplexity(seqs) < 7  # better than uniform over 6 tokens + end


def test_more_data_lowers_perplexity_on_the_same_text():
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(0, 50, 30) % (1 + rng.integers(1, 50))) for _ in range(200)]
    small = KneserNeyLM(3, 50).fit(seqs[:20]).perplexity(seqs[150:])
    large = KneserNeyLM(3, 50).fit(seqs[:150]).perplexity(seqs[150:])
    assert large < small


def test_each_domain_lifts_its_own_evaluation_text_more(real_corpora):
    docs, real, split = real_corpora
    legal_train, legal_eval = split(docs["legal"])
    log_train, log_eval = split(docs["changelog"])
    baseline, _ = split(docs["general"])
    budget = 60_000  # equal token budgets for both datasets and the baseline-only model

    def lift(data, ev):
        return perplexity_lift(baseline, data, ev, token_budget=budget, seeds=(0, 1, 2))["relative_drop"]

    legal_on_legal, log_on_legal = lift(legal_train, legal_eval), lift(log_train, legal_eval)
    log_on_log, legal_on_log = lift(log_train, log_eval), lift(legal_train, log_eval)
    assert legal_on_legal["mean"] > log_on_legal["mean"], (real, legal_on_legal, log_on_legal)
    assert log_on_log["mean"] > legal_on_log["mean"], (real, log_on_log, legal_on_log)
    assert legal_on_legal["low"] > 0 and log_on_log["low"] > 0
