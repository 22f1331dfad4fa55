import json
import random

import pytest
from corpus import boilerplate_pages, en_prose, zh_prose

from ciyuan.curate.pipeline import run_steps
from ciyuan.curate.steps import describe, make_step, registry
from ciyuan.errors import InvalidInput

REQUIRED = ["normalize", "langid", "quality", "pii", "exact_dedup", "near_dedup", "decontaminate", "length",
            "media_filter", "audio_quality", "caption_length", "media_exact_dedup", "media_near_dedup",
            "episode_task_text", "episode_idle_trim", "episode_filter", "episode_exact_dedup", "episode_near_dedup",
            "episode_stats", "graph_canonical", "graph_dedup", "graph_pii", "shacl_filter"]


def rec(i, text, **meta):
    return {"id": str(i), "text": text, "meta": dict(meta), "tokens": {"cl100k_base": max(1, len(text) // 4)}}


def test_registry_lists_every_step_with_documented_params():
    assert list(registry()) == REQUIRED
    for entry in describe():
        assert entry["description"]
        for p in entry["params"]:
            assert p["name"] and p["type"] and p["help"] and "default" in p


def test_unknown_step_and_parameter_are_clear_errors():
    with pytest.raises(InvalidInput, match="unknown step"):
        make_step("nope")
    with pytest.raises(InvalidInput, match="no parameter"):
        make_step("length", {"min_char": 3})
    with pytest.raises(InvalidInput, match="expected int"):
        make_step("length", {"min_chars": "many"})
    assert make_step("langid", {"languages": "en, zh"}).languages == ["en", "zh"]


def test_normalize_repairs_and_records_change():
    step = make_step("normalize")
    text = "Caf\u00c3\u00a9 \u200bopens\x07  at\t\tnine.\r\n\r\n\r\n\r\nCafe\u0301 closes\u3000late.  "
    out = run_steps([rec(1, text), rec(2, "Already clean.\nTwo lines.")], [step])
    assert out[0]["text"] == "Café opens at nine.\n\nCafé closes late."
    assert out[0]["meta"]["curation"]["changed_by"] == ["normalize"]
    assert out[1]["text"] == "Already clean.\nTwo lines." and "curation" not in out[1]["meta"]
    assert step.stats.changed == 1 and step.stats.kept == 2
    # estimated by character share of the one changed record: its 21 tokens (len // 4) times the share removed
    old, new = len(text), len(out[0]["text"])
    assert step.stats.tokens_removed == round(max(1, old // 4) * (1 - new / old)) > 0


def test_langid_sets_meta_and_filters():
    rng = random.Random(1)
    step = make_step("langid", {"languages": ["zh"], "min_score": 0.5})
    out = run_steps([rec(1, en_prose(rng)), rec(2, zh_prose(rng))], [step])
    assert out[0]["meta"]["language"] == "en" and out[0]["_rejected"]["rule"] == "language_en"
    assert out[1]["meta"]["language"] == "zh" and out[1]["meta"]["language_score"] > 0.5
    assert "_rejected" not in out[1]


@pytest.mark.parametrize("segmenter", ["bigram", "jieba"])
def test_chinese_prose_is_kept_at_the_same_rate_as_english(segmenter):
    rng = random.Random(8)
    records = [rec(f"en{i}", en_prose(rng)) for i in range(150)] + [rec(f"zh{i}", zh_prose(rng)) for i in range(150)]
    steps = [make_step("normalize"), make_step("langid"), make_step("quality", {"cjk_segmenter": segmenter})]
    out = run_steps(records, steps)
    kept = {
        lang: sum(1 for r in out if r["id"].startswith(lang) and "_rejected" not in r) / 150 for lang in ("en", "zh")
    }
    assert kept["en"] >= 0.98 and kept["zh"] >= 0.98, kept
    assert abs(kept["en"] - kept["zh"]) <= 0.02, kept
    assert all(0 <= r["meta"]["quality_score"] <= 1 for r in out)


def test_boilerplate_pages_are_rejected_with_reasons():
    rng = random.Random(9)
    pages = boilerplate_pages(rng, 24)
    step = make_step("quality")
    out = run_steps([rec(i, t) for i, t in enumerate(pages)], [make_step("normalize"), step])
    for r in out:
        assert r["_rejected"]["step"] == "quality", r["text"][:80]
        assert r["_rejected"]["reason"].split(":")[0] in ("gopher", "c4", "fineweb")
    assert sum(step.stats.rejected.values()) == len(pages)
    assert step.stats.tokens_removed == sum(r["tokens"]["cl100k_base"] for r in out)


def test_quality_does_not_reject_chinese_for_lack_of_spaces():
    text = "。".join(["这是一段没有空格的中文文本，讲述了一个小镇的故事" + str(i) for i in range(8)]) + "。"
    step = make_step("quality", {"score_only": True})
    out = run_steps([rec(1, text)], [step])
    failed = out[0]["meta"].get("quality_failed", [])
    assert "gopher_min_words" not in failed and "gopher_mean_word_length" not in failed


def test_quality_thresholds_are_configurable():
    rng = random.Random(2)
    text = en_prose(rng)
    out = run_steps([rec(1, text)], [make_step("quality", {"min_words": 100_000, "max_words": 200_000})])
    assert out[0]["_rejected"]["rule"] == "gopher_min_words"


def test_c4_line_filter_drops_boilerplate_lines():
    rng = random.Random(3)
    text = "Menu\n" + en_prose(rng, 3).replace("\n\n", "\nThis site uses cookies to help us.\n") + "\nShare"
    step = make_step("quality", {"c4_line_filter": True})
    out = run_steps([rec(1, text)], [step])
    assert "cookies" not in out[0]["text"] and "Menu" not in out[0]["text"]
    assert out[0]["meta"]["curation"]["changed_by"] == ["quality"]


def test_length_filters_chars_and_tokens():
    step = make_step("length", {"min_chars": 5, "max_tokens": 10})
    out = run_steps([rec(1, "abc"), rec(2, "x" * 100), rec(3, "hello world")], [step])
    assert [r.get("_rejected", {}).get("rule") for r in out] == ["too_few_chars", "too_many_tokens", None]


def test_decontaminate_against_jsonl_and_text(tmp_path):
    rng = random.Random(5)
    leaked_en, leaked_zh, clean = en_prose(rng), zh_prose(rng), en_prose(rng)
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        json.dumps({"question": leaked_en.split("\n\n")[1], "answer": "42"})
        + "\n"
        + json.dumps({"question": leaked_zh.split("\n\n")[2][:40]})
        + "\n",
        encoding="utf-8",
    )
    step = make_step("decontaminate", {"benchmark": str(bench)})
    out = run_steps([rec(1, leaked_en), rec(2, leaked_zh), rec(3, clean)], [step])
    assert [r.get("_rejected", {}).get("rule") for r in out] == ["benchmark_overlap", "benchmark_overlap", None]
    assert len(step.config()["benchmark_sha256"]) == 64
    txt = tmp_path / "bench.txt"
    txt.write_text(leaked_en.split("\n\n")[0] + "\n", encoding="utf-8")
    out = run_steps([rec(1, leaked_en), rec(3, clean)], [make_step("decontaminate", {"benchmark": str(txt)})])
    assert "_rejected" in out[0] and "_rejected" not in out[1]
    with pytest.raises(InvalidInput, match="not found"):
        make_step("decontaminate", {"benchmark": str(tmp_path / "missing.jsonl")})


def test_rejected_records_pass_later_steps_untouched():
    steps = [make_step("length", {"min_chars": 100}), make_step("pii")]
    out = run_steps([rec(1, "mail x@example.com")], steps)
    assert out[0]["text"] == "mail x@example.com" and out[0]["_rejected"]["step"] == "length"
    assert steps[1].stats.seen == 0


def test_repetition_shares_match_a_direct_count():
    """The one-pass n-gram repetition shares equal a plain dictionary count on random word sequences."""
    import numpy as np

    from ciyuan.curate.steps.quality import _repetition

    rng = random.Random(4)
    for _ in range(300):
        vocab = [("w" * rng.randint(1, 6)) + str(k) for k in range(rng.randint(1, 12))]
        ws = [rng.choice(vocab) for _ in range(rng.randint(0, 80))]
        if rng.random() < 0.3 and ws:  # a pasted repeat
            ws += ws[: rng.randint(1, len(ws))]
        total = sum(map(len, ws)) or 1
        ids = np.array([vocab.index(w) + 1 for w in ws], dtype=np.uint64)
        lens = np.array([len(w) for w in ws], dtype=np.int64)
        got = _repetition(ids, lens, {2, 3, 4}, {5, 6, 7, 8, 9, 10})
        for n in range(2, 11):
            grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
            first: dict[tuple, int] = {}
            count: dict[tuple, int] = {}
            covered = [False] * len(ws)
            for i, g in enumerate(grams):
                count[g] = count.get(g, 0) + 1
                if g in first:
                    covered[i : i + n] = [True] * n
                first.setdefault(g, i)
            if n <= 4:
                best = max(count.values(), default=0)
                want = 0.0
                if best >= 2:
                    g = min((g for g in count if count[g] == best), key=first.get)
                    want = best * sum(map(len, g)) / total
            else:
                want = sum(len(w) for w, c in zip(ws, covered, strict=True) if c) / total
            assert got[n] == pytest.approx(want), (n, ws)
