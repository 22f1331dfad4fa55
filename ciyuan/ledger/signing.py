"""Signed receipts a buyer can verify offline, without the exchange's secret.

A receipt states what an entitlement delivered and charged: every posted batch with its tokens,
amount and the sha256 of its content, the totals, and a checkpoint of the audit log's head
(``audit_checkpoint``: seq and hash). It is signed with the exchange's Ed25519 key (kept in the
home, made on first use); the public key is embedded and published at ``GET /v1/receipts/key``.
``ciyuan receipt verify FILE`` checks a receipt against the exchange's published key by default
(this home's key, or the key served by ``--exchange URL``; ``--key`` pins one): a receipt
re-signed with anyone else's key fails. An HMAC would need the secret to verify.

The same signature wraps audit checkpoints (``{"checkpoint", "signature"}``) and settlement
statements (``{"statement", "signature"}``); :func:`verify_bytes` checks all three.

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

from ciyuan.canonical import canonical_bytes
from ciyuan.config import Settings, settings
from ciyuan.errors import InvalidInput

KEY_FILE = "receipt_ed25519.pem"
ALG = "Ed25519"
FIELDS = ("receipt", "statement", "checkpoint")  # what a signature may wrap


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON value that is signed and written."""
    return canonical_bytes(obj)


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


def home_public_key(s: Settings | None = None) -> str | None:
    """The base64 public key of this home's exchange, or None when the home has no key (never made here)."""
    path = Path((s or settings()).home) / KEY_FILE
    if not path.exists():
        return None
    return public_key_info(s)["public_key"]


def fetch_public_key(url: str) -> str:
    """The public key an exchange publishes at ``GET /v1/receipts/key``, by plain HTTP (this layer is below the SDK)."""
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/v1/receipts/key", timeout=30)
        r.raise_for_status()
        info = r.json()
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the published key of {url}: {exc}",
                           hint="give the exchange's base URL (e.g. http://127.0.0.1:8000) or pin --key") from None
    try:
        raw = _unb64(info["public_key"])
        Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{url}/v1/receipts/key did not answer an Ed25519 key: {exc}",
                           hint="check the URL is a ciyuan exchange") from None
    return info["public_key"]


def exchange_key(pinned_key: str | None = None, exchange: str | None = None, s: Settings | None = None) -> str:
    """The key receipts are checked against: ``--key``, else the server's published key, else this home's."""
    if pinned_key:
        return pinned_key
    if exchange:
        return fetch_public_key(exchange)
    key = home_public_key(s)
    if key is None:
        home = Path((s or settings()).home)
        raise InvalidInput(
            f"no exchange key to check the signature against: {home} has no {KEY_FILE}",
            hint="give --exchange URL (the exchange that issued it publishes its key) or pin --key PUBLIC_KEY",
        )
    return key


def sign_doc(field: str, body: dict, s: Settings | None = None) -> dict:
    """Wrap ``body`` as ``{field: body, "signature": ...}``, Ed25519 over its canonical bytes (deterministic)."""
    if field not in FIELDS:
        raise ValueError(f"cannot sign a {field!r}; one of {FIELDS}")
    key = signing_key(s)
    raw = _raw_public(key.public_key())
    sig = key.sign(canonical(body))
    return {field: body, "signature": {"alg": ALG, "public_key": _b64(raw), "key_id": key_id(raw), "value": _b64(sig)}}


def sign(statement: dict, s: Settings | None = None) -> dict:
    """Wrap a receipt's statement with an Ed25519 signature over its canonical bytes."""
    return sign_doc("receipt", statement, s)


def check_signature(doc: object, key: str) -> tuple[str | None, dict | None]:
    """``(problem, body)`` of a parsed signed document: problem None when signed by ``key`` (base64 or key id)."""
    if not isinstance(doc, dict) or len(doc) != 2 or "signature" not in doc:
        return f"not a signed document: expected exactly the keys 'signature' and one of {', '.join(FIELDS)}", None
    field = next(k for k in doc if k != "signature")
    if field not in FIELDS:
        return f"not a signed document: unknown part {field!r}", None
    sig = doc["signature"]
    if not isinstance(sig, dict) or sig.get("alg") != ALG:
        return f"unsupported signature algorithm {sig.get('alg') if isinstance(sig, dict) else sig!r}", None
    try:
        raw = _unb64(sig["public_key"])
        value = _unb64(sig["value"])
        pub = Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed signature block: {exc}", None
    if sig.get("key_id") != key_id(raw):
        return "key_id does not match the embedded public key", None
    if key not in (sig["public_key"], sig["key_id"]):
        return f"signed by key {sig['key_id']}, not by the exchange's key {_short(key)}", None
    try:
        pub.verify(value, canonical(doc[field]))
    except InvalidSignature:
        return "the signature does not match the signed content", None
    return None, doc[field]


def _short(key: str) -> str:
    try:
        return key_id(_unb64(key))
    except ValueError:
        return key


def to_bytes(signed: dict) -> bytes:
    """The exact file content of a signed receipt."""
    return canonical(signed) + b"\n"


def verify_bytes(data: bytes, pinned_key: str | None = None, *, s: Settings | None = None) -> dict:
    """Check a signed file's bytes against ``pinned_key``, by default this home's exchange key.

    Returns ``{"ok", "problem", ...}`` and never raises on bad input; raises :class:`InvalidInput`
    only when no key was given and this home has none to check against.
    """
    key = exchange_key(pinned_key, None, s)

    def fail(problem: str) -> dict:
        return {"ok": False, "problem": problem, "pinned": pinned_key is not None}

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return fail(f"not a JSON receipt: {exc}")
    if not isinstance(doc, dict) or len(doc) != 2 or "signature" not in doc or not set(doc) & set(FIELDS):
        return fail("not a receipt: expected exactly the keys 'receipt' and 'signature'")
    if to_bytes(doc) != data:
        return fail("the file is not in the canonical form it was signed in (bytes were changed)")
    problem, body = check_signature(doc, key)
    if problem is not None:
        return fail(problem)
    r = body if isinstance(body, dict) else {}
    return {
        "ok": True,
        "problem": None,
        "key_id": doc["signature"]["key_id"],
        "pinned": pinned_key is not None,
        "kind": next(k for k in doc if k != "signature"),
        "entitlement": r.get("entitlement_id"),
        "totals": r.get("totals"),
        "audit_checkpoint": r.get("audit_checkpoint") or (
            {"seq": r.get("seq"), "hash": r.get("hash")} if "seq" in r else None),
    }


def verify_file(path: str | Path, pinned_key: str | None = None, *, exchange: str | None = None,
                s: Settings | None = None) -> dict:
    """Check a receipt file against ``--key``, else the key ``--exchange`` publishes, else this home's key."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read receipt {p}: {exc.strerror}", hint="check the path") from None
    key = exchange_key(pinned_key, exchange, s)
    out = verify_bytes(data, key, s=s)
    out["pinned"] = pinned_key is not None
    out["key_source"] = "--key" if pinned_key else (exchange or "home")
    out["file"] = str(p)
    return out
