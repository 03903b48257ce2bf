"""Calling the job's handler: load it, run a batch under a timeout, check what it returned,
and isolate a bad item by retrying a failed batch one item at a time."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from gpub_runner.api import Failure, Handler, Item, Output
from gpub_runner.config import ConfigError
from gpub_runner.contract import RESERVED_OUTPUT_PREFIXES
from gpub_runner.logs import JsonLogger

__all__ = ["HandlerTimeout", "call_handler", "describe", "group", "handle", "load_handler"]

Outcome = dict[str, list[Output] | str]  # item name -> its outputs, or an error string


class HandlerTimeout(Exception):
    pass


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def load_handler(spec: str) -> tuple[Handler, Callable[[], None] | None]:
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"GPUB_HANDLER {spec!r}: cannot import {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"GPUB_HANDLER {spec!r}: {module_name} has no function {func_name!r}")
    setup = getattr(module, "setup", None)
    return cast(Handler, func), (setup if callable(setup) else None)


def call_handler(handler: Handler, batch: list[Item], timeout_s: float) -> Sequence[object]:
    # A daemon thread so a stuck handler can be abandoned at its timeout (Python cannot
    # kill a thread) without blocking interpreter exit.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = handler(batch)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="handler", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise HandlerTimeout(f"handler took longer than {timeout_s:g}s on {len(batch)} file(s)")
    if "error" in box:
        raise box["error"]
    result = box.get("result")
    if not isinstance(result, Sequence):
        raise TypeError(f"handler returned {type(result).__name__}, expected a list")
    return result


def handle(handler: Handler, batch: list[Item], file_timeout_s: float,
           log: JsonLogger) -> Outcome:
    """Map each item to its outputs, or to an error string."""
    try:
        return group(batch, call_handler(handler, batch, file_timeout_s * len(batch)))
    except Exception as exc:
        if len(batch) == 1:
            return {batch[0].name: f"handler failed: {describe(exc)}"}
        # Find the bad item(s): retry one by one so good items still get through.
        log.warning("batch failed; retrying its files one by one",
                    files=len(batch), error=describe(exc)[:2000])
        out: Outcome = {}
        for item in batch:
            out.update(handle(handler, [item], file_timeout_s, log))
        return out


def group(batch: list[Item], results: Sequence[object]) -> Outcome:
    """Check the handler's results and assign them to items; a contract violation raises
    (and so is retried per item like any handler error)."""
    names = {item.name for item in batch}
    grouped: Outcome = {item.name: [] for item in batch}
    for r in results:
        if not isinstance(r, Output | Failure):
            raise TypeError(f"handler returned {type(r).__name__}; expected Output or Failure")
        if r.item not in names:
            raise ValueError(f"handler returned a result for unknown item {r.item!r}")
        if isinstance(r, Failure):
            grouped[r.item] = r.error or "handler reported a failure"
            continue
        current = grouped[r.item]
        if isinstance(current, str):
            continue  # the item already failed; its other outputs are dropped
        if (not r.name or r.name.startswith(("/", *RESERVED_OUTPUT_PREFIXES))
                or ".." in r.name.split("/")):
            raise ValueError(f"handler returned a bad output name {r.name!r}")
        if not isinstance(r.data, bytes | bytearray | memoryview):
            raise TypeError(f"output {r.name!r}: data must be bytes")
        current.append(r)
    return grouped
