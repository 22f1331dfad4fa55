"""Market participants (provider, buyer, operator) and their API keys.

A key is ``cyk_`` + 43 characters of URL-safe randomness (256 bits), shown once. Only its
sha256 is stored: with that much entropy a plain hash cannot be brute-forced, and lookup by hash
is a single indexed read. Keys carry scopes, may expire and can be revoked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.clock import aware as _aware
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.market.tables import AccountRow, ApiKeyRow

ROLES = ("provider", "buyer", "operator")
SCOPES = (
    "listings:write",
    "quotes:write",
    "orders:write",
    "orders:read",
    "ledger:read",
    "ledger:write",
    "delivery:read",
)
DEFAULT_SCOPES = {
    "provider": ("listings:write", "ledger:read"),
    "buyer": ("quotes:write", "orders:write", "orders:read", "ledger:read", "delivery:read"),
    "operator": SCOPES,
}
KEY_PREFIX = "cyk_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Unauthenticated(CiyuanError):
    code = "unauthenticated"
    status = 401


class Forbidden(CiyuanError):
    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, row: AccountRow) -> Account:
        return cls(row.id, row.name, row.role, _aware(row.created_at))

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "created_at": self.created_at}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the account behind a valid key, with the key's scopes."""

    account: Account
    key_id: str
    scopes: frozenset[str]

    def require(self, *, roles: tuple[str, ...] = (), scope: str | None = None) -> None:
        if roles and self.account.role not in roles:
            raise Forbidden(
                f"this needs a {' or '.join(roles)} account; {self.account.name} is a {self.account.role}",
                hint="use a key of an account with that role",
            )
        if scope and scope not in self.scopes:
            raise Forbidden(f"this key lacks the scope {scope}", hint=f"create a key with --scopes including {scope}")


def usage_filter(account: Account) -> dict[str, str]:
    """Whose delivery usage ``account`` may read, as filters for ``delivery.usage``.

    A buyer sees its own batches, a provider the batches of its listings, the operator all of them.
    """
    if account.role == "buyer":
        return {"buyer_id": account.id}
    if account.role == "provider":
        return {"provider_id": account.id}
    if account.role == "operator":
        return {}
    raise Forbidden(f"{account.name} is a {account.role}; usage is for buyers, providers and the operator",
                    hint="use a buyer, provider or operator key")  # fmt: skip


