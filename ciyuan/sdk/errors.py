"""The SDK's one exception, apart so every SDK module can raise it without importing the client."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer of the exchange: status, stable code, message and what to do."""

    def __init__(self, status: int, code: str, message: str, hint: str = ""):
        super().__init__(f"{status} {code}: {message}" + (f" ({hint})" if hint else ""))
        self.status, self.code, self.message, self.hint = status, code, message, hint
