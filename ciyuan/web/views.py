"""What each page shows, gathered from the same functions the JSON API calls.

Nothing here decides a price, a balance or who may see what: prices come from the listing's
:class:`~ciyuan.market.pricing.PriceSchedule`, money from the ledger, ownership checks from
``market``. The few reads that no public function offers yet (usage rows, tokens sold per
listing) are plain read-only queries of the owning layer's tables, kept in this one module so
they are easy to replace when that layer exposes them.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, InvalidInput
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.money import CURRENCIES, format_amount
from ciyuan.market import accounts, market
from ciyuan.market.accounts import Principal
from ciyuan.market.pricing import PriceSchedule
from ciyuan.market.tables import EntitlementRow, OrderRow
from ciyuan.web import charts

SORTS = ("newest", "price_asc", "price_desc", "tokens_desc", "tokens_asc", "name")
VOLUMES = (10**3, 10**4, 10**5, 10**6, 10**7, 10**8, 10**9, 10**10)


def _rate(item: dict) -> float:
    return float(item["price_per_mtok"])


def day(ts: Any) -> str:
    """The calendar day of a timestamp, the x axis of the time charts."""
    if isinstance(ts, datetime):
        return ts.date().isoformat()
    return str(ts)[:10]


def major(minor: float, currency: str) -> float:
    """Minor units as a major-unit number, for chart axes only (tables show exact text)."""
    return minor / 10 ** CURRENCIES.get(currency, 2)


def views_ts(ts: Any) -> Any:
    """SQLite hands timestamps back naive; they were stored as UTC."""
    if isinstance(ts, datetime) and ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts


def when(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.strftime("%Y-%m-%d %H:%M")
    return str(ts or "")[:16].replace("T", " ")


# -- catalog ---------------------------------------------------------------------------------------


def catalog(s: Settings, params: dict[str, str]) -> dict:
    """Listings matching the filters, sorted as asked, plus the facet values for the filter menus."""
    filters = {k: (params.get(k) or "").strip() or None for k in ("q", "modality", "language", "domain")}
    prices = {k: (params.get(k) or "").strip() or None for k in ("min_price", "max_price")}
    toks: dict[str, int | None] = {}
    error = None
    for k in ("min_tokens", "max_tokens"):
        raw = (params.get(k) or "").replace(",", "").replace("_", "").strip()
        try:
            toks[k] = int(raw) if raw else None
            if toks[k] is not None and toks[k] < 0:
                raise ValueError
        except ValueError:
            toks[k] = None
            error = {"key": "bad_tokens", "values": {"field": k, "raw": raw}}
    sort = params.get("sort") if params.get("sort") in SORTS else "newest"

    def work(sess: Session) -> tuple[dict, dict]:
        items: list[dict] = []
        total = 0
        offset: int | None = 0
        while offset is not None and len(items) < 500:
            page = market.search(sess, **filters, **prices, **toks, limit=100, offset=offset)
            items += page["items"]
            total, offset = page["total"], page["next_offset"]
        every = market.search(sess, limit=100)["items"]
        return {"items": items, "total": total}, {
            "modality": sorted({m for it in every for m in it["modalities"]}),
            "language": sorted({m for it in every for m in it["languages"]}),
            "domain": sorted({m for it in every for m in it["domains"]}),
        }

    try:
        found, facets = tx.run(work, s)
    except InvalidInput as exc:
        found, facets = {"items": [], "total": 0}, {"modality": [], "language": [], "domain": []}
        error = {"key": "bad_filter", "values": {"why": exc.message if hasattr(exc, "message") else str(exc)}}
    items = found["items"]
    keys = {
        "price_asc": (lambda it: (_rate(it), it["dataset"]), False),
        "price_desc": (lambda it: (_rate(it), it["dataset"]), True),
        "tokens_desc": (lambda it: (it["tokens"], it["dataset"]), True),
        "tokens_asc": (lambda it: (it["tokens"], it["dataset"]), False),
        "name": (lambda it: (it["dataset"], it["id"]), False),
    }
    if sort in keys:
        key, rev = keys[sort]
        items = sorted(items, key=key, reverse=rev)
    return {
        "items": items,
        "total": found["total"],
        "facets": facets,
        "params": {**{k: v or "" for k, v in {**filters, **prices}.items()},
                   **{k: "" if v is None else str(v) for k, v in toks.items()}, "sort": sort},  # fmt: skip
        "sorts": SORTS,
        "error": error,
    }


# -- dataset page ----------------------------------------------------------------------------------


def _version_facts(detail: dict, s: Settings) -> dict:
    """Tokens under every tokenizer counted for the version, and its appraisal if one is stored."""
    from ciyuan.store import resolve

    ref = f"{detail['dataset']}@{detail['version']}"
    out: dict[str, Any] = {"tokens_by_tokenizer": {}, "tokenizer_versions": {}, "appraisal": None, "curation": None}
    try:
        v = resolve(ref, s)
    except CiyuanError:
        return out
    out["tokens_by_tokenizer"] = dict(sorted(v.token_totals().items()))
    out["tokenizer_versions"] = {k: str(val) for k, val in (v.manifest.get("tokenizers") or {}).items()}
    out["curation"] = (v.manifest.get("extra") or {}).get("curation")
    try:
        from ciyuan.appraise.engine import load

        out["appraisal"] = load(ref, s)
    except (CiyuanError, ImportError, OSError, ValueError):
        out["appraisal"] = None
    return out


def price_table(schedule: dict, tokens_total: int) -> dict:
    """Tier rows and the price at round volumes up to the listing's size, for the table and chart."""
    sched = PriceSchedule.from_dict(schedule)
    vols = [n for n in VOLUMES if n < tokens_total] + [tokens_total]
    vols += [t["from_tokens"] for t in schedule["tiers"][1:] if 0 < t["from_tokens"] < tokens_total]
    vols = sorted({n for n in vols if n > 0})
    points = [(float(n), major(sched.price(n), sched.currency)) for n in vols]  # log axes when they span decades
    return {
        "tiers": schedule["tiers"],
        "mode": schedule.get("mode", "graduated"),
        "points": points,
        "rows": [(f"{n:,}", format_amount(sched.price(n), sched.currency)) for n in vols],
    }


