"""When and how long to wait before trying a registry request again."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

# 408/429 and the 5xx a proxy or an overloaded registry gives are worth another try; 501 and 505 are not.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # total tries, at least 1
    backoff: float
    max_wait: float
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based); a server's Retry-After wins."""
        if response is not None:
            after = retry_after(response)
            if after is not None:
                return min(after, self.max_wait)
        return float(min(self.backoff * (2**attempt), self.max_wait))

    def wait(self, attempt: int, response: requests.Response | None = None) -> None:
        self.sleep(self.delay(attempt, response))


def retry_after(response: requests.Response) -> float | None:
    """Retry-After as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES


# Faults of the connection rather than of the request: the same request may well succeed on a new connection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
