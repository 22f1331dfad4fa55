"""Limits before work, over real HTTP (uvicorn on loopback, SQLite and PostgreSQL).

The key is checked before a body is read, bodies are capped (413) before parsing, every number is
range-checked (422 naming the field), JSON is strict, and expiry and key revocation are safe.
"""

from __future__ import annotations

import dataclasses
import json
import select
import socket
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import update

from ciyuan.config import settings
from ciyuan.db import tx
from ciyuan.ledger import ledger
from ciyuan.ledger.tables import LedgerAccountRow
from ciyuan.market import accounts

MiB = 1024 * 1024


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=60)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of one HTTP/1.1 response read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response; got {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, json.loads(rest[:length] or b"{}")


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_unauthenticated_huge_post_is_401_without_reading_the_body(mkt):
    """Headers announce 1 GiB and no byte of it is sent: the 401 must come from the headers alone."""
    with _connect(mkt.url) as sock:
        sock.sendall(_head("POST", "/v1/quotes", {"Content-Type": "application/json", "Content-Length": str(1 << 30)}))
        status, headers, body = _read_response(sock)
    assert status == 401, body
    assert body["error"]["code"] == "unauthenticated" and body["error"]["hint"]
    assert headers.get("www-authenticate") == "Bearer"
    assert headers.get("connection") == "close"  # the unread body is dropped with the connection


def test_declared_oversized_body_is_413_before_reading(mkt):
    auth = {"Authorization": f"Bearer {mkt.keys['prov']}", "Content-Type": "application/json"}
    with _connect(mkt.url) as sock:
        sock.sendall(_head("POST", "/v1/listings", {**auth, "Content-Length": str(64 * MiB)}))
        status, headers, body = _read_response(sock)
    assert status == 413, body
    assert body["error"]["code"] == "body_too_large" and "1,048,576" in body["error"]["message"]
    assert "max_body_bytes" in body["error"]["hint"]
    assert headers.get("connection") == "close"
    # a route that never reads a body answers as usual, and closes instead of draining 1 GiB it did not want
    with _connect(mkt.url) as sock:
        sock.sendall(_head("POST", "/v1/nowhere", {"Content-Type": "application/json", "Content-Length": str(1 << 30)}))
        status, headers, body = _read_response(sock)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert headers.get("connection") == "close"


def _stream_chunked(url: str, path: str, headers: dict[str, str], give_up: int) -> tuple[int, dict | None]:
    """Send an endless chunked body until the server answers; (bytes sent, answer or None)."""
    sent = 0
    chunk = b"[" + b"0," * 8191 + b"0]"  # 16 KiB of valid-looking JSON, forever
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with _connect(url) as sock:
        sock.sendall(_head("POST", path, {**headers, "Transfer-Encoding": "chunked"}))
        while sent < give_up:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        try:
            status, _, body = _read_response(sock)
        except (AssertionError, ConnectionResetError, TimeoutError):
            return sent, None
    return sent, {"status": status, **body}


def test_streamed_body_is_cut_at_the_cap(mkt):
    """A chunked body with no length: counted as it arrives and answered 413 once past 1 MiB."""
    auth = {"Authorization": f"Bearer {mkt.keys['alice']}", "Content-Type": "application/json"}
    sent, answer = _stream_chunked(mkt.url, "/v1/quotes", auth, give_up=64 * MiB)
    assert answer is not None and answer["status"] == 413, (sent, answer)
    assert answer["error"]["code"] == "body_too_large"
    assert sent < 16 * MiB  # the server stopped reading near the cap, not at the end of our stream
    assert mkt.client(mkt.keys["alice"]).get("/v1/me").status_code == 200  # and keeps serving


def test_body_cap_is_a_setting(home):
    """``max_body_bytes`` moves the cap: 2,000 bytes pass to validation under 4,096 and are 413 under 1,000."""
    from ciyuan.api.app import create_app

    body = {"name": "x" * 1900, "role": "buyer"}
    big = dataclasses.replace(settings(), max_body_bytes=4096)
    small = dataclasses.replace(settings(), max_body_bytes=1000)
    _, key = tx.run(lambda s: (accounts.create_account(s, "op", "operator"), accounts.create_key(s, "op"))[1])
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(big)) as c:
        r = c.post("/v1/accounts", json=body, headers=headers)
        assert r.status_code == 422 and "name" in r.json()["error"]["message"]  # parsed, then refused by the schema
    with TestClient(create_app(small)) as c:
        r = c.post("/v1/accounts", json=body, headers=headers)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_settings_refuse_a_limit_that_is_not_positive(home, monkeypatch):
    import pytest

    from ciyuan.config import load_settings
    from ciyuan.errors import InvalidInput

    monkeypatch.setenv("CIYUAN_MAX_BODY_BYTES", "-5")
    with pytest.raises(InvalidInput, match="max_body_bytes"):
        load_settings()
    monkeypatch.setenv("CIYUAN_MAX_BODY_BYTES", "2048")
    assert load_settings().max_body_bytes == 2048


