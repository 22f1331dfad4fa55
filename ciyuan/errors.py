"""One error type for every layer, carrying a stable code and a hint of what to do next.

The CLI prints ``message`` and ``hint``; the HTTP API maps ``status`` and ``code`` to a JSON body.
"""

from __future__ import annotations


class CiyuanError(Exception):
    """An expected failure the user can act on (bad input, missing dataset, insufficient funds...)."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, hint: str = "", code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code:
            self.code = code
        if status:
            self.status = status

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class NotFound(CiyuanError):
    code = "not_found"
    status = 404


class Conflict(CiyuanError):
    code = "conflict"
    status = 409


class InvalidInput(CiyuanError):
    code = "invalid_input"
    status = 422
