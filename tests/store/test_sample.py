"""The bundled sample must be reproducible from its script and contain what its README promises."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ciyuan.data import BAD_LINES, BENCHMARK, EVAL_TEXT, SAMPLE_DIR, planted, sample_files
from ciyuan.ingest.readers import Bad, Good, read_source

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_sample.py"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def logs() -> list[dict]:
    return _rows(SAMPLE_DIR / "maintenance_logs.jsonl")


@pytest.fixture(scope="module")
def qas() -> list[dict]:
    return _rows(SAMPLE_DIR / "qa_pairs.jsonl")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generator_reproduces_committed_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, capture_output=True)
    made = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in SAMPLE_DIR.iterdir())
    assert made == committed
    for name in made:
        assert _sha(tmp_path / name) == _sha(SAMPLE_DIR / name), f"{name} differs; rerun scripts/make_sample.py"


def test_size_and_counts(logs: list[dict], qas: list[dict]) -> None:
    total = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir())
    assert total < 5 * 1024 * 1024
    assert 2500 <= len(logs) + len(qas) <= 3500
    assert len(sample_files()) == 3 and all(p.exists() for p in sample_files())
    assert BAD_LINES not in sample_files(include_bad=False)


def test_fields_and_both_languages(logs: list[dict], qas: list[dict]) -> None:
    log_fields = {"id", "text", "lang", "domain", "site", "equipment", "date", "severity", "category"}
    qa_fields = {"id", "instruction", "response", "text", "lang", "domain", "label"}
    assert all(log_fields <= r.keys() for r in logs)
    assert all(qa_fields <= r.keys() for r in qas)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]) for r in logs)
    assert all(isinstance(r["severity"], float) for r in logs)
    assert all(r["text"] == f"{r['instruction']}\n\n{r['response']}" for r in qas)
    for rows in (logs, qas):
        assert {r["lang"] for r in rows} == {"en", "zh"}
        assert len({r["id"] for r in rows}) == len(rows)
    zh = [r["text"] for r in logs if r["lang"] == "zh"]
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", t)) for t in zh) > 0.9 * len(zh)
    assert len({r["label"] for r in qas}) >= 10


def _id_ok(s: str) -> bool:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return s[17] == "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], weights, strict=True)) % 11]


def _luhn_ok(s: str) -> bool:
    digits = [int(c) for c in reversed(s)]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)) % 10 == 0


def test_planted_pii_is_present_and_valid(logs: list[dict]) -> None:
    key = planted()
    values = key["pii_values"]
    assert {k: len(v) for k, v in values.items()} == {
        "email": 24, "cn_mobile": 24, "cn_resident_id": 12, "bank_card": 12, "ipv4": 16, "ipv6": 8, "intl_phone": 12,
    }  # fmt: skip
    text = "\n".join(r["text"] for r in logs)
    for kind, vals in values.items():
        for v in vals:
            assert text.count(v) == 1, (kind, v)
    assert all(re.fullmatch(r"[\w.]+@[\w.-]+\.(com|org|net)", v) for v in values["email"])
    assert all(re.fullmatch(r"1[3-9]\d{9}", v.replace("+86", "").replace(" ", "")) for v in values["cn_mobile"])
    assert all(re.fullmatch(r"\d{17}[\dX]", v) and _id_ok(v) for v in values["cn_resident_id"])
    assert all(_luhn_ok(v.replace(" ", "")) for v in values["bank_card"])
    assert all(ipaddress.ip_address(v).version == 4 for v in values["ipv4"])
    assert all(ipaddress.ip_address(v).version == 6 for v in values["ipv6"])
    assert all(v.startswith("+") and not v.startswith("+86") for v in values["intl_phone"])
    pii_ids = {e["id"] for k, v in key.items() if k.startswith("pii:") for e in v}
    assert len(pii_ids) == 108


def test_planted_duplicates_low_quality_and_benchmark_leak(logs: list[dict], qas: list[dict]) -> None:
    key = planted()
    by_id = {r["id"]: r for r in logs + qas}
    assert len(key["exact_duplicate"]) == 20 and len(key["near_duplicate"]) == 26
    for e in key["exact_duplicate"]:
        assert by_id[e["id"]]["text"] == by_id[e["copy_of"]]["text"]
    for e in key["near_duplicate"]:
        a, b = by_id[e["id"]]["text"], by_id[e["copy_of"]]["text"]
        assert a != b and abs(len(a) - len(b)) < 20
    low = [e for k, v in key.items() if k.startswith("low_quality:") for e in v]
    assert len(low) == 29 and all(by_id[e["id"]]["category"] == "unknown" for e in low)
    bench = _rows(BENCHMARK)
    texts = {r["text"] for r in qas}
    leaked = [b for b in bench if any(b["question"] in t for t in texts)]
    assert sorted(b["id"] for b in leaked) == sorted(e["benchmark_id"] for e in key["benchmark_leak"])
    assert len(leaked) == 2
    eval_text = EVAL_TEXT.read_text(encoding="utf-8")
    assert len(eval_text) > 10_000
    assert not any(r["text"] in eval_text for r in logs if len(r["text"]) > 40)


def test_reader_quarantines_exactly_the_bad_lines() -> None:
    items = list(read_source(str(BAD_LINES)))
    bad_lines = [i.line for i in items if isinstance(i, Bad)]
    assert bad_lines == [b["line"] for b in planted()["bad_lines"]] and len(bad_lines) == 13
    assert sum(isinstance(i, Good) for i in items) == 3
    for path in sample_files(include_bad=False):
        assert all(isinstance(i, Good) for i in read_source(str(path)))
