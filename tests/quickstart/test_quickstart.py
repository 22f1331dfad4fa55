"""`make run`'s job, as a user meets it: `ciyuan quickstart` builds the demo exchange and serves it.

Runs the real command in a child process on a free loopback port, twice on the same home (the
second run must reuse what the first made), and reads the catalog page and API like a browser.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_quickstart(home: Path, port: int) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, CIYUAN_HOME=str(home), COLUMNS="200")
    env.pop("CIYUAN_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ciyuan.cli.main", "quickstart", "--home", str(home), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"quickstart exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        raise AssertionError("quickstart did not start serving within 10 minutes")
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_quickstart_serves_catalog_with_sample_tokens_and_price(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first_keys: list[str] = []
    for _run in range(2):
        proc, url = _run_quickstart(home, _free_port())
        try:
            listings = httpx.get(f"{url}/v1/listings", timeout=10).json()["items"]
            sample = [x for x in listings if x["dataset"] == "sample-maintenance"]
            assert len(sample) == 1, listings  # the second run reuses the listing, no duplicate
            tokens, price = sample[0]["tokens"], sample[0]["price_per_mtok"]
            assert tokens > 100_000
            page = httpx.get(f"{url}/", timeout=10).text
            assert "sample-maintenance" in page
            assert f"{tokens:,}" in page, "the catalog page shows the listing's token count"
            assert price in page
            # the demo provider's declared card reaches the dataset page, and its licence the appraisal
            detail = httpx.get(f"{url}/listings/{sample[0]['id']}", timeout=10).text
            assert "Maintenance records of wind farms" in detail and "CC-BY-4.0" in detail
            bal = httpx.get(f"{url}/v1/balance", headers={"Authorization": "Bearer invalid"}, timeout=10)
            assert bal.status_code == 401
        finally:
            out = _stop(proc)
        keys = re.findall(r"cyk_[A-Za-z0-9_-]{20,}", out)
        assert len(keys) == 3, out
        assert not set(keys) & set(first_keys)  # fresh keys each run
        first_keys = keys
    # the keys printed by the last run work against the API
    proc, url = _run_quickstart(home, _free_port())
    try:
        r = httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {first_keys[1]}"}, timeout=10)
        assert r.status_code == 200, r.text
        cny = [b for b in r.json()["balances"] if b["currency"] == "CNY" and b["kind"] == "buyer_balance"]
        assert len(cny) == 1 and cny[0]["available"] == 100_000  # the 1,000.00 CNY deposit, in fen, untouched
    finally:
        _stop(proc)
