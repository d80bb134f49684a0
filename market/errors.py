"""The market's errors, independent of HTTP: each carries the status the API answers with."""

from __future__ import annotations


class MarketError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(MarketError):
    status = 404


class Forbidden(MarketError):
    status = 403


class Conflict(MarketError):
    status = 409


class TooMany(MarketError):
    status = 429

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, round(retry_after + 0.5))