def test_huge_numbers_are_422_naming_the_field(mkt):
    """``decimal.Overflow`` answered 500 for these: search, publish price, tier price, deposit amount."""
    anon = mkt.client()
    r = anon.get("/v1/listings", params={"min_price": "1e999999999"})
    assert r.status_code == 422 and "min_price" in r.json()["error"]["message"], r.text
    r = anon.get("/v1/listings", params={"max_price": "-1e999999999"})
    assert r.status_code == 422 and "max_price" in r.json()["error"]["message"], r.text
    r = anon.get("/v1/listings", params={"min_price": "1e-999999999"})  # a billion-digit fraction before
    assert r.status_code == 422 and "decimals" in r.json()["error"]["message"], r.text

    prov = mkt.client(mkt.keys["prov"])
    r = prov.post("/v1/listings", json={"dataset": mkt.version.ref, "price_per_mtok": "1e999999999"})
    assert r.status_code == 422 and "price_per_mtok" in r.json()["error"]["message"], r.text
    tiers = [{"from_tokens": 1000, "price_per_mtok": "1e999999999"}]
    r = prov.post("/v1/listings", json={"dataset": mkt.version.ref, "price_per_mtok": "12", "tiers": tiers})
    assert r.status_code == 422 and "tier 2 price_per_mtok" in r.json()["error"]["message"], r.text

    op = mkt.client(mkt.keys["op"])
    r = op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1e999999999"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("amount"), r.text
    assert op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1e2"}).status_code == 201


def test_a_ledger_total_past_64_bits_is_a_clear_422(mkt):
    """A buyer whose credits are near 2^63: the next deposit is refused by name, not a 500 (SQLite) or DataError."""
    op = mkt.client(mkt.keys["op"])
    assert op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1.00"}).status_code == 201
    buyer = ledger.account_id(ledger.BUYER, mkt.accounts["alice"].id, "CNY")
    # reaching 2^63 honestly takes 9,224 deposits of the 10^13 CNY maximum: set the running total instead
    tx.run(lambda s: s.execute(update(LedgerAccountRow).where(LedgerAccountRow.id == buyer).values(
        credits_posted=ledger.INT64_MAX - 100)))
    assert op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1.00"}).status_code == 201  # fits
    r = op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "0.01"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "ledger_overflow" and buyer in err["message"] and "64-bit" in err["message"]
    assert tx.run(lambda s: ledger.balance(s, ledger.BUYER, mkt.accounts["alice"].id, "CNY")).credits_posted == (
        ledger.INT64_MAX
    )


def test_key_expiry_with_a_utc_offset_is_kept_exactly(mkt):
    """``+08:00`` was dropped on SQLite, so a key meant to have expired an hour ago lived 7 more hours."""
    op = mkt.client(mkt.keys["op"])
    cst = timezone(timedelta(hours=8))
    past = (datetime.now(UTC) - timedelta(hours=1)).astimezone(cst).replace(microsecond=0)
    r = op.post("/v1/keys", json={"account": "bob", "expires": past.isoformat()})
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) == past
    r2 = mkt.client(r.json()["key"]).get("/v1/me")
    assert r2.status_code == 401 and "expired" in r2.json()["error"]["message"]
    future = (datetime.now(UTC) + timedelta(hours=1)).astimezone(cst).replace(microsecond=0)
    r = op.post("/v1/keys", json={"account": "bob", "expires": future.isoformat()})
    assert mkt.client(r.json()["key"]).get("/v1/me").status_code == 200
    listed = tx.run(lambda s: accounts.list_keys(s, "bob"))
    assert {k["expires_at"] for k in listed if k["expires_at"]} == {past, future}


class _JsonText:
    """Posts raw text as ``application/json`` (httpx's ``json=`` would refuse NaN or reformat numbers)."""

    def __init__(self, client):
        self.client = client

    def post(self, path: str, content: str | bytes):
        return self.client.post(path, content=content, headers={"Content-Type": "application/json"})


