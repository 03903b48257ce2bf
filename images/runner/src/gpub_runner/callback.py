"""Results callback: POST a JSON summary with the job's bearer key, retrying with backoff."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from gpub_runner.logs import JsonLogger


class CallbackError(Exception):
    pass


class _Retryable(Exception):
    """A 5xx/429 answer: worth another try."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | requests.ConnectionError | requests.Timeout)


def redact_url(url: str) -> str:
    # Query strings can carry tokens: log scheme://host/path only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}" \
        f"{parts.path}"


def send_callback(
    url: str,
    key: str | None,
    payload: dict[str, Any],
    log: JsonLogger,
    *,
    attempts: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
) -> None:
    """Raise CallbackError when every attempt failed or the server refused the request."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    safe_url = redact_url(url)
    # Defence in depth on top of the logger's URL scrubbing: the query string and credentials
    # of this URL never appear in any field, whatever text they end up in.
    parts = urlsplit(url)
    for secret in (parts.query, parts.password, parts.fragment):
        log.add_secret(secret)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("callback attempt failed; retrying", url=safe_url,
                    attempt_no=state.attempt_number, error=str(exc))

    def post_once() -> None:
        resp = requests.post(url, json=payload, headers=headers, timeout=timeout_s)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise CallbackError(f"callback refused: HTTP {resp.status_code}")

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_s, max=60 * backoff_s),
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        retrying(post_once)
    except CallbackError:
        raise
    except Exception as exc:
        # Never chain the requests exception: its repr can include the prepared request.
        raise CallbackError(f"callback failed after {attempts} attempts: {exc}") from None
    log.info("callback sent", url=safe_url)
