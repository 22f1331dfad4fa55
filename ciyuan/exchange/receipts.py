"""Signed receipts a buyer can verify offline, without the exchange's secret.

A receipt states what an entitlement delivered and charged: every posted batch with its tokens,
amount and the sha256 of its content, and the totals. It is signed with the exchange's Ed25519
key (kept in the home, made on first use), and the public key is embedded and also published at
``GET /v1/receipts/key``: a buyer checks integrity offline with ``ciyuan receipt verify FILE`` and
authenticity by pinning the published key (``--key``). An HMAC would need the secret to verify.

The file is the canonical JSON of ``{"receipt", "signature"}`` plus a newline; verification
insists on exactly those bytes, so any single changed byte fails: it breaks the JSON, the
canonical form, the signed content or the signature itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ciyuan.config import Settings, settings
from ciyuan.errors import InvalidInput

KEY_FILE = "receipt_ed25519.pem"
ALG = "Ed25519"


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON value that is signed and written."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    """Decode base64 that must be in its one canonical spelling.

    Base64 of 32 or 64 bytes has spare low bits in its last character; a lax
    decoder ignores them, so a changed byte there would still verify.
    """
    data = base64.b64decode(text, validate=True)
    if _b64(data) != text:
        raise ValueError("base64 is not in canonical form (its unused bits were changed)")
    return data


def signing_key(s: Settings | None = None) -> Ed25519PrivateKey:
    """The exchange's receipt key from the home, created (mode 0600) the first time."""
    path = Path((s or settings()).home) / KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        tmp.write_bytes(pem)
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # first writer wins; a key is never overwritten
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 key", hint="move it away; a new key is made on next use")
    return key


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def public_key_info(s: Settings | None = None) -> dict:
    """What a buyer pins: the algorithm, the raw public key (base64) and its short id."""
    raw = _raw_public(signing_key(s).public_key())
    return {"alg": ALG, "public_key": _b64(raw), "key_id": key_id(raw)}


def sign(statement: dict, s: Settings | None = None) -> dict:
    """Wrap a statement with an Ed25519 signature over its canonical bytes."""
    key = signing_key(s)
    raw = _raw_public(key.public_key())
    sig = key.sign(canonical(statement))
    return {
        "receipt": statement,
        "signature": {"alg": ALG, "public_key": _b64(raw), "key_id": key_id(raw), "value": _b64(sig)},
    }


def to_bytes(signed: dict) -> bytes:
    """The exact file content of a signed receipt."""
    return canonical(signed) + b"\n"


def verify_bytes(data: bytes, pinned_key: str | None = None) -> dict:
    """Check a receipt file's bytes; returns ``{"ok", "problem", ...}`` and never raises on bad input."""

    def fail(problem: str) -> dict:
        return {"ok": False, "problem": problem}

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return fail(f"not a JSON receipt: {exc}")
    if not isinstance(doc, dict) or set(doc) != {"receipt", "signature"}:
        return fail("not a receipt: expected exactly the keys 'receipt' and 'signature'")
    if to_bytes(doc) != data:
        return fail("the file is not in the canonical form it was signed in (bytes were changed)")
    sig = doc["signature"]
    if not isinstance(sig, dict) or sig.get("alg") != ALG:
        return fail(f"unsupported signature algorithm {sig.get('alg') if isinstance(sig, dict) else sig!r}")
    try:
        raw = _unb64(sig["public_key"])
        value = _unb64(sig["value"])
        pub = Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError) as exc:
        return fail(f"malformed signature block: {exc}")
    if sig.get("key_id") != key_id(raw):
        return fail("key_id does not match the embedded public key")
    if pinned_key is not None and pinned_key not in (sig["public_key"], sig["key_id"]):
        return fail(f"signed by key {sig['key_id']}, not by the pinned key")
    try:
        pub.verify(value, canonical(doc["receipt"]))
    except InvalidSignature:
        return fail("the signature does not match the receipt's content")
    r = doc["receipt"]
    return {
        "ok": True,
        "problem": None,
        "key_id": sig["key_id"],
        "pinned": pinned_key is not None,
        "entitlement": r.get("entitlement_id") if isinstance(r, dict) else None,
        "totals": r.get("totals") if isinstance(r, dict) else None,
    }


def verify_file(path: str | Path, pinned_key: str | None = None) -> dict:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read receipt {p}: {exc.strerror}", hint="check the path") from None
    out = verify_bytes(data, pinned_key)
    out["file"] = str(p)
    return out


def statement(sess, p, *, now=None) -> dict:
    """The facts a receipt states for an entitlement: every posted batch, and the totals."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from ciyuan.exchange.delivery import usage_dict
    from ciyuan.exchange.delivery_tables import AuditHeadRow, UsageRow
    from ciyuan.exchange.money import format_amount
    from ciyuan.exchange.tables import OrderRow

    rows = sess.execute(
        select(UsageRow).where(UsageRow.entitlement_id == p.entitlement_id).order_by(UsageRow.seq)
    ).scalars().all()
    batches = []
    for r in rows:
        d = usage_dict(r)
        d["posted_at"] = d["posted_at"].isoformat()
        d.pop("entitlement_id")
        d.pop("listing_id")
        batches.append(d)
    order = sess.get(OrderRow, p.order_id)
    head = sess.get(AuditHeadRow, 1)
    tokens = sum(b["tokens"] for b in batches)
    amount = sum(b["amount"] for b in batches)
    return {
        "type": "ciyuan.receipt.v1",
        "issued_at": (now or datetime.now(UTC)).isoformat(),
        "entitlement_id": p.entitlement_id,
        "order_id": p.order_id,
        "buyer_id": p.buyer_id,
        "provider_id": p.provider_id,
        "listing_id": p.listing_id,
        "version_id": p.version.id,
        "billing": "metered" if p.metered else "prepaid",
        "order_amount": order.amount,
        "currency": p.currency,
        "tokenizer": {"name": p.tokenizer, "version": p.tokenizer_version},
        "price_schedule": p.schedule.to_dict(),
        "entitled": {"records": p.records, "tokens": p.tokens},
        "batches": batches,
        "totals": {
            "batches": len(batches),
            "records": sum(b["records"] for b in batches),
            "tokens": tokens,
            "amount": amount,
            "amount_text": format_amount(amount, p.currency),
            "price_of_tokens": p.price(tokens) if p.metered else 0,
        },
        "audit_head": head.hash if head else None,
    }