def _short_count(n: int) -> str:
    for div, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def calc_price(schedule: dict, tokens: int) -> str:
    """The listing's own schedule answers the calculator (the same code a quote uses)."""
    sched = PriceSchedule.from_dict(schedule)
    return format_amount(sched.price(tokens), sched.currency)


def appraisal_view(ap: dict | None) -> dict | None:
    """The numbers the dataset page charts, picked out of a stored appraisal."""
    if not ap:
        return None
    q = ap.get("quality") or {}
    indicators = [(name, float(ind.get("score") or 0.0)) for name, ind in (q.get("indicators") or {}).items()
                  if isinstance(ind, dict) and ind.get("score") is not None]  # fmt: skip
    util = ap.get("utility") or {}
    lines = []  # (kind, interval or None, how it was evaluated): no file paths, flags or raw reasons
    text = util.get("text") or {}
    if text:
        ev = str(text.get("eval") or "")
        lines.append(("text", text.get("relative_drop") or text.get("lift"),
                      "heldout" if ev.startswith("held-out") or not ev else "provider_set", None))  # fmt: skip
    lab = util.get("labelled") or {}
    if lab:
        label = str(lab.get("label_field") or "")
        lines.append(("labelled", lab.get("lift"), "heldout", label[5:] if label.startswith("meta.") else label))
    curve = []
    for pt in lab.get("curve") or []:  # accuracy against the share of the data trained on
        if isinstance(pt, dict) and pt.get("fraction") is not None and pt.get("mean") is not None:
            curve.append((float(pt["fraction"]) * 100, float(pt["mean"])))
    rv = ap.get("record_values") or {}
    hist = rv.get("histogram") or {}
    price = ap.get("price") or {}
    return {
        "quality_score": q.get("score"),
        "indicators": indicators,
        "uniqueness": (ap.get("uniqueness") or {}).get("score"),
        "tokens": ap.get("tokens") or {},
        "utility": lines,
        "curve": curve,
        "record_values": {"edges": hist.get("edges") or [], "counts": hist.get("counts") or [],
                          "exp": charts.scale_exponent(hist.get("edges") or []), "k": _knn_k(rv.get("method")),
                          "negative": rv.get("negative"), "records": rv.get("records")}
        if rv else None,  # fmt: skip
        "price": price,
        "appraised_at": ap.get("appraised_at"),
    }


