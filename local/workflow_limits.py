"""Workflows' documented limits, enforced by the local Workflows runtime
(https://cloud.google.com/workflows/quotas):

- 512 KB for all variables of an execution (arguments and events included), sized as
  https://cloud.google.com/workflows/docs/reference/syntax/variables#memory-usage says:
  integer, double, boolean (and null) 8 bytes; string and bytes 8 + their length; list 8 + each
  element; map 8 + each key + each value, recursively;
- 100,000 steps per execution;
- 128 KB of source per workflow (a deploy over it fails: `WorkflowSyntaxError` here);
- 6,000 execution creations per minute per location, Eventarc-triggered ones included
  (`CreationRate`: a refused creation is a 429 RESOURCE_EXHAUSTED, and Eventarc retries the
  event, https://cloud.google.com/eventarc/docs/retry-events).

An execution over the memory or step limit fails with a `ResourceLimitError`, which "cannot be
caught and causes immediate execution failure"
(https://cloud.google.com/workflows/docs/reference/syntax/error-types): `ResourceLimitExceeded`
is not a WorkflowError, so neither `try/except` nor `retry` in the emulator catches it.
Steps are counted per step the emulator runs (a `try` step and its body count as one each), an
estimate as close as the emulator allows; variables are sized after every step that can change
them.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

KB = 1024
MAX_VARIABLE_BYTES = 512 * KB
MAX_STEPS = 100_000
MAX_SOURCE_BYTES = 128 * KB
MAX_CREATIONS_PER_MINUTE = 6_000
RESOURCE_LIMIT_TAG = "ResourceLimitError"
_CHANGES_VARIABLES = ("assign", "call", "for", "parallel", "try", "steps")


class ResourceLimitExceeded(Exception):
    """An execution exceeded a Workflows limit; its payload is the error map Workflows reports."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.payload = {"message": message, "tags": [RESOURCE_LIMIT_TAG]}


def variable_bytes(value: Any) -> int:
    """Workflows' memory accounting of one value."""
    if isinstance(value, str):
        return 8 + len(value.encode("utf-8"))
    if isinstance(value, bytes | bytearray):
        return 8 + len(value)
    if isinstance(value, Mapping):
        return 8 + sum(variable_bytes(str(k)) + variable_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 8 + sum(variable_bytes(v) for v in value)
    return 8


def _is_subworkflow(value: Any) -> bool:
    # The emulator keeps subworkflow definitions beside the variables (its own marker).
    return isinstance(value, dict) and "steps" in value


def context_bytes(context: Mapping[str, Any]) -> int:
    """The variables' memory: their values (the docs' example counts no names)."""
    return sum(variable_bytes(v) for v in context.values() if not _is_subworkflow(v))


@dataclass
class Budget:
    max_steps: int = MAX_STEPS
    max_bytes: int = MAX_VARIABLE_BYTES
    steps: int = 0
    peak_bytes: int = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise ResourceLimitExceeded(
                f"Exceeded the maximum number of steps per execution ({self.max_steps:,})")

    def memory(self, context: Mapping[str, Any]) -> None:
        used = context_bytes(context)
        self.peak_bytes = max(self.peak_bytes, used)
        if used > self.max_bytes:
            raise ResourceLimitExceeded(
                f"Memory usage limit exceeded: variables use {used:,} bytes, more than "
                f"{self.max_bytes:,} (512 KB per execution)")


_BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("local_workflow_budget")


@contextlib.contextmanager
def budget(limits: Budget) -> Iterator[Budget]:
    token = _BUDGET.set(limits)
    try:
        yield limits
    finally:
        _BUDGET.reset(token)


def install(main: Any) -> None:
    """Count and size every step the emulator runs (once per process)."""
    if getattr(main, "_gpub_limits", False):
        return
    original = main.execute_step

    def execute_step(step_id: Any, config: Any, context: Any) -> Any:
        limits = _BUDGET.get(None)  # None in parallel branches' threads: not counted
        if limits is not None:
            limits.step()
        out = original(step_id, config, context)
        if limits is not None and isinstance(config, dict) and any(
                k in config for k in _CHANGES_VARIABLES):
            limits.memory(out[0])
        return out

    main.execute_step = execute_step
    main._gpub_limits = True


def check_source_size(name: str, source: str, limit: int = MAX_SOURCE_BYTES) -> str | None:
    """Why Workflows would refuse to deploy this source; None when it fits."""
    size = len(source.encode("utf-8"))
    if size > limit:
        return f"{name}: source is {size:,} bytes; Workflows allows {limit:,} (128 KB)"
    return None


class CreationRate:
    """Execution creations per minute per location: a sliding 60 s window."""

    def __init__(self, per_minute: int = MAX_CREATIONS_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self, location: str) -> bool:
        """Whether one more execution may be created in `location` now (and count it)."""
        with self._lock:
            now = self.clock()
            seen = self._seen.setdefault(location, deque())
            while seen and seen[0] <= now - 60.0:
                seen.popleft()
            if len(seen) >= self.per_minute:
                self.refused += 1
                return False
            seen.append(now)
            return True
