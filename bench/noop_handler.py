"""A handler that does no work: each input becomes one output with the same bytes."""

from __future__ import annotations

from collections.abc import Sequence

from gpub_runner import Item, Result


def process(batch: list[Item]) -> Sequence[Result]:
    return [item.output(item.data) for item in batch]
