"""Outputs are their input's done marker: two requests per file (read the input, write the
output), no separate `_done/` object.

Every output object carries custom metadata (contract.META_*): the input's URI, the input
generation it was made from, and how many outputs that input produced. An input at a
generation is done when that many outputs with its URI and generation exist. So:
- resume: a listing of the output prefix (with metadata) says what is done, 1,000 a page;
- stale outputs: an input overwritten since (a new generation) finds no outputs of its
  generation and is processed again; its outputs replace the stale ones with a generation
  precondition, so a racing writer is never overwritten blindly;
- no partial object is ever visible: an upload becomes visible only once complete (a single
  request, or a resumable upload's final one). An input with several outputs is done only when
  all of them are there.
An input whose handler returned no output at all still gets a `_done/` marker (nothing else
could say it is done).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

from gpub_runner import contract
from gpub_runner.gcs import ObjectStat

__all__ = ["DoneIndex", "output_metadata", "output_stem"]


def output_metadata(input_uri: str, generation: str | None, outputs: int) -> dict[str, str]:
    return {contract.META_INPUT: input_uri, contract.META_GENERATION: generation or "",
            contract.META_OUTPUTS: str(outputs)}


def made_from(stat: ObjectStat | None, input_uri: str, generation: str | None) -> bool:
    """True when `stat` is an output of `input_uri` at `generation` (any generation when the
    input's generation is unknown)."""
    if stat is None or stat.metadata.get(contract.META_INPUT) != input_uri:
        return False
    return generation is None or stat.metadata.get(contract.META_GENERATION) == generation


def output_stem(rel: str) -> str:
    """The part of an input name its default outputs share (`a/b.jsonl` -> `a/b`: Item.output
    replaces the suffix)."""
    path = PurePosixPath(rel)
    return str(path.with_suffix("")) if path.suffix else rel


class DoneIndex:
    """What a listing of (part of) the output prefix says is done."""

    def __init__(self, output_prefix_name: str) -> None:
        self._cut = len(output_prefix_name)
        self.objects: dict[str, ObjectStat] = {}  # by name relative to the output prefix
        self._have: Counter[tuple[str, str]] = Counter()
        self._declared: dict[tuple[str, str], int] = {}
        self._markers: set[str] = set()

    def add_all(self, stats: Iterable[ObjectStat]) -> DoneIndex:
        for stat in stats:
            self.add(stat)
        return self

    def add(self, stat: ObjectStat) -> None:
        rel = stat.name[self._cut :]
        self.objects[rel] = stat
        if rel.startswith(contract.DONE_DIR):
            self._markers.add(rel)
            return
        meta: Mapping[str, str] = stat.metadata
        source = meta.get(contract.META_INPUT)
        if not source:
            return
        try:
            declared = int(meta.get(contract.META_OUTPUTS, ""))
        except ValueError:
            return
        gen = meta.get(contract.META_GENERATION, "")
        for key in ((source, gen), (source, "*")):
            self._have[key] += 1
            self._declared[key] = declared

    def is_done(self, rel: str, input_uri: str, generation: str | None) -> bool:
        key = (input_uri, generation if generation is not None else "*")
        declared = self._declared.get(key)
        if declared is not None and declared > 0 and self._have[key] >= declared:
            return True
        return contract.done_marker_name(rel, input_uri, generation) in self._markers

    def existing(self, name: str) -> ObjectStat | None:
        return self.objects.get(name)
