"""Errors the ingest edge answers with, each saying what the sender should do next.

Permanent (4xx): the sender must fix the request; retrying the same bytes cannot succeed.
Retryable (429/503, with `Retry-After`): the sender should retry later, unchanged.
"""

from __future__ import annotations


class IngestError(Exception):
    """An answer to the client: HTTP status, a stable machine code and a precise message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def retryable(self) -> bool:
        return self.status in (429, 503)


def bad_request(code: str, message: str) -> IngestError:
    return IngestError(400, code, message)


def unprocessable(message: str) -> IngestError:
    return IngestError(422, "invalid_alert", message)


UNAUTHORIZED_MESSAGE = "invalid credentials or signature"


def unauthorized() -> IngestError:
    # One answer for an unknown key, a missing signature and a wrong signature, so that the
    # response never tells an attacker which part was right.
    return IngestError(401, "unauthorized", UNAUTHORIZED_MESSAGE, {"WWW-Authenticate": "Bearer"})


def unavailable(message: str, retry_after: int) -> IngestError:
    return IngestError(503, "unavailable", message, {"Retry-After": str(retry_after)})
