"""Decontamination: reject records sharing long n-grams with a benchmark, so evals stay honest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ciyuan.curate.steps.base import TEXT, Param, Step
from ciyuan.curate.text import token_hashes, window_hashes
from ciyuan.errors import InvalidInput


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def load_benchmark(path: Path, field: str = "") -> list[str]:
    """Texts of a benchmark file: JSONL (``field`` or every string value) or plain text (one a line)."""
    if not path.is_file():
        raise InvalidInput(
            f"decontaminate: benchmark file {path} not found",
            hint="set benchmark: to a JSONL or text file of evaluation examples",
        )
    texts: list[str] = []
    with path.open(encoding="utf-8") as fh:
        if path.suffix in (".jsonl", ".json", ".ndjson"):
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(
                        f"decontaminate: {path} line {n} is not JSON ({exc.msg})",
                        hint="use one JSON object a line, or a .txt file",
                    ) from None
                texts.extend(_strings(obj.get(field) if field and isinstance(obj, dict) else obj))
        else:
            texts = [ln for ln in fh.read().splitlines() if ln.strip()]
    return texts


class Decontaminate(Step):
    name = "decontaminate"
    modalities = TEXT
    kind = "filter"
    description = "Reject records sharing n-grams (13 words / 20 CJK characters) with a benchmark file."
    params = (
        Param("benchmark", "str", "", "Path to the benchmark: JSONL (one example a line) or text (one a line)."),
        Param("field", "str", "", "JSONL field holding the text; empty = every string value."),
        Param("ngram", "int", 13, "N-gram size in words for spaced text."),
        Param("cjk_ngram", "int", 20, "N-gram size in characters for Chinese/Japanese text."),
        Param("min_matches", "int", 1, "Reject when at least this many of a record's n-grams occur in the benchmark."),
    )

    def setup(self) -> None:
        if not self.benchmark:
            raise InvalidInput(
                "decontaminate needs a benchmark file",
                hint="give it in the recipe: {decontaminate: {benchmark: evals.jsonl}}",
            )
        path = Path(self.benchmark).expanduser()
        texts = load_benchmark(path, self.field)
        self.benchmark_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        grams = [window_hashes(t, n) for t, n in token_hashes(texts, self.ngram, self.cjk_ngram) if len(t) >= n]
        self._grams = np.unique(np.concatenate(grams)) if grams else np.zeros(0, dtype=np.uint64)
        self.stats.extra["benchmark_ngrams"] = int(len(self._grams))

    def config(self) -> dict:
        # The file's hash is part of the recipe: another benchmark file must give another version id.
        return {**super().config(), "benchmark_sha256": self.benchmark_sha256}

    def process(self, record: dict) -> None:
        text = record.get("text") or ""
        if not text or not len(self._grams):
            return
        toks, n = token_hashes([text], self.ngram, self.cjk_ngram)[0]
        if len(toks) < n:
            return
        hits = int(np.isin(window_hashes(toks, n), self._grams, assume_unique=False).sum())
        if hits >= self.min_matches:
            self.stats.counters["ngram_hits"] += hits
            self.reject(
                record,
                "benchmark_overlap",
                f"decontaminate: {hits} {n}-gram(s) shared with {Path(self.benchmark).name}",
            )