# Fields the pipeline adds for its own bookkeeping: never shown to a buyer (PII counters, ingest line numbers).
INTERNAL_META = ("curation", "source", "line", "instruction", "response")
# Fields curation adds that a buyer may filter on: shown under a translated name (i18n key ``field_<name>``).
KNOWN_FIELDS = ("language", "language_score", "quality_score", "domain", "modality", "text", "id")


def public_field(name: str) -> bool:
    """False for the pipeline's own bookkeeping fields (``meta.curation.*``, ``meta.source``, ``meta.line``)."""
    parts = name.split(".")
    if parts[0] == "meta" and len(parts) > 1:
        return parts[1] not in INTERNAL_META
    return not name.startswith(("tokens", "_"))


def field_label(name: str) -> tuple[str, bool]:
    """(label, translatable): a known field gets an i18n key, a dataset's own field keeps its name (data)."""
    short = name[5:] if name.startswith("meta.") else name
    return (f"field_{short}", True) if short in KNOWN_FIELDS else (short, False)


def flat_meta(meta: dict, prefix: str = "") -> list[tuple[str, str]]:
    """A record's metadata as (key, value) rows, nested keys joined with dots, internal keys left out."""
    rows: list[tuple[str, str]] = []
    for k, v in (meta or {}).items():
        if not prefix and k in INTERNAL_META:
            continue
        if v in ({}, [], None, ""):
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flat_meta(v, key + ".")
        elif isinstance(v, list):
            rows.append((key, ", ".join(str(x) for x in v)))
        elif isinstance(v, float):
            rows.append((key, f"{v:.4g}"))
        else:
            rows.append((key, str(v)))
    return rows


def made_by(card: dict) -> dict | None:
    """How the version was made, without the provider's file paths: the command, the recipe, a file count."""
    mb = card.get("made_by") or {}
    if not mb:
        return None
    recipe = mb.get("recipe") or {}
    return {"command": mb.get("command") or "", "recipe": recipe.get("name") if isinstance(recipe, dict) else None,
            "files": len(mb.get("sources") or [])}  # fmt: skip


def _knn_k(method: Any) -> int | None:
    """The k of the stored KNN-Shapley method text ("..., k=5, ..."), for a translated caption."""
    import re

    m = re.search(r"\bk=(\d+)", str(method or ""))
    return int(m.group(1)) if m else None


def listing_page(s: Settings, listing_id: str) -> dict:
    detail = tx.run(lambda sess: market.listing_detail(sess, listing_id), s)
    facts = _version_facts(detail, s)
    card = detail.get("card") or {}
    numeric = [(f, st, *field_label(f)) for f, st in sorted((card.get("numeric") or {}).items()) if public_field(f)]
    fields = [(f, ty, *field_label(f)) for f, ty in sorted((card.get("fields") or {}).items()) if public_field(f)]
    sample = [r | {"meta_rows": flat_meta(r.get("meta") or {})} for r in detail.get("sample") or []]
    return {
        "listing": detail,
        "card": card,
        "made_by": made_by(card),
        "sample": sample,
        "facts": facts,
        "appraisal": appraisal_view(facts["appraisal"]),
        "prices": price_table(detail["price"], detail["tokens"]),
        "numeric_fields": numeric,
        "fields": fields,
        "reports": report_links(s, detail, facts),
    }


def selection_from_form(form: dict[str, str]) -> dict | None:
    """The quote API's selection object from the quote form's fields (no pricing here)."""
    raw = (form.get("filter_json") or "").strip()
    budget_raw = (form.get("token_budget") or "").replace(",", "").strip()
    budget = None
    if budget_raw:
        if not budget_raw.isdigit():
            raise InvalidInput(f"token budget {budget_raw!r} is not a whole number", hint="e.g. 100000")
        budget = int(budget_raw)
    if raw:
        try:
            flt = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"filter JSON: {exc.msg} at column {exc.colno}", hint="check the brackets and quotes"
            ) from None
    else:
        conds: list[dict] = []
        for field, key in (("meta.language", "language"), ("meta.domain", "domain"), ("modality", "modality")):
            if form.get(key):
                conds.append({"field": field, "op": "eq", "value": form[key]})
        nf = form.get("numeric_field") or ""
        for op, key in (("ge", "numeric_min"), ("le", "numeric_max")):  # the selection language's ops
            val = (form.get(key) or "").strip()
            if nf and val:
                try:
                    num: int | float = int(val) if val.lstrip("-").isdigit() else float(val)
                except ValueError:
                    raise InvalidInput(f"{val!r} is not a number", hint="e.g. 2.5") from None
                conds.append({"field": nf, "op": op, "value": num})
        flt = {"and": conds} if conds else None
    if flt is None and budget is None:
        return None
    return {"filter": flt, "token_budget": budget}


