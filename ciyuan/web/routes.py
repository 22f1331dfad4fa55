"""The exchange in a browser: server-rendered pages mounted at ``/`` (the JSON API stays under ``/v1``).

Why server-rendered: every page works without JavaScript and offline, needs no build step, and
calls the same Python functions as the API (through :mod:`ciyuan.web.views`), so the web layer
holds no business rules of its own.

Signing in: the API key is posted once in a form and kept in an HttpOnly, SameSite=Strict
session cookie. HttpOnly keeps it out of reach of page scripts (an injected script cannot read
it, unlike sessionStorage); SameSite=Strict means other sites cannot make the browser send it,
so the state-changing forms (quote, buy) cannot be forged cross-site; and as a session cookie it
goes when the browser closes. Every request re-checks the key with the exchange, so a revoked
or expired key signs the browser out at once.
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ciyuan import __version__
from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, NotFound
from ciyuan.i18n import COOKIE as LANG_COOKIE
from ciyuan.i18n import LANGS, Translator
from ciyuan.market import listings, quotes
from ciyuan.market.accounts import Principal, authenticate
from ciyuan.web import charts, dashboards, views

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
KEY_COOKIE = "ciyuan_key"
ROLE_HOME = {"buyer": "/buyer", "provider": "/provider", "operator": "/operator"}

env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
env.globals.update(charts=charts, version=__version__)
env.filters["num"] = lambda n: f"{int(n):,}" if n is not None else "—"
env.filters["pct"] = lambda x: "—" if x is None else f"{float(x) * 100:.1f}%"
env.filters["score"] = lambda x: "—" if x is None else f"{float(x):.3f}"
env.filters["when"] = views.when
env.filters["short"] = lambda s, n=12: (s or "")[:n]
env.filters["fmtnum"] = lambda x: x if not isinstance(x, float) else f"{x:.4g}"
env.globals["known_fields"] = views.KNOWN_FIELDS
env.filters["data"] = lambda v: Markup('<span translate="no">{}</span>').format(v)  # never translated


def pick_lang(request: Request) -> str:
    """The page language: ``?lang=`` (then kept in a cookie), else the cookie, the browser's preference, English."""
    q = request.query_params.get("lang")
    if q in LANGS:
        return q
    c = request.cookies.get(LANG_COOKIE)
    if c in LANGS:
        return c
    accept = request.headers.get("accept-language", "").lower()
    return "zh" if accept.startswith("zh") else "en"


def _indicator(pair: tuple[str, float], t: Translator) -> tuple[str, float]:
    """An appraisal indicator's name in the page language (its key when there is no translation)."""
    name, value = pair
    text = t("ind_" + name)
    return (name if text == "ind_" + name else text), value


env.filters["ind"] = _indicator

router = APIRouter(include_in_schema=False)


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _who(request: Request) -> Principal | None:
    """The signed-in principal, or None (no cookie, or a key that no longer works)."""
    key = request.cookies.get(KEY_COOKIE)
    if not key:
        return None
    try:
        return tx.run(lambda sess: authenticate(sess, key), _settings(request))
    except CiyuanError:
        return None


def _lang_url(request: Request, lang: str) -> str:
    params = dict(request.query_params)
    params["lang"] = lang
    return request.url.path + "?" + urlencode(params)


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    """Render a page in the request's language; remember an explicit ``?lang=`` in a cookie."""
    lang = pick_lang(request)
    who = ctx.pop("who", None) if "who" in ctx else _who(request)
    t = Translator(lang)
    other = "zh" if lang == "en" else "en"
    html = env.get_template(template).render(
        request=request,
        t=t,
        lang=lang,
        who=who,
        role_home=ROLE_HOME,
        lang_url=_lang_url(request, other),
        path=request.url.path,
        **ctx,
    )
    resp = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") in LANGS:
        resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", httponly=True)
    if request.cookies.get(KEY_COOKIE) and who is None:
        resp.delete_cookie(KEY_COOKIE, path="/")
    return resp


def _error(request: Request, exc: CiyuanError, back: str = "/") -> HTMLResponse:
    return render(request, "error.html", status=exc.status, error=exc, back=back)


