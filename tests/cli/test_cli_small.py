"""Small CLI promises a user meets first: JSON usage errors, a "serving" line that can be trusted,
a busy port named, intervals at a readable precision, and an install without packaging warnings."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ciyuan.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


def _env(home: Path) -> dict:
    env = dict(os.environ, CIYUAN_HOME=str(home))
    env.pop("CIYUAN_DATABASE_URL", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["ingest", "--bogus"], ["ingest"], ["ledger", "deposit"]])
def test_usage_error_with_json_is_json(args: list[str], tmp_path: Path) -> None:
    r = _cli(*args, "--json", env=_env(tmp_path / "h"))
    assert r.returncode == 2, r.stdout + r.stderr
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "usage"
    assert err["hint"].startswith("see: ") and err["hint"].endswith("--help")
    assert "╭" not in r.stdout + r.stderr  # no Rich box


def test_serving_is_said_only_when_the_port_accepts(tmp_path: Path) -> None:
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "ciyuan.cli.main", "serve", "--port", str(port), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(tmp_path / "h"))
    try:
        ready, _, _ = select.select([p.stdout], [], [], 90)  # a bounded wait for its first line
        assert ready, "serve said nothing in 90 s"
        line = p.stdout.readline()
        data = json.loads(line)
        assert data["serving"] == f"http://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=1):  # no retry: it must accept now
            pass
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_a_busy_port_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _cli("quickstart", "--port", str(port), "--home", str(tmp_path / "h"), "--json", env=_env(tmp_path / "h"))
    assert r.returncode == 2
    err = json.loads(r.stdout)["error"]
    assert f"port {port}" in err["message"] and "--port" in err["hint"]
    assert not (tmp_path / "h" / "datasets").exists()  # refused before building the demo


def test_interval_text_is_rounded() -> None:
    from ciyuan.cli.appraise_cmds import ci_text

    assert ci_text({"mean": 0.1, "low": 0.012345678901234, "high": 0.2345678901234, "n": 3}) == \
        "95% CI [0.0123, 0.2346]"
    assert "no interval" in ci_text({"mean": 0.1, "low": None, "high": None, "n": 1})


def test_pyproject_builds_without_packaging_warnings() -> None:
    """setuptools warned four times per install about the licence table; the config must read cleanly."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), str(ROOT / "pyproject.toml"))
    assert [str(w.message) for w in caught] == []


def test_settle_defaults_to_this_month_and_says_when_there_are_no_sales(tmp_path: Path) -> None:
    r = _cli("settle", env=_env(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    assert "no sales from" in r.stdout and "--from" in r.stdout
    data = json.loads(_cli("settle", "--json", env=_env(tmp_path / "h")).stdout)
    assert data["statements"] == [] and data["period"]["from"].endswith("-01")


def test_reports_are_written_in_chinese_or_english(tmp_path: Path) -> None:
    """The CLI writes both HTML reports in the language asked for (or the locale's)."""
    from ciyuan.data import EVAL_TEXT, MAINTENANCE_LOGS

    env = _env(tmp_path / "h")
    assert _cli("ingest", str(MAINTENANCE_LOGS), "--dataset", "d", "--rename", "lang=language", "--json",
                env=env).returncode == 0
    cur = json.loads(_cli("curate", "d", "--steps", "normalize,exact_dedup", "--json", env=env).stdout)
    ref = f"d@{cur['version'][:12]}"
    zh, en = tmp_path / "zh.html", tmp_path / "en.html"
    assert _cli("report", ref, "--out", str(zh), "--lang", "zh", env=env).returncode == 0
    assert _cli("report", ref, "--out", str(en), env=dict(env, LANG="en_US.UTF-8")).returncode == 0
    assert "清洗报告" in zh.read_text(encoding="utf-8") and "Curation report" not in zh.read_text(encoding="utf-8")
    assert "Curation report" in en.read_text(encoding="utf-8")
    loc = tmp_path / "loc.html"
    assert _cli("report", ref, "--out", str(loc), env=dict(env, LANG="zh_CN.UTF-8")).returncode == 0
    assert "清洗报告" in loc.read_text(encoding="utf-8")
    bad = _cli("report", ref, "--out", str(loc), "--lang", "fr", "--json", env=env)
    assert bad.returncode == 2 and "--lang zh" in json.loads(bad.stdout)["error"]["hint"]
    ap = tmp_path / "ap.html"
    r = _cli("appraise", ref, "--eval", str(EVAL_TEXT), "--report", str(ap), "--lang", "zh", "--json", env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "<title>评估报告" in ap.read_text(encoding="utf-8")
