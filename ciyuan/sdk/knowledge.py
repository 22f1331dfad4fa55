"""The buyer's client for knowledge listings: SPARQL queries and retrieval, metered per returned token.

Each method fixes its idempotency key before the first try, so the client's own retries (network
errors, gateway statuses) return the first answer and are billed once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


class KnowledgeCalls:
    """Mixed into :class:`ciyuan.sdk.Client`, whose ``_json`` sends the request."""

    _json: Callable[..., Any]  # declared, not defined: the Client's method is the one called

    def sparql(self, listing_id: str, query: str, *, max_rows: int = 1000, max_tokens: int = 4096,
               timeout_s: float = 10.0, entitlement_id: str | None = None,
               idempotency_key: str | None = None) -> dict:
        """A read-only SPARQL query: ``result`` (SPARQL JSON, or N-Triples text) and its ``usage``."""
        body: dict[str, Any] = {"query": query, "max_rows": max_rows, "max_tokens": max_tokens,
                                "timeout_s": timeout_s}
        if entitlement_id:
            body["entitlement_id"] = entitlement_id
        return self._json("POST", f"/v1/listings/{listing_id}/sparql", json=body,
                          headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def retrieve(self, listing_id: str, query: str, *, top_k: int = 5, max_tokens: int = 4096,
                 mode: str = "hybrid", entitlement_id: str | None = None,
                 idempotency_key: str | None = None) -> dict:
        """The best ``chunks`` for a query within ``max_tokens``, with their source ids, scores and tokens."""
        body: dict[str, Any] = {"query": query, "top_k": top_k, "max_tokens": max_tokens, "mode": mode}
        if entitlement_id:
            body["entitlement_id"] = entitlement_id
        return self._json("POST", f"/v1/listings/{listing_id}/retrieve", json=body,
                          headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})
