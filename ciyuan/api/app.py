"""The FastAPI application: ``create_app`` assembles one router per area under ``/v1``.

An area adds its router module to :data:`ROUTERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ciyuan import __version__
from ciyuan.api import errors
from ciyuan.api.schemas import Health
from ciyuan.config import Settings, settings

# (module, attribute, prefix): the routers every app mounts.
ROUTERS: list[tuple[str, str, str]] = [
    ("ciyuan.api.routes_catalog", "router", "/v1"),
    ("ciyuan.api.routes_market", "router", "/v1"),
    ("ciyuan.api.routes_ledger", "router", "/v1"),
    ("ciyuan.api.routes_accounts", "router", "/v1"),
    ("ciyuan.api.routes_delivery", "router", "/v1"),
    ("ciyuan.api.routes_knowledge", "router", "/v1"),
    ("ciyuan.web.routes", "router", ""),
    ("ciyuan.web.thumbs", "router", ""),
    ("ciyuan.web.episodes", "router", ""),
    ("ciyuan.web.kb", "router", ""),
]


def create_app(settings_: Settings | None = None) -> FastAPI:
    """A new app bound to ``settings_`` (default: the process settings).

    While the app runs (its lifespan) a :class:`~ciyuan.api.sweeper.Sweeper` charges delivery batches
    past their ack deadline; it is ``app.state.sweeper``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ciyuan.api.sweeper import Sweeper

        app.state.sweeper = Sweeper(app.state.settings)
        app.state.sweeper.start()
        try:
            yield
        finally:
            app.state.sweeper.stop()

    app = FastAPI(
        lifespan=lifespan,
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
    # -- the order hot path runs first: a plain POST /v1/orders in one thread-pool trip (fast_orders) --
    from ciyuan.api import fast_orders

    fast_orders.install(app)

    @app.get("/v1/health", response_model=Health, tags=["meta"])
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    for module, attr, prefix in ROUTERS:
        app.include_router(getattr(importlib.import_module(module), attr), prefix=prefix)
    return app