def _same_origin(request: Request) -> bool:
    """Forms must come from this site (a second guard next to the SameSite cookie)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True
    return origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"


def _local_path(url: str) -> bool:
    """Only a path on this site may be a redirect target (no ``//host`` or ``/\\host`` tricks)."""
    return url.startswith("/") and not url.startswith(("//", "/\\")) and "\n" not in url and "\r" not in url


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- static files ----------------------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """Files from ``ciyuan/web/static`` only (no sub-paths, no dot files)."""
    path = (STATIC / name).resolve()
    if name.startswith(".") or path.parent != STATIC or not path.is_file():
        raise NotFound(f"static file {name} does not exist", hint="see /")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico whatever the page says; answer with the same icon as /static."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip


def _docs_assets() -> Path:
    """Swagger UI and ReDoc as shipped by the ``fastapi-offline`` wheel (a runtime dependency)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")


REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"  # ReDoc's sidebar badge; the only URL it fetches itself


@functools.cache
def _redoc_js() -> bytes:
    """ReDoc's bundle with its one remote image pointed at our favicon, so the page asks nothing of the web."""
    return (_docs_assets() / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, b"/favicon.ico")


@router.get("/static/docs/{name}", response_model=None)
def docs_asset(name: str) -> Response:
    """The API docs' script and stylesheet, from the installed wheel: /docs works offline."""
    if name not in DOCS_ASSETS:
        raise NotFound(f"docs asset {name} does not exist", hint=", ".join(DOCS_ASSETS))
    cache = {"Cache-Control": "public, max-age=86400"}
    if name == "redoc.standalone.js":
        return Response(_redoc_js(), media_type="text/javascript", headers=cache)
    return FileResponse(_docs_assets() / name, headers=cache)


@router.get("/docs", response_class=HTMLResponse)
def swagger_docs(request: Request) -> HTMLResponse:
    """Swagger UI for the JSON API, every asset from this server (FastAPI's default page uses a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} · API",
        swagger_js_url="/static/docs/swagger-ui-bundle.js",
        swagger_css_url="/static/docs/swagger-ui.css",
        swagger_favicon_url="/favicon.ico",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the public validator
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc_docs(request: Request) -> HTMLResponse:
    """ReDoc for the JSON API, from local assets and without web fonts."""
    from fastapi.openapi.docs import get_redoc_html

    return get_redoc_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} · API",
        redoc_js_url="/static/docs/redoc.standalone.js",
        redoc_favicon_url="/favicon.ico",
        with_google_fonts=False,
    )


# -- catalog and dataset pages ----------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def catalog_page(request: Request) -> HTMLResponse:
    data = views.catalog(_settings(request), dict(request.query_params))
    return render(request, "catalog.html", **data)


@router.get("/listings/{listing_id}", response_class=HTMLResponse)
def listing_page(request: Request, listing_id: str) -> HTMLResponse:
    s = _settings(request)
    who = _who(request)
    try:
        data = views.listing_page(s, listing_id)
    except CiyuanError as exc:
        return _error(request, exc)
    calc = None
    raw = (request.query_params.get("tokens") or "").replace(",", "").strip()
    if raw.isdigit() and 0 < int(raw) <= 10**15:
        calc = {"tokens": int(raw), "price": views.calc_price(data["listing"]["price"], int(raw))}
    quote = None
    qid = request.query_params.get("quote")
    if qid and who is not None and who.account.role == "buyer":
        try:
            quote = tx.run(lambda sess: quotes.get_quote(sess, qid, who.account.id), s)
        except CiyuanError:
            quote = None
    from ciyuan.web import episodes

    eps = episodes.page(s, listing_id, data["listing"], Translator(pick_lang(request)))
    from ciyuan.web import graph

    kg = graph.page(s, listing_id, data["listing"], Translator(pick_lang(request)))
    return render(
        request,
        "listing.html",
        episodes=eps,
        graph=kg,
        who=who,
        calc=calc,
        quote=quote,
        idem=secrets.token_hex(12),
        form_error=request.query_params.get("error"),
        **data,
    )


@router.get("/listings/{listing_id}/reports/{kind}", response_model=None)
def report(request: Request, listing_id: str, kind: str) -> Response:
    """A version's stored HTML report (appraisal or curation), served as is."""
    try:
        body = views.report_html(_settings(request), listing_id, kind, pick_lang(request))
    except CiyuanError as exc:
        return _error(request, exc, back=f"/listings/{listing_id}")
    resp = HTMLResponse(body)
    if request.query_params.get("lang") in LANGS:
        resp.set_cookie(LANG_COOKIE, pick_lang(request), max_age=365 * 86400, samesite="lax", httponly=True)
    return resp


@router.get("/listings/{listing_id}/croissant.json", response_model=None)
def croissant(request: Request, listing_id: str) -> Response:
    """The listing's Croissant JSON-LD card, to download or feed to mlcroissant."""
    base = f"{request.url.scheme}://{request.url.netloc}"
    try:
        card = views.croissant(_settings(request), listing_id, base)
    except CiyuanError as exc:
        return _error(request, exc, back=f"/listings/{listing_id}")
    return JSONResponse(card, media_type="application/ld+json")


@router.post("/listings/{listing_id}/quote", response_model=None)
async def quote_form(request: Request, listing_id: str) -> Response:
    """Turn the quote form into a selection and ask the exchange for an exact quote."""
    who = _who(request)
    if not _same_origin(request):
        return Response("cross-site form refused", status_code=403)
    if who is None:
        return _redirect(f"/signin?next=/listings/{listing_id}")
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        sel = views.selection_from_form(form)
        q = quotes.create_quote(who.account.id, listing_id, sel, s=_settings(request))
    except CiyuanError as exc:
        msg = f"{exc.message} — {exc.hint}" if exc.hint else exc.message
        return _redirect(f"/listings/{listing_id}?" + urlencode({"error": msg}) + "#quote")
    return _redirect(f"/listings/{listing_id}?quote={q['id']}#quote")


# -- signing in ------------------------------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str = "") -> HTMLResponse:
    return render(request, "signin.html", next=next if _local_path(next) else "", error=None)


@router.post("/signin", response_model=None)
def signin(request: Request, key: str = Form(..., max_length=200), next: str = Form("")) -> Response:
    if not _same_origin(request):
        return Response("cross-site form refused", status_code=403)
    try:
        who = tx.run(lambda sess: authenticate(sess, key.strip()), _settings(request))
    except CiyuanError as exc:
        return render(request, "signin.html", status=401, next=next, error=exc, who=None)
    target = next if _local_path(next) else ROLE_HOME[who.account.role]
    resp = _redirect(target)
    resp.set_cookie(KEY_COOKIE, key.strip(), httponly=True, samesite="strict", path="/",
                    secure=request.url.scheme == "https")  # fmt: skip
    return resp


@router.post("/signout", response_model=None)
def signout(request: Request) -> Response:
    resp = _redirect("/")
    resp.delete_cookie(KEY_COOKIE, path="/")
    return resp


def _gate(request: Request, role: str) -> tuple[Principal | None, HTMLResponse | None]:
    """The principal if it has ``role``; otherwise the sign-in page (or a polite refusal)."""
    who = _who(request)
    if who is None:
        return None, render(request, "signin.html", next=request.url.path, error=None, who=None, want=role)
    if who.account.role != role:
        return None, render(request, "wrong_role.html", status=403, who=who, want=role)
    return who, None


# -- buyer -----------------------------------------------------------------------------------------


@router.get("/buyer", response_class=HTMLResponse)
def buyer_page(request: Request) -> HTMLResponse:
    who, refusal = _gate(request, "buyer")
    if refusal:
        return refusal
    s = _settings(request)
    data = dashboards.buyer_page(s, who)
    base = f"{request.url.scheme}://{request.url.netloc}"
    quote = None
    qid = request.query_params.get("quote")
    if qid:
        try:
            quote = tx.run(lambda sess: quotes.get_quote(sess, qid, who.account.id), s)
        except CiyuanError:
            quote = None
    return render(
        request,
        "buyer.html",
        who=who,
        base_url=base,
        flash=request.query_params.get("order"),
        quote=quote,
        idem=secrets.token_hex(12),
        form_error=request.query_params.get("error"),
        **data,
    )


@router.post("/buyer/quote", response_model=None)
def buyer_quote(
    request: Request, listing_id: str = Form(..., max_length=40), token_budget: str = Form("", max_length=20)
) -> Response:
    """A quick quote from the buyer page: a listing and an optional token budget."""
    who = _who(request)
    if not _same_origin(request):
        return Response("cross-site form refused", status_code=403)
    if who is None:
        return _redirect("/signin?next=/buyer")
    try:
        sel = views.selection_from_form({"token_budget": token_budget})
        q = quotes.create_quote(who.account.id, listing_id, sel, s=_settings(request))
    except CiyuanError as exc:
        msg = f"{exc.message} — {exc.hint}" if exc.hint else exc.message
        return _redirect("/buyer?" + urlencode({"error": msg}) + "#quick-quote")
    return _redirect(f"/buyer?quote={q['id']}#quick-quote")


@router.post("/buyer/orders", response_model=None)
def buy(
    request: Request,
    quote_id: str = Form(..., max_length=40),
    idem: str = Form(..., max_length=200),
    billing: str = Form("prepaid", pattern="^(prepaid|metered)$"),
) -> Response:
    """Pay a quote now or as it streams; the form's Idempotency-Key makes a double submit return the same order."""
    who = _who(request)
    if not _same_origin(request):
        return Response("cross-site form refused", status_code=403)
    if who is None:
        return _redirect("/signin?next=/buyer")
    s = _settings(request)
    try:
        order = dashboards.place_order(s, who, quote_id, idem, billing)
    except CiyuanError as exc:
        return _error(request, exc, back="/buyer")
    return _redirect(f"/buyer?order={order['id']}")


@router.get("/buyer/receipts/{entitlement_id}", response_model=None)
def receipt(request: Request, entitlement_id: str) -> Response:
    who, refusal = _gate(request, "buyer")
    if refusal:
        return refusal
    try:
        body = dashboards.receipt_bytes(_settings(request), who, entitlement_id)
    except CiyuanError as exc:
        return _error(request, exc, back="/buyer")
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="receipt-{entitlement_id}.json"'},
    )


