"""The handler interface: what a job's code receives and returns.

A handler is a plain function ``process(batch: list[Item]) -> Sequence[Output | Failure]``
named by ``GPUB_HANDLER=module:function``. The runner downloads inputs, calls it with up to
``GPUB_BATCH_SIZE`` items at a time, and uploads what it returns. Each returned ``Output``
names the input item it belongs to (``Output.item``), so one item may yield zero, one or many
outputs. A per-item problem is reported by returning ``Failure(item, error)`` (the rest of the
batch still succeeds) or by raising: when a batch of several items raises, the runner retries
its items one by one so only the bad item is quarantined.

An optional module-level ``setup() -> None`` in the handler's module is called once before the
first batch (outside the per-file timeout), e.g. to load a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True, slots=True)
class Item:
    """One input object, fully downloaded."""

    name: str  # object name relative to GPUB_INPUT_PREFIX (the manifest's "name")
    data: bytes
    uri: str  # full gs:// URI of the input object
    generation: str | None = None

    def output(
        self,
        data: bytes,
        *,
        suffix: str | None = None,
        name: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> Output:
        """Build an Output for this item; by default named like the input, `suffix` replacing
        the input's extension (``a/b.jsonl`` + ``.parquet`` -> ``a/b.parquet``)."""
        if name is None:
            name = self.name
            if suffix is not None:
                name = str(PurePosixPath(name).with_suffix(suffix))
        return Output(item=self.name, name=name, data=data, content_type=content_type)


@dataclass(frozen=True, slots=True)
class Output:
    """One object to write under GPUB_OUTPUT_PREFIX, created once and atomically."""

    item: str  # Item.name this output was produced from
    name: str  # object name relative to GPUB_OUTPUT_PREFIX; must be unique in the job
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Failure:
    """The handler could not process one item; it is quarantined with this error."""

    item: str  # Item.name
    error: str


Result = Output | Failure
Handler = Callable[[list[Item]], Sequence[Result]]
