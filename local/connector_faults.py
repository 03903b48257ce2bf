"""Transient errors on Workflows connector calls (`LOCAL_CONNECTOR_ERROR_RATE`), surfaced the way
the real connectors surface them.

Each request a connector makes (a create, every poll of a long-running operation, a get, a
publish) fails with the plan's rate, answered 429, 500, 502, 503 or 504. The connector itself
retries first, as "Understand connectors" says (https://cloud.google.com/workflows/docs/connectors#retries):
an idempotent policy for GET requests, a non-idempotent one for the other methods. Those are
Workflows' `http.default_retry` (429, 502, 503, 504) and `http.default_retry_non_idempotent`
(429, 503): 5 retries, backoff 1 s x 1.25 up to 60 s
(https://cloud.google.com/workflows/docs/reference/stdlib/http/default_retry). What is left
reaches the workflow as an `HttpError` with the status `code`, so the workflow's own `retry`
policy is exercised: a 500 on any call, a 502/504 on a create or publish, or six faults in a row.
A failed non-GET request was carried out half of the time before its answer was lost (a gateway
timeout after the work was done), so a retried create meets the job it already made.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc

from local.faults import FaultPlan

T = TypeVar("T")
CODES = (429, 500, 502, 503, 504)
RETRY_IDEMPOTENT = frozenset({429, 502, 503, 504})
RETRY_NON_IDEMPOTENT = frozenset({429, 503})
MAX_RETRIES = 5
INITIAL_DELAY_S, MULTIPLIER, MAX_DELAY_S = 1.0, 1.25, 60.0
REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class InjectedHttpError(Exception):
    """A transient error the connector gave up on (or does not retry)."""

    def __init__(self, code: int, method: str) -> None:
        super().__init__(f"local fault: HTTP {code} {REASONS[code]} from {method}")
        self.code = code


class ConnectorFaults:
    def __init__(self, plan: FaultPlan, stream: str, wait: Callable[[float], None]) -> None:
        self.rate = plan.connector_error_rate
        self.rng: random.Random = plan.stream(stream)
        self.wait = wait  # the connector's backoff sleep (scaled like sys.sleep)
        self.injected = 0  # faults drawn, retried or not
        self.surfaced = 0  # faults that reached the workflow

    def request(self, method: str, idempotent: bool, send: Callable[[], T]) -> T:
        """One connector request with faults and the connector's own retries."""
        delay = INITIAL_DELAY_S
        retry_on = RETRY_IDEMPOTENT if idempotent else RETRY_NON_IDEMPOTENT
        for attempt in range(MAX_RETRIES + 1):
            if not self.rate or self.rng.random() >= self.rate:
                return send()
            self.injected += 1
            code = self.rng.choice(CODES)
            if not idempotent and self.rng.random() < 0.5:
                _carried_out(send)
            if code not in retry_on or attempt == MAX_RETRIES:
                self.surfaced += 1
                raise InjectedHttpError(code, method)
            self.wait(delay)
            delay = min(delay * MULTIPLIER, MAX_DELAY_S)
        raise AssertionError("unreachable")


def _carried_out(send: Callable[[], Any]) -> None:
    """The request reached the service; its answer (or its error) is lost."""
    with contextlib.suppress(gexc.GoogleAPICallError):
        send()