# -- buyer -----------------------------------------------------------------------------------------


def _usage_rows(sess: Session, *, buyer_id: str | None = None, provider_id: str | None = None) -> list | None:
    """Every posted delivery batch (oldest first) from metered delivery; None when it is not installed."""
    try:
        from ciyuan.delivery import delivery
    except ImportError:
        return None
    rows: list[dict] = []
    after = 0
    while True:
        page = delivery.usage(sess, buyer_id=buyer_id, provider_id=provider_id, after=after, limit=1000)
        rows += page["items"]
        if page["next_after"] is None or len(page["items"]) < 1000:
            return rows
        after = page["next_after"]


def _with_held(b: dict) -> dict:
    return {**b, "held_text": format_amount(b["held"], b["currency"])}


def cumulative(events: list[tuple[Any, int]]) -> list[tuple[datetime, float]]:
    """Running totals of (timestamp, amount) events, from zero just before the first, for the time charts."""
    evs = sorted(((views_ts(t), n) for t, n in events if isinstance(views_ts(t), datetime)), key=lambda e: e[0])
    if not evs:
        return []
    out, run = [(evs[0][0], 0.0)], 0.0
    for t, n in evs:
        run += n
        if out[-1][0] == t and len(out) > 1:
            out[-1] = (t, run)
        else:
            out.append((t, run))
    return out


def receipts_available() -> bool:
    try:
        from ciyuan.delivery import receipts
    except ImportError:
        return False
    return hasattr(receipts, "statement")


def buyer_page(s: Settings, who: Principal) -> dict:
    """Balance, entitlements (with what each has billed), usage summed per entitlement, orders."""
    bid = who.account.id

    def work(sess: Session) -> dict:
        bals = [b.to_dict() for b in ledger.balances(sess, bid)]
        orders = market.list_orders(sess, bid, 200, 0)
        quoted = {}
        for o in orders:  # a metered order's cap is its quote's amount
            if o["status"] == "metered" and o.get("quote_id"):
                with contextlib.suppress(CiyuanError):
                    quoted[o["id"]] = market.get_quote(sess, o["quote_id"], bid)["amount"]
        usage = _usage_rows(sess, buyer_id=bid)
        offers = market.search(sess, limit=100)["items"]
        return {"balances": bals, "orders": orders, "usage": usage, "offers": offers, "quoted": quoted}

    data = tx.run(work, s)
    usage = data["usage"]
    names = {it["id"]: it["dataset"] for it in data["offers"]}
    by_ent = usage_summary(usage or [])
    ents, orders = [], []
    for o in data["orders"]:
        ent = o.get("entitlement")
        used = by_ent.get(ent["id"]) if ent else None
        billed = o["amount"] + (used["amount"] if used else 0) if o["status"] == "metered" else o["amount"]
        cap = data["quoted"].get(o["id"])
        row = o | {"billed": billed, "billed_text": format_amount(billed, o["currency"]),
                   "cap_text": format_amount(cap, o["currency"]) if cap is not None else None}  # fmt: skip
        orders.append(row)
        if ent:
            ents.append(ent | {"order": row, "streamed": used["tokens"] if used else 0, "charged": row["billed_text"],
                               "batches": used["batches"] if used else 0})  # fmt: skip
    summary = [u | {"dataset": names.get(u["listing_id"], u["listing_id"])} for u in by_ent.values()]
    return {
        "balances": [_with_held(b) for b in data["balances"] if b["kind"] == ledger.BUYER],
        "orders": orders,
        "entitlements": ents,
        "delivery": usage is not None,
        "usage_points": cumulative([(u["posted_at"], u["tokens"]) for u in usage or []]),
        "spend_points": [
            (k, major(v, u0["currency"])) for u0 in (usage or [])[:1]
            for k, v in cumulative([(u["posted_at"], u["amount"]) for u in usage or []])
        ],
        "usage_summary": summary,
        "usage_rows": [
            {"at": when(u["posted_at"]), "entitlement": u["entitlement_id"], "tokens": u["tokens"],
             "records": u["records"], "amount": u["amount_text"], "currency": u["currency"], "sha256": u["sha256"],
             "dataset": names.get(u["listing_id"], u["listing_id"])}
            for u in (usage or [])[-200:]
        ],  # fmt: skip
        "receipts": receipts_available(),
        "offers": data["offers"],
        "names": names,
    }


