"""A bounded load of oversized and malformed requests against a real uvicorn server in a child process.

The server's peak resident memory (``VmHWM`` in ``/proc/PID/status``, reset after warm-up through
``clear_refs``) must stay within 100 MB of where it started, and the server must keep answering
good requests between and after the waves. Before the limits, the server buffered every byte of the
unauthenticated uploads, waiting for the rest of the declared 1 GiB (the issue measured
0.32 -> 3.37 GB for one whole 1 GiB POST).

Loopback only; every wave has a fixed count, and every stream gives up after a fixed number of bytes.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
GROWTH_LIMIT = 100 * MiB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _send(port: int, head: bytes, body: bytes = b"", *, chunk: bytes = b"", give_up: int = 0) -> int | None:
    """One raw request: ``head``, then ``body``, then ``chunk`` repeated until the server answers or
    ``give_up`` bytes went out. Returns the status, or None when the server closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head + body)
            sent = 0
            while chunk and sent < give_up and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return None
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def server(home):
    """Accounts, keys and a listing in a fresh home, then ``uvicorn`` serving it in a child process."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.market import accounts, listings
    from ciyuan.store import VersionBuilder

    def setup(s):
        for name, role in [("op", "operator"), ("prov", "provider"), ("alice", "buyer")]:
            accounts.create_account(s, name, role)
        return {n: accounts.create_key(s, n)[1] for n in ("op", "prov", "alice")}

    keys = tx.run(setup)
    b = VersionBuilder("corpus", made_by={"tool": "tests"})
    for i in range(50):
        b.add({"id": f"r{i}", "text": f"record {i}", "meta": {"score": i / 50}, "tokens": {"cl100k_base": 10}})
    listing = listings.publish(b.commit().ref, provider="prov", price_per_mtok="12.00", sample=0)
    alice = tx.run(lambda s: accounts.get_account(s, "alice"))
    tx.run(lambda s: ledger.deposit(s, "dep", alice.id, 100_000, "CNY"))
    port = _free_port()
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "ciyuan.api.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "CIYUAN_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # wait for startup (not a timing assertion)
            assert proc.poll() is None, (home / "server.log").read_text()
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield proc, port, url, keys, listing
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_bad_requests_keep_the_server_small_and_answering(server):
    proc, port, url, keys, listing = server
    alice = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['alice']}"}, timeout=60)

    def healthy() -> None:
        assert alice.get("/v1/health").status_code == 200
        q = alice.post("/v1/quotes", json={"listing_id": listing["id"]})
        assert q.status_code == 201, q.text

    for _ in range(5):  # warm up: every code path a good request takes is loaded before the baseline
        healthy()
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = _status_kib(proc.pid, "VmRSS") * 1024

    json_auth = {"Authorization": f"Bearer {keys['alice']}", "Content-Type": "application/json"}
    zeros = b"0" * (64 * 1024)
    frame = f"{len(zeros):x}\r\n".encode() + zeros + b"\r\n"
    deep = b"[" * 500_000 + b"]" * 500_000  # 1,000,000 bytes: under the cap, 500,000 levels deep
    lid = listing["id"].encode()
    waves: dict[str, tuple[int, list[tuple[bytes, dict]]]] = {
        # (expected status, [(head, kwargs for _send)])
        "unauthenticated 1 GiB upload, 256 MiB sent": (401, [
            (_head("POST", "/v1/quotes", {"Content-Type": "application/json", "Content-Length": str(1 << 30)}),
             {"chunk": zeros, "give_up": 256 * MiB})
        ] * 4),
        "declared 1 GiB with a key": (413, [
            (_head("POST", "/v1/quotes", {**json_auth, "Content-Length": str(1 << 30)}),
             {"chunk": zeros, "give_up": 256 * MiB})
        ] * 8),
        "endless chunked body with a key": (413, [
            (_head("POST", "/v1/quotes", {**json_auth, "Transfer-Encoding": "chunked"}),
             {"chunk": frame, "give_up": 256 * MiB})
        ] * 8),
        "deeply nested JSON": (422, [
            (_head("POST", "/v1/quotes", {**json_auth, "Content-Length": str(len(deep))}), {"body": deep})
        ] * 16),
        "huge numbers": (422, [
            (_head("POST", "/v1/quotes", {**json_auth, "Content-Length": str(len(b))}), {"body": b})
            for b in [b'{"listing_id": "' + lid + b'", "selection": {"token_budget": 1e400}}',
                      b'{"listing_id": "' + lid + b'", "selection": {"token_budget": ' + b"9" * 4000 + b"}}",
                      b'{"listing_id": "' + lid + b'", "selection": {"filter": {"field": "tokens", '
                      b'"op": "ge", "value": NaN}}}',
                      b'{"listing_id": "' + lid + b'", "selection": {"filter": {"field": "tokens", '
                      b'"op": "in", "value": [' + b"1e999," * 100_000 + b"1]}}}"] * 4
        ]),
        "bad UTF-8": (422, [
            (_head("POST", "/v1/quotes", {**json_auth, "Content-Length": str(len(b))}), {"body": b})
            for b in [b'{"listing_id": "\xff\xfe\xfd"}', b'{"listing_id": "\xed\xa0\x80"}', b"\xc3" * 500_000] * 4
        ]),
    }
    peaks: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name, (want, requests) in waves.items():
            got = list(pool.map(lambda r: _send(port, r[0], **r[1]), requests))
            assert proc.poll() is None, (name, "the server died")
            peaks[name] = _status_kib(proc.pid, "VmHWM") * 1024 - base
            growth = f"peak RSS grew {peaks[name] / MiB:.1f} MiB over {base / MiB:.1f} MiB"
            assert got == [want] * len(requests), (name, got, growth)
            assert peaks[name] < GROWTH_LIMIT, (name, growth)
            healthy()
    peak = _status_kib(proc.pid, "VmHWM") * 1024
    print({k: f"{v / MiB:.1f} MiB" for k, v in peaks.items()}, f"base {base / MiB:.1f} MiB")
    assert peak - base < GROWTH_LIMIT, (peak - base) / MiB
    healthy()
