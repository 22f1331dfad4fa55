"""Request and response bodies of the HTTP API (they define /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ciyuan.db.ids import ID_PATTERN

ID = ID_PATTERN


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierIn(Strict):
    from_tokens: int = Field(ge=1, le=10**15)
    price_per_mtok: str = Field(max_length=40, description="major units per million tokens, e.g. '10.00'")


class PublishIn(Strict):
    dataset: str = Field(min_length=1, max_length=300, description="NAME or NAME@VERSION")
    price_per_mtok: str = Field(max_length=40, description="e.g. '12.00', or 'suggested'")
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    schedule: str | None = Field(default=None, max_length=100, description="token schedule (tokenizer)")
    tiers: list[TierIn] = Field(default_factory=list, max_length=31)
    mode: Literal["graduated", "volume"] = "graduated"
    license: str = Field(default="", max_length=20000)
    sample: int = Field(default=5, ge=0, le=100)


class Tier(BaseModel):
    from_tokens: int
    price_per_mtok: str


class PriceScheduleOut(BaseModel):
    currency: str
    mode: str
    unit: str
    rounding: str
    tiers: list[Tier]


class ListingOut(BaseModel):
    id: str
    dataset: str
    version: str
    provider: str
    schedule: str
    currency: str
    price_per_mtok: str
    price: PriceScheduleOut
    license: str
    records: int
    tokens: int
    full_price: str
    modalities: list[str]
    languages: list[str]
    domains: list[str]
    status: str
    created_at: datetime
    price_version: int = Field(default=1, description="the current price version (1 = the price at publishing)")
    delisted_at: datetime | None = None


class PriceVersionOut(BaseModel):
    version: int
    currency: str
    price_per_mtok: str
    price: PriceScheduleOut
    created_at: datetime


class ListingDetail(ListingOut):
    card: dict[str, Any]
    sample: list[dict[str, Any]]
    price_history: list[PriceVersionOut] = Field(default_factory=list, description="every price version, oldest first")


class PriceIn(Strict):
    price_per_mtok: str = Field(max_length=40, description="e.g. '10.00', or 'suggested'")
    tiers: list[TierIn] = Field(default_factory=list, max_length=31)
    mode: Literal["graduated", "volume"] = "graduated"


class ListingPage(BaseModel):
    items: list[ListingOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None
    sort: str = "newest"


class SelectionIn(Strict):
    filter: dict[str, Any] | None = Field(
        default=None,
        description='filter tree, e.g. {"and": [{"field": "meta.language", "op": "eq", "value": "zh"}]}',
    )
    token_budget: int | None = Field(default=None, ge=1, le=10**15)


class QuoteIn(Strict):
    listing_id: str = Field(pattern=ID)
    selection: SelectionIn | None = None


class QuoteOut(BaseModel):
    id: str
    listing_id: str
    selection: dict[str, Any]
    selection_id: str
    records: int
    tokens: int
    amount: int = Field(description="minor units (fen for CNY)")
    amount_text: str
    currency: str
    created_at: datetime
    expires_at: datetime
    price_version: int = Field(default=1, description="the listing's price version this quote was priced with")


class OrderIn(Strict):
    quote_id: str = Field(pattern=ID)


class EntitlementOut(BaseModel):
    id: str
    order_id: str
    buyer_id: str
    listing_id: str
    version_id: str
    schedule: str
    selection: dict[str, Any]
    selection_id: str
    records: int
    tokens: int
    tokens_drawn: int
    tokens_remaining: int
    status: str
    created_at: datetime
    price_version: int = Field(default=1, description="the price version it was bought at")


class OrderOut(BaseModel):
    id: str
    quote_id: str
    listing_id: str
    amount: int
    amount_text: str
    fee: int
    currency: str
    status: str
    created_at: datetime
    entitlement: EntitlementOut | None


class AccountOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime


class AccountIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["provider", "buyer", "operator"]


class KeyIn(Strict):
    account: str = Field(min_length=1, max_length=100)
    scopes: list[str] | None = Field(default=None, max_length=20)
    expires: str | None = Field(default=None, max_length=40, description="e.g. 30d, 12h or an ISO date-time")


class KeyOut(BaseModel):
    id: str
    account: str
    account_id: str
    role: str
    scopes: list[str]
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="the secret; shown only in this response")


class BalanceOut(BaseModel):
    account_id: str
    kind: str
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    posted: int
    available: int
    held: int
    posted_text: str
    available_text: str


class MeOut(BaseModel):
    account: AccountOut
    key_id: str
    scopes: list[str]
    balances: list[BalanceOut]


class DepositIn(Strict):
    account: str = Field(min_length=1, max_length=100, description="buyer account name or id")
    amount: str = Field(max_length=40, description="major units, e.g. '100.00'")
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    transfer_id: str | None = Field(
        default=None, min_length=1, max_length=150, description="client-chosen id; the same id replays"
    )


class TransferOut(BaseModel):
    id: str
    kind: str
    state: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    amount_text: str
    currency: str
    pending_id: str | None
    expires_at: datetime | None
    ref: str | None
    created_at: datetime


class CheckOut(BaseModel):
    ok: bool
    accounts: int
    transfers: int
    totals: dict[str, int]
    differences: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    version: str