def usage_summary(usage: list[dict]) -> dict[str, dict]:
    """Delivery batches summed per entitlement (first and last batch, records, tokens, amount), in first-use order."""
    out: dict[str, dict] = {}
    for u in usage:
        e = out.setdefault(u["entitlement_id"], {
            "entitlement_id": u["entitlement_id"], "listing_id": u["listing_id"], "currency": u["currency"],
            "batches": 0, "records": 0, "tokens": 0, "amount": 0, "first": u["posted_at"], "last": u["posted_at"],
        })  # fmt: skip
        e["batches"] += 1
        e["records"] += u["records"]
        e["tokens"] += u["tokens"]
        e["amount"] += u["amount"]
        e["last"] = u["posted_at"]
    for e in out.values():
        e["amount_text"] = format_amount(e["amount"], e["currency"])
    return out


def receipt_bytes(s: Settings, who: Principal, entitlement_id: str) -> bytes:
    """The signed receipt of one of the buyer's entitlements, exactly as ``GET /v1/entitlements/{id}/receipt``."""
    from ciyuan.delivery import delivery, receipts
    from ciyuan.ledger import signing

    p = delivery.plan(entitlement_id, who.account.id, s)  # 404 for anyone else's
    return signing.to_bytes(signing.sign(tx.run(lambda sess: receipts.statement(sess, p), s), s))


def place_order(s: Settings, who: Principal, quote_id: str, idem: str, billing: str) -> dict:
    """Pay a quote now (``prepaid``) or as the tokens stream (``metered``), as the two order APIs do."""
    if billing == "metered":
        from ciyuan.delivery import delivery

        return delivery.place_metered_order(who.account.id, quote_id, idem, s=s)[0]
    return market.place_order(who.account.id, quote_id, idem, s=s)[0]


# -- provider --------------------------------------------------------------------------------------


def provider_page(s: Settings, who: Principal) -> dict:
    pid = who.account.id

    def work(sess: Session) -> dict:
        mine = market.provider_listings(sess, pid)  # delisted ones too, so they can be relisted
        ids = [it["id"] for it in mine]
        sold = []
        if ids:
            sold = list(
                sess.execute(
                    select(EntitlementRow.id, EntitlementRow.listing_id, EntitlementRow.tokens, OrderRow.created_at,
                           OrderRow.status, OrderRow.id)
                    .join(OrderRow, OrderRow.id == EntitlementRow.order_id)
                    .where(EntitlementRow.listing_id.in_(ids))
                    .order_by(OrderRow.created_at)
                )
            )
        bals = ledger.balances(sess, pid)
        earn = [b for b in bals if b.kind == ledger.PROVIDER]
        credits = []
        for b in earn:
            credits += [t for t in ledger.transfers(sess, account=b.account_id) if t.credit_account_id == b.account_id]
        usage = _usage_rows(sess, provider_id=pid)
        return {"listings": mine, "sold": sold, "earn": earn, "credits": credits, "usage": usage}

    d = tx.run(work, s)
    # tokens sold: a prepaid order sells its tokens when paid, a metered one as each batch posts
    per_listing: dict[str, int] = defaultdict(int)
    sold_events: list[tuple[Any, int]] = []
    metered = set()
    listing_of: dict[str, str] = {}  # an earnings credit's ref names its order or entitlement
    for ent_id, lid, tokens, ts, status, order_id in d["sold"]:
        listing_of[ent_id] = listing_of[order_id] = lid
        if status == "paid":
            per_listing[lid] += int(tokens)
            sold_events.append((views_ts(ts), int(tokens)))
        else:
            metered.add(ent_id)
    delivered: dict[str, int] = defaultdict(int)
    for u in d["usage"] or []:
        delivered[u["listing_id"]] += u["tokens"]
        if u["entitlement_id"] in metered:  # a metered order sells each batch as it posts
            per_listing[u["listing_id"]] += u["tokens"]
            sold_events.append((u["posted_at"], u["tokens"]))
    currency = d["earn"][0].currency if d["earn"] else (d["listings"][0]["currency"] if d["listings"] else "CNY")
    names = {it["id"]: it["dataset"] for it in d["listings"]}
    earned: dict[str, dict] = {}
    credits = []
    for t in d["credits"]:
        ref = t.ref or ""
        lid = listing_of.get(ref.split(":", 1)[-1].split(".")[0], "")
        e = earned.setdefault(lid, {"listing_id": lid, "dataset": names.get(lid, ""), "credits": 0, "amount": 0,
                                    "last": t.created_at})  # fmt: skip
        e["credits"] += 1
        e["amount"] += t.amount
        e["last"] = t.created_at
        credits.append({"at": when(t.created_at), "ref": ref or t.id, "dataset": names.get(lid, ""),
                        "amount": format_amount(t.amount, t.currency)})  # fmt: skip
    for e in earned.values():
        e["amount_text"] = format_amount(e["amount"], currency)
        e["last"] = when(e["last"])
    return {
        "earned": {k: v for k, v in earned.items() if k},
        "earned_other": earned.get(""),
        "listings": d["listings"],
        "reports": {it["id"]: report_links(s, it) for it in d["listings"]},
        "sold": dict(per_listing),
        "delivered": dict(delivered),
        "delivery": d["usage"] is not None,
        "tokens_sold": sum(per_listing.values()),
        "earnings": [b.to_dict() for b in d["earn"]],
        "currency": currency,
        "earnings_points": [
            (k, major(v, currency)) for k, v in cumulative([(t.created_at, t.amount) for t in d["credits"]])
        ],
        "sold_points": cumulative(sold_events),
        "credits": credits[-200:],
    }


