"""Calling SSM and STS: throttling backoff, NextToken paging, error codes, redaction.

botocore already retries transient errors and throttling (standard mode, see
`api.client_config`). A throttling error that escapes those retries gets a slower, jittered
exponential backoff here: SSM's Describe* rate limits are per account and region and shared
with the client's own tooling, so a burst from the client can outlast botocore's quick
retries. Every other error is raised to the caller, which records it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
})
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")


class PaginationError(RuntimeError):
    """The service sent a NextToken it had sent before (a loop, not a next page)."""


# What a collection step records and moves past: the service said no (ClientError), the
# transport failed (BotoCoreError: timeouts, unreachable endpoint, ...), or paging looped.
AWS_ERRORS = (ClientError, BotoCoreError, PaginationError)


@dataclass
class Caller:
    """Calls an operation, backing off on throttling; pages through NextToken."""

    sleep: Callable[[float], None]
    max_throttle_retries: int = 4
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 20.0
    rng: random.Random = field(default_factory=random.Random)

    def call(self, client: Any, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response: dict[str, Any] = getattr(client, method)(**params)
                return response
            except ClientError as exc:
                if error_code(exc) not in THROTTLING_CODES or attempt >= self.max_throttle_retries:
                    raise
            ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2**attempt)
            self.sleep(self.rng.uniform(ceiling / 2, ceiling))
            attempt += 1

    def pages(
        self, client: Any, method: str, params: Mapping[str, Any], result_key: str
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            request = {**params, "NextToken": token} if token else dict(params)
            page = self.call(client, method, request)
            yield from page.get(result_key) or []
            token = page.get("NextToken") or None
            if token is None:
                return
            if token in seen:  # a service bug must not turn into an endless loop
                raise PaginationError(f"{method}: NextToken repeated, stopping pagination")
            seen.add(token)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else the exception's class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """The service's message of a ClientError, else the exception's text."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message") or exc)
    return str(exc)


def redact(message: str, secrets: Sequence[str]) -> str:
    """`message` without any of `secrets` nor anything shaped like an access key id."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    return _ACCESS_KEY_ID.sub("***", message)