def balances_owner(account: Account) -> str | None:
    """Whose ledger balances ``account`` may read: its own, or everyone's (None) for the operator."""
    return None if account.role == "operator" else account.id


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_account(sess: Session, name: str, role: str) -> Account:
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is unknown", hint=f"use one of {', '.join(ROLES)}")
    if not NAME_RE.match(name or ""):
        raise InvalidInput(
            f"account name {name!r} is not allowed",
            hint="use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    if sess.execute(select(AccountRow.id).where(AccountRow.name == name)).first():
        raise Conflict(f"account {name} already exists", hint="pick another name", code="account_exists")
    row = AccountRow(id="acc_" + secrets.token_hex(8), name=name, role=role, created_at=datetime.now(UTC))
    sess.add(row)
    sess.flush()
    return Account.of(row)


def get_account(sess: Session, ref: str) -> Account:
    """An account by id or name."""
    row = (
        sess.get(AccountRow, ref) or sess.execute(select(AccountRow).where(AccountRow.name == ref)).scalar_one_or_none()
    )
    if row is None:
        raise NotFound(f"account {ref} does not exist", hint="list accounts with `ciyuan account list`")
    return Account.of(row)


def list_accounts(sess: Session) -> list[Account]:
    return [Account.of(r) for r in sess.execute(select(AccountRow).order_by(AccountRow.name)).scalars()]


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """``30d``, ``12h``, ``90m`` or an ISO date-time; None means the key does not expire."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"(\d{1,6})([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now + timedelta(**{unit: int(m.group(1))})
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"expiry {text!r} is neither a duration nor a date-time",
            hint="use e.g. 30d, 12h, 90m or 2026-01-31T00:00:00+00:00",
        ) from None
    # stored as UTC: SQLite keeps no offset, so 20:00+08:00 kept as "20:00" lived 8 hours too long
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def create_key(
    sess: Session, account_ref: str, scopes: list[str] | None = None, expires_at: datetime | None = None
) -> tuple[dict, str]:
    """A new key for an account: (its public description, the secret shown only now)."""
    acc = get_account(sess, account_ref)
    allowed = set(DEFAULT_SCOPES[acc.role])
    chosen = sorted(set(scopes) if scopes else allowed)
    for sc in chosen:
        if sc not in SCOPES:
            raise InvalidInput(f"scope {sc!r} is unknown", hint=f"use some of {', '.join(SCOPES)}")
        if sc not in allowed:
            raise InvalidInput(
                f"a {acc.role} key cannot have the scope {sc}",
                hint=f"{acc.role} keys may have {', '.join(sorted(allowed))}",
            )
    if expires_at is not None:  # one instant, stored in UTC on every database (SQLite drops offsets)
        expires_at = expires_at.astimezone(UTC) if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        id="key_" + secrets.token_hex(8),
        account_id=acc.id,
        key_hash=hash_key(secret),
        hint=secret[:8],
        scopes=" ".join(chosen),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
        revoked_at=None,
    )
    sess.add(row)
    sess.flush()
    return _key_dict(row, acc), secret


def _key_dict(row: ApiKeyRow, acc: Account) -> dict:
    return {
        "id": row.id,
        "account": acc.name,
        "account_id": acc.id,
        "role": acc.role,
        "scopes": row.scopes.split(),
        "hint": row.hint + "...",
        "created_at": _aware(row.created_at),
        "expires_at": _aware(row.expires_at),
        "revoked_at": _aware(row.revoked_at),
    }


def revoke_key(sess: Session, key_id: str) -> dict:
    row = sess.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFound(f"key {key_id} does not exist", hint="key ids look like key_0123456789abcdef")
    acc = Account.of(sess.get(AccountRow, row.account_id))
    now = datetime.now(UTC)
    if row.revoked_at is None:
        if acc.role == "operator" and _active(row, now) and not _other_operator_keys(sess, row.id, now):
            raise Conflict(
                f"key {key_id} is the last active operator key; revoking it would lock every operator out",
                hint=f"create another operator key first (ciyuan key create {acc.name}), then revoke this one",
                code="last_operator_key",
            )
        row.revoked_at = now
    return _key_dict(row, acc)


def _active(row: ApiKeyRow, now: datetime) -> bool:
    return row.revoked_at is None and (row.expires_at is None or _aware(row.expires_at) > now)


def _other_operator_keys(sess: Session, key_id: str, now: datetime) -> int:
    """Active keys of any operator account other than ``key_id`` (compared in Python: SQLite has no time zones)."""
    rows = sess.execute(
        select(ApiKeyRow)
        .join(AccountRow, AccountRow.id == ApiKeyRow.account_id)
        .where(AccountRow.role == "operator", ApiKeyRow.revoked_at.is_(None), ApiKeyRow.id != key_id)
        .with_for_update(of=ApiKeyRow)
    ).scalars()
    return sum(_active(r, now) for r in rows)


def list_keys(sess: Session, account_ref: str) -> list[dict]:
    acc = get_account(sess, account_ref)
    rows = sess.execute(select(ApiKeyRow).where(ApiKeyRow.account_id == acc.id).order_by(ApiKeyRow.created_at))
    return [_key_dict(r, acc) for r in rows.scalars()]


def authenticate(sess: Session, secret: str | None, now: datetime | None = None) -> Principal:
    """The principal behind a bearer secret, or 401 for a missing, unknown, revoked or expired key."""
    if not secret:
        raise Unauthenticated(
            "no API key given", hint="send the header 'Authorization: Bearer <key>' (create one: ciyuan key create)"
        )
    found = sess.execute(select(ApiKeyRow, AccountRow).join(AccountRow, AccountRow.id == ApiKeyRow.account_id)
                         .where(ApiKeyRow.key_hash == hash_key(secret))).first()  # one round trip
    row, account = found if found is not None else (None, None)
    if row is None:
        raise Unauthenticated("the API key is not valid", hint="check the key; keys are shown only once")
    now = now or datetime.now(UTC)
    if row.revoked_at is not None:
        raise Unauthenticated("the API key was revoked", hint="create a new key")
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        raise Unauthenticated("the API key has expired", hint="create a new key")
    return Principal(Account.of(account), row.id, frozenset(row.scopes.split()))