def test_non_finite_and_out_of_range_json_is_422_naming_the_field(mkt):
    """``1e400`` became ``inf`` and ``Infinity`` passed into a quote; ``NaN`` and big integers are refused alike."""
    alice = _JsonText(mkt.client(mkt.keys["alice"]))
    lid = mkt.listing["id"]
    cases = {
        '{"field": "meta.score", "op": "ge", "value": 1e400}': "selection.filter.value",
        '{"field": "meta.score", "op": "in", "value": [0.5, Infinity]}': "selection.filter.value[1]",
        '{"field": "meta.score", "op": "le", "value": -Infinity}': "selection.filter.value",
        '{"field": "meta.score", "op": "eq", "value": NaN}': "selection.filter.value",
        '{"field": "meta.score", "op": "eq", "value": 99999999999999999999}': "selection.filter.value",
    }
    for flt, where in cases.items():
        r = alice.post("/v1/quotes", content=f'{{"listing_id": "{lid}", "selection": {{"filter": {flt}}}}}')
        assert r.status_code == 422, (flt, r.text)
        assert r.json()["error"]["message"].startswith(where + ":"), (flt, r.text)
    r = alice.post("/v1/quotes", content=f'{{"listing_id": "{lid}", "selection": {{"token_budget": 1e400}}}}')
    assert r.status_code == 422 and "selection.token_budget" in r.json()["error"]["message"]
    ok = alice.post("/v1/quotes", content=f'{{"listing_id": "{lid}", "selection": {{"filter": '
                    '{"field": "meta.score", "op": "ge", "value": 0.5e0}}}')
    assert ok.status_code == 201, ok.text


def test_malformed_json_bodies_are_422_not_400_or_500(mkt):
    alice = _JsonText(mkt.client(mkt.keys["alice"]))
    deep = "[" * 100_000 + "]" * 100_000
    r = alice.post("/v1/quotes", content=deep)
    assert r.status_code == 422 and "nested deeper" in r.json()["error"]["message"], r.text[:300]
    r = alice.post("/v1/quotes", content='{"listing_id": "' + "[" * 70 + '"}')  # brackets in a string are text
    assert r.status_code == 422 and "listing_id" in r.json()["error"]["message"]
    inner: list = []
    for _ in range(22):
        inner = [inner]
    nested = {"listing_id": mkt.listing["id"], "selection": {"filter": {"x": inner}}}
    shallow = mkt.client(mkt.keys["alice"])
    for _ in range(50):
        nested = {"not": nested}
    r = shallow.post("/v1/quotes", json=nested)
    assert r.status_code == 422 and "nested deeper than 64" in r.json()["error"]["message"]
    r = alice.post("/v1/quotes", content=b'{"listing_id": "\xff\xfe"}')
    assert r.status_code == 422 and "not UTF-8" in r.json()["error"]["message"]
    r = alice.post("/v1/quotes", content='{"listing_id": ' + "9" * 5000 + "}")
    assert r.status_code == 422 and "listing_id: the integer" in r.json()["error"]["message"]
    r = alice.post("/v1/quotes", content='{"listing_id": "lst_\\ud800"}')
    assert r.status_code == 422 and "surrogate" in r.json()["error"]["message"]
    prov = mkt.client(mkt.keys["prov"])
    r = prov.post("/v1/listings", json={"dataset": mkt.version.ref, "price_per_mtok": "1", "license": "a\x00b"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("license: text contains a NUL")
    r = alice.post("/v1/quotes", content='{"listing_id": ')
    assert r.status_code == 422 and "invalid JSON" in r.json()["error"]["message"]


def test_the_last_operator_key_cannot_be_revoked(mkt):
    op = mkt.client(mkt.keys["op"])
    me = op.get("/v1/me").json()
    r = op.delete(f"/v1/keys/{me['key_id']}")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "last_operator_key" and "lock every operator out" in err["message"]
    assert "ciyuan key create op" in err["hint"]
    assert op.get("/v1/me").status_code == 200
    # an expired operator key does not count as a way back in
    past = datetime.now(UTC) - timedelta(seconds=5)
    tx.run(lambda s: accounts.create_key(s, "op", None, past))
    assert op.delete(f"/v1/keys/{me['key_id']}").status_code == 409
    # with a second live operator key (of another operator account) the first may go
    second = op.post("/v1/accounts", json={"name": "op2", "role": "operator"})
    assert second.status_code == 201
    new = op.post("/v1/keys", json={"account": "op2"}).json()
    assert op.delete(f"/v1/keys/{me['key_id']}").json()["revoked_at"]
    assert op.get("/v1/me").status_code == 401
    op2 = mkt.client(new["key"])
    r = op2.delete(f"/v1/keys/{new['id']}")
    assert r.status_code == 409 and "ciyuan key create op2" in r.json()["error"]["hint"]
    # other keys (a buyer's) are revoked as before
    bob_key = op2.post("/v1/keys", json={"account": "bob"}).json()
    assert op2.delete(f"/v1/keys/{bob_key['id']}").status_code == 200
