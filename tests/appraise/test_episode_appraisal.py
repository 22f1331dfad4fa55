"""Appraisal of robot-episode versions: a behaviour-cloning policy's learning curve against the no-data
baselines and the value of each demonstration, in the appraisal JSON and the report in both languages.

LeRobot v2.1 folders written by tests/ingest/episode_gen.py (synthetic arm kinematics, H.264 cameras)
and imported by the real ingest; some demonstrations have their actions replaced by noise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

import episode_gen  # noqa: E402

from ciyuan.appraise import engine, report  # noqa: E402
from ciyuan.appraise.episodes import Episode, Stats, shapley  # noqa: E402

NOISY = (3, 9, 14, 20)
LENGTHS = (30,) * 24


def _version(tmp_path: Path, name: str, noisy=NOISY, lengths=LENGTHS):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    root = episode_gen.lerobot_v21(tmp_path / name, lengths=lengths, defects={"noise_actions": noisy})
    out = ingest([str(root)], name)
    assert out["quarantined"] == 0, out
    return resolve(f"{name}@{out['version'][:12]}")


def test_policy_curve_falls_and_noisy_demonstrations_value_lowest(home, tmp_path) -> None:
    v = _version(tmp_path, "arm")
    ap = engine.appraise(v.ref, seeds=(0, 1, 2, 3, 4))
    u = ap["utility"]["episode"]
    assert u["episodes"] == 24 and u["state_dim"] == 6 and u["action_dim"] == 6 and u["frames"] == 720
    curve = [c["mean"] for c in u["curve"]]
    base = u["baseline_mean_action"]["mean"]
    # more demonstrations, a better policy; with all of them well below the state-blind baseline
    assert curve[-1] < curve[0] and curve[-1] < 0.7 * base and curve[-1] < u["baseline_zero_action"]["mean"]
    assert u["relative_drop"]["low"] > 0 and ap["utility_lift_used"] == u["relative_drop"]
    ev = ap["episode_values"]
    index_of = {r["id"]: r["meta"]["episode"]["episode_index"] for r in v.iter_records(columns=["id", "meta"])}
    bottom = [index_of[r["id"]] for r in ev["bottom"][: len(NOISY)]]
    assert sorted(bottom) == sorted(NOISY), ev["bottom"]
    assert all(r["value"] < 0 for r in ev["bottom"][: len(NOISY)])
    assert not {index_of[r["id"]] for r in ev["top"]} & set(NOISY)
    # text measures do not apply to episodes; the price reads the policy's lift
    ind = ap["quality"]["indicators"]
    assert ind["language_consistency"]["applies"] is False and ind["diversity"]["applies"] is False
    assert ap["price"]["modality"] == "episode" and "text" not in ap["utility"] and ap["record_values"] is None
    stored = json.loads((Path(v.location) / "appraisal.json").read_text())
    assert stored["episode_values"]["bottom"] == json.loads(json.dumps(ev["bottom"]))
    en = report.render(ap, "en")
    assert "Robot episodes: what the demonstrations are worth to a policy" in en and "stroke-dasharray" in en
    assert "An episode version" in en and "not applicable (an episode version)" in en
    assert "Learning curve (accuracy" not in en and "language consistency" not in en
    assert "Episodes that help least or hurt" in en and ev["bottom"][0]["id"] in en
    zh = report.render(ap, "zh")
    assert "机器人演示片段：对策略的价值" in zh and "帮助最小或有害的片段" in zh and "不适用（片段版本）" in zh


def test_noise_only_demonstrations_do_not_beat_the_baseline(home, tmp_path) -> None:
    v = _version(tmp_path, "noise", noisy=tuple(range(12)), lengths=(30,) * 12)
    u = engine.appraise(v.ref, seeds=(0, 1, 2))["utility"]["episode"]
    assert u["curve"][-1]["mean"] > 0.9 * u["baseline_mean_action"]["mean"]
    assert u["relative_drop"]["mean"] < 0.1


def test_too_few_episodes_say_why(home, tmp_path) -> None:
    v = _version(tmp_path, "few", noisy=(), lengths=(20, 20, 20))
    ap = engine.appraise(v.ref, seeds=(0,))
    assert ap["utility"]["episode"]["relative_drop"] is None and ap["episode_values"] is None
    assert "Not measured: fewer than 4 episodes" in report.render(ap, "en")


def test_shapley_values_add_up_to_the_utility_of_all() -> None:
    """Permutation marginals telescope: per fold the values sum to U(train) exactly, whatever the
    permutations, so the mean over folds is checkable without sampling error."""
    rng = np.random.default_rng(5)
    eps = [Episode(f"e{i}", *(x.astype(float) for x in episode_gen.arm(i, 12, 10.0))) for i in range(6)]
    eps[2].action = rng.normal(size=eps[2].action.shape)
    st = Stats(eps)
    vals = shapley(st, seed=0, folds=2, permutations=3)
    fold_of = np.random.default_rng(0).permutation(6) % 2
    want = 0.0
    for f in range(2):
        test, train = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        w = st.fit(st.a[train].sum(0)[None], st.b[train].sum(0)[None], np.array([st.n[train].sum()]))
        want += st.zero_mse(test) - float(st.mse(w, test)[0])
    assert np.isclose(vals.sum(), want) and vals[2] == vals.min()
