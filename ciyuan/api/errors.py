"""Every failure leaves the API as ``{"error": {"code", "message", "hint"}}`` with a 4xx status.

Our own :class:`~ciyuan.errors.CiyuanError` carries its status; FastAPI's validation errors become
422 with the first offending field named; a database refusing a value (e.g. a NUL byte PostgreSQL
cannot store) is bad input too, never a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ciyuan.errors import CiyuanError


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str


class ErrorBody(BaseModel):
    error: ErrorDetail


DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid API key",
    402: "Insufficient funds",
    403: "Wrong role or missing scope",
    404: "Not found (or not yours)",
    408: "The query ran past its time limit and was stopped (nothing billed)",
    409: "Conflict (idempotency key reused, already resolved, ...)",
    410: "Expired",
    416: "Range not satisfiable",
    422: "Invalid input",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return (422 always)."""
    return {c: {"model": ErrorBody, "description": DESCRIPTIONS[c]} for c in sorted({*codes, 400, 422})}


def _body(code: str, message: str, hint: str = "") -> dict:
    return {"error": {"code": code, "message": message, "hint": hint}}


def error_response(exc: CiyuanError) -> JSONResponse:
    """The response of one of our errors (also used by :mod:`ciyuan.api.fast_orders`)."""
    status = exc.status if 400 <= exc.status < 500 else 400
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(_body(exc.code, exc.message, exc.hint), status_code=status, headers=headers)


def data_error_body() -> dict:
    """The 422 body of a value the database refused."""
    return _body("invalid_input", "the database refused a value in the request",
                 "remove control characters and keep numbers in range")


def install(app: FastAPI) -> None:
    @app.exception_handler(CiyuanError)
    async def _ciyuan(_req: Request, exc: CiyuanError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        msg = f"{where}: {first.get('msg', 'invalid')}"
        if len(errs) > 1:
            msg += f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})"
        return JSONResponse(_body("invalid_input", msg, "see /docs for the expected request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        status = exc.status_code if 400 <= exc.status_code < 500 else 400
        return JSONResponse(
            _body(code, str(exc.detail), "see /docs for the routes"),
            status_code=status,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DataError)
    async def _data(_req: Request, _exc: DataError) -> JSONResponse:
        return JSONResponse(data_error_body(), status_code=422)
