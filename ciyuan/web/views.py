"""What each page shows, gathered from the same functions the JSON API calls.

Nothing here decides a price, a balance or who may see what: prices come from the listing's
:class:`~ciyuan.market.pricing.PriceSchedule`, money from the ledger, ownership checks from
``listings``, catalog order and pages from ``catalog``, who sees which usage from
``accounts.usage_filter``, sales and spend from ``settlement``. No query of a table is made here.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, InvalidInput
from ciyuan.ledger.money import CURRENCIES, format_amount
from ciyuan.market import catalog as market_catalog
from ciyuan.market import listing_files, listings
from ciyuan.market.pricing import PriceSchedule
from ciyuan.web import charts

SORTS = tuple(market_catalog.SORTS)
PAGE = 100  # listings per catalog page
VOLUMES = (10**3, 10**4, 10**5, 10**6, 10**7, 10**8, 10**9, 10**10)


def day(ts: Any) -> str:
    """The calendar day of a timestamp, the x axis of the time charts."""
    if isinstance(ts, datetime):
        return ts.date().isoformat()
    return str(ts)[:10]


def major(minor: float, currency: str) -> float:
    """Minor units as a major-unit number, for chart axes only (tables show exact text)."""
    return minor / 10 ** CURRENCIES.get(currency, 2)


def when(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.strftime("%Y-%m-%d %H:%M")
    return str(ts or "")[:16].replace("T", " ")


# -- catalog ---------------------------------------------------------------------------------------


def catalog(s: Settings, params: dict[str, str]) -> dict:
    """One page of listings matching the filters in the order asked, plus the facet values for the menus."""
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
    raw_offset = (params.get("offset") or "").strip()
    offset = int(raw_offset) if raw_offset.isdigit() and len(raw_offset) <= 9 else 0

    def work(sess: Session) -> tuple[dict, dict]:
        page = market_catalog.search(sess, **filters, **prices, **toks, sort=sort, limit=PAGE, offset=offset)
        return page, market_catalog.facet_values(sess)

    try:
        found, facets = tx.run(work, s)
    except InvalidInput as exc:
        found = {"items": [], "total": 0, "next_offset": None}
        facets = {"modality": [], "language": [], "domain": []}
        error = {"key": "bad_filter", "values": {"why": exc.message if hasattr(exc, "message") else str(exc)}}
    params_out = {**{k: v or "" for k, v in {**filters, **prices}.items()},
                  **{k: "" if v is None else str(v) for k, v in toks.items()}, "sort": sort}  # fmt: skip
    nxt = found["next_offset"]
    return {
        "items": found["items"],
        "total": found["total"],
        "facets": facets,
        "params": params_out,
        "sorts": SORTS,
        "error": error,
        "next_page": "/?" + urlencode({**{k: v for k, v in params_out.items() if v}, "offset": nxt}) if nxt else None,
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
    except (CiyuanError, OSError, ValueError):
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


BULKY_META = ("episode.stats", "episode.features", "episode.table", "episode.cameras", "attachments")


def flat_meta(meta: dict, prefix: str = "") -> list[tuple[str, str]]:
    """A record's metadata as (key, value) rows, nested keys joined with dots, internal keys left out."""
    rows: list[tuple[str, str]] = []
    for k, v in (meta or {}).items():
        if not prefix and k in INTERNAL_META:
            continue
        if v in ({}, [], None, ""):
            continue
        key = f"{prefix}{k}"
        if key in BULKY_META:  # an episode's per-feature stats and schema: on its own section, not here
            continue
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
    detail = tx.run(lambda sess: listings.listing_detail(sess, listing_id), s)
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

    detail = tx.run(lambda sess: listings.listing_detail(sess, listing_id), s)
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
    return listing_files.listing_card(listing_id, base_url, s)