# -- operator --------------------------------------------------------------------------------------


def operator_page(s: Settings, limit: int = 100) -> dict:
    def work(sess: Session) -> dict:
        people = {a.id: a for a in accounts.list_accounts(sess)}
        bals = []
        for bal in ledger.balances(sess):
            who = people.get(bal.account_id.split(":")[1])
            bals.append(_with_held(bal.to_dict()) | {"owner": f"{who.name} ({who.role})" if who else "platform",
                                                     "owner_name": who.name if who else None,
                                                     "owner_role": who.role if who else None})  # fmt: skip
        chk = ledger.check(sess)
        try:
            with sess.begin_nested():
                ver = audit.verify(sess)
                head = ver["entries"]
                entries = [e.to_dict() for e in audit.entries(sess, after=max(0, head - limit), limit=limit)]
        except (OperationalError, ProgrammingError):
            ver, entries = None, []
        return {"balances": bals, "check": chk, "audit": ver, "entries": list(reversed(entries))}

    return tx.run(work, s)


def sync_audit(s: Settings) -> int:
    """Adopt a legacy home's transfers that predate the audit chain (``ciyuan audit adopt``).

    Verification never writes; transfers made after the chain began and missing from it are
    refused by ``ledger.adopt`` and stay findings of ``audit verify``.
    """
    out = tx.run(ledger.adopt, s)
    return len(out["adopted"]) + out["expiries"]


# -- reports ---------------------------------------------------------------------------------------

REPORTS = ("appraisal", "curation")


def report_links(s: Settings, detail: dict, facts: dict | None = None) -> dict[str, str | None]:
    """Links to the HTML reports this listing's version has: an appraisal, and/or a curation run."""
    facts = facts if facts is not None else _version_facts(detail, s)
    base = f"/listings/{detail['id']}/reports"
    return {
        "appraisal": f"{base}/appraisal" if facts.get("appraisal") else None,
        "curation": f"{base}/curation" if facts.get("curation") else None,
    }


def report_html(s: Settings, listing_id: str, kind: str, lang: str = "en") -> str:
    """The appraisal or curation report page, rendered by the layer that owns it."""
    from ciyuan.errors import NotFound

    detail = tx.run(lambda sess: market.listing_detail(sess, listing_id), s)
    ref = f"{detail['dataset']}@{detail['version']}"
    if kind == "appraisal":
        from ciyuan.appraise import report
        from ciyuan.appraise.engine import load

        return report.render(load(ref, s), lang=lang)
    if kind == "curation":
        from ciyuan.curate import report as creport

        return creport.render_html(creport.build_report(ref), lang=lang)
    raise NotFound(f"there is no {kind} report", hint=f"reports: {', '.join(REPORTS)}")


def croissant(s: Settings, listing_id: str, base_url: str) -> dict:
    """The listing's Croissant 1.0 card, the very one ``GET /v1/listings/{id}/card`` serves."""
    return market.listing_card(listing_id, base_url, s)