# -- provider and operator -------------------------------------------------------------------------


@router.get("/provider", response_class=HTMLResponse)
def provider_page(request: Request) -> HTMLResponse:
    who, refusal = _gate(request, "provider")
    if refusal:
        return refusal
    return render(request, "provider.html", who=who, **dashboards.provider_page(_settings(request), who))


@router.post("/provider/listings/{listing_id}/{action}", response_model=None)
async def provider_listing_form(request: Request, listing_id: str, action: str) -> Response:
    """The provider page's small listing controls: change price, delist, relist (the API's rules)."""
    who, refusal = _gate(request, "provider")
    if refusal:
        return refusal
    if not _same_origin(request):
        return Response("cross-site form refused", status_code=403)
    form = {k: str(v) for k, v in (await request.form()).items()}
    s = _settings(request)
    try:
        if action == "price":
            listings.change_price(listing_id, actor=who.account.id, price_per_mtok=form.get("price_per_mtok", ""), s=s)
        elif action in ("delist", "relist"):
            getattr(listings, action)(listing_id, actor=who.account.id, s=s)
        else:
            return Response("unknown action", status_code=404)
    except CiyuanError as exc:
        msg = f"{exc.message} — {exc.hint}" if exc.hint else exc.message
        return _redirect("/provider?" + urlencode({"listing_error": msg}) + "#h-list")
    return _redirect("/provider?" + urlencode({"updated": listing_id}) + "#h-list")


@router.get("/operator", response_class=HTMLResponse)
def operator_page(request: Request) -> HTMLResponse:
    who, refusal = _gate(request, "operator")
    if refusal:
        return refusal
    synced = request.query_params.get("synced")
    return render(request, "operator.html", who=who, synced=synced, **dashboards.operator_page(_settings(request)))


@router.post("/operator/audit-sync", response_model=None)
def audit_sync(request: Request) -> Response:
    """Bring ledger transfers into the audit chain (idempotent), then show the page again."""
    who, refusal = _gate(request, "operator")
    if refusal:
        return refusal
    if not _same_origin(request):
        return Response("cross-site form refused", status_code=403)
    n = dashboards.sync_audit(_settings(request))
    return _redirect(f"/operator?synced={n}#h-audit")
