"""The FastAPI application: ``create_app`` assembles one router per area under ``/v1``.

Later areas (delivery, web pages) add their router module to :data:`ROUTERS`.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from ciyuan import __version__
from ciyuan.api import errors
from ciyuan.api.schemas import Health
from ciyuan.config import Settings, settings

# (module, attribute, prefix); a module that does not exist yet is skipped.
ROUTERS: list[tuple[str, str, str]] = [
    ("ciyuan.api.routes_catalog", "router", "/v1"),
    ("ciyuan.api.routes_market", "router", "/v1"),
    ("ciyuan.api.routes_ledger", "router", "/v1"),
    ("ciyuan.api.routes_accounts", "router", "/v1"),
    ("ciyuan.api.routes_delivery", "router", "/v1"),
    ("ciyuan.web.routes", "router", ""),
    ("ciyuan.web.thumbs", "router", ""),
]


def create_app(settings_: Settings | None = None) -> FastAPI:
    """A new app bound to ``settings_`` (default: the process settings)."""
    app = FastAPI(
        title="ciyuan exchange",
        version=__version__,
        description="Token-priced datasets: catalog, quotes, orders and a double-entry ledger. "
        "Authenticate with `Authorization: Bearer <key>`; catalog reads are public. "
        "Money is integer minor units (fen for CNY).",
        openapi_url="/openapi.json",
        docs_url=None,  # /docs and /redoc are served from local assets by ciyuan.web.routes (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings_ or settings()
    errors.install(app)

    # -- limits before work: key checked before the body, body capped (413), strict JSON (422) --
    from ciyuan.api import limits

    limits.install(app)

    @app.get("/v1/health", response_model=Health, tags=["meta"])
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    for module, attr, prefix in ROUTERS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        app.include_router(getattr(mod, attr), prefix=prefix)
    return app
