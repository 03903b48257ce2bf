"""The one planner: which listed objects are inputs, their manifest lines, and how they are
split over tasks. `bin/submit` (submit/planner.py, submit/manifest.py) and a job that plans
itself (gpub_runner.jobplan) both call these functions, so the two can never disagree.

The runner gives task k the manifest lines `[k*F, (k+1)*F)` when `GPUB_FILES_PER_TASK` (F) is
set, and `[k*n//c, (k+1)*n//c)` otherwise (`contract.task_share`). So a plan is an order of
the inputs plus a task count: with F, files are packed F per task in name order; without it,
files are dealt to tasks so every task gets about the same number of bytes.

Fast enough for a million objects: one sort plus linear passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gpub_runner.contract import input_name_problem, task_share

__all__ = [
    "Listing", "ObjectInfo", "Refusal", "classify", "decode", "encode", "listing_of",
    "matches_format", "order_for_tasks", "shard",
]


class ObjectInfo(NamedTuple):
    """An input object; `name` is relative to the input prefix."""

    name: str
    size: int
    generation: str


# ---- the name rule --------------------------------------------------------------------------
# Kinds of refusal. bin/submit stops on UNSAFE (the user fixes the folder) and leaves the
# others out as it always has; a job that plans itself reports every one under `_errors/`.
UNSAFE = "unsafe name"
BOOKKEEPING = "bookkeeping name"
FORMAT = "not the job's input format"


@dataclass(frozen=True)
class Refusal:
    name: str
    kind: str
    reason: str


def is_placeholder(name: str) -> bool:
    """A folder placeholder ("x/", what the console creates): not an object of the batch."""
    return not name or name.endswith("/")


def classify(name: str, input_format: str | None) -> Refusal | None:
    """Why `name` (relative to the input prefix) is not an input, or None when it is one."""
    base = name.rsplit("/", 1)[-1]
    if base.startswith("_") or "/_done/" in f"/{name}" or "/_errors/" in f"/{name}":
        return Refusal(name, BOOKKEEPING, "is bookkeeping (a name or folder starting with '_')")
    if input_format and not base.lower().endswith("." + input_format.lower().lstrip(".")):
        return Refusal(name, FORMAT, f"is not a *.{input_format.lstrip('.')} file")
    problem = input_name_problem(name)
    if problem is not None:
        return Refusal(name, UNSAFE, problem)
    return None


def matches_format(name: str, input_format: str | None) -> bool:
    """True when `name` is an input of `input_format` ("jsonl" -> "*.jsonl"), whatever its
    safety (bin/submit refuses unsafe names separately, with its own message)."""
    if is_placeholder(name):
        return False
    why = classify(name, input_format)
    return why is None or why.kind == UNSAFE


@dataclass
class Listing:
    """The outcome of the name rule over one listing of the input prefix."""

    accepted: list[ObjectInfo] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    @property
    def listed(self) -> int:
        return len(self.accepted) + len(self.refused)


def listing_of(objects: Iterable[ObjectInfo], input_format: str | None) -> Listing:
    out = Listing()
    for obj in objects:
        if is_placeholder(obj.name):
            continue
        why = classify(obj.name, input_format)
        if why is None:
            out.accepted.append(obj)
        else:
            out.refused.append(why)
    return out


# ---- manifest lines ---------------------------------------------------------------------------
def encode(objects: Iterable[ObjectInfo]) -> bytes:
    """One JSON line per object (a hot path at a million objects: one `json.dumps` per name,
    which may need escaping, and plain formatting for the rest)."""
    dumps = json.dumps
    return "".join(
        f'{{"name": {dumps(o.name)}, "size": {int(o.size)}, "generation": "{o.generation}"}}\n'
        for o in objects
    ).encode("utf-8")


def decode(data: bytes) -> list[ObjectInfo]:
    out: list[ObjectInfo] = []
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append(ObjectInfo(rec["name"], int(rec["size"]), str(rec["generation"])))
    return out


# ---- the task split ---------------------------------------------------------------------------
def _balance(objects: list[ObjectInfo], task_count: int) -> list[ObjectInfo]:
    """Deal objects (largest first) to tasks in snake order so byte totals even out, with
    exactly the per-task counts the runner's even split expects; return the manifest order."""
    n = len(objects)
    by_size = sorted(objects, key=lambda o: (-o.size, o.name))
    buckets: list[list[ObjectInfo]] = [[] for _ in range(task_count)]
    full_rounds = n // task_count
    i = 0
    for r in range(full_rounds):
        order = range(task_count) if r % 2 == 0 else range(task_count - 1, -1, -1)
        for t in order:
            buckets[t].append(by_size[i])
            i += 1
    # The runner's split gives the extra (n % c) files to tasks whose share is one larger
    # than n//c; hand the smallest leftovers to exactly those tasks.
    for t in range(task_count):
        if len(task_share(n, t, task_count, None)) > full_rounds:
            buckets[t].append(by_size[i])
            i += 1
    out: list[ObjectInfo] = []
    for bucket in buckets:
        bucket.sort()  # name order inside a task: readable manifests, stable output
        out.extend(bucket)
    return out


def order_for_tasks(objects: Sequence[ObjectInfo], task_count: int,
                    files_per_task: int | None) -> tuple[list[ObjectInfo], int | None]:
    """The manifest order for `task_count` tasks, and the files per task it assumes.

    With F files per task, name order, F per task; when the objects need more than
    `task_count` tasks at F (more files than the task count was sized for), F grows to
    ceil(n / task_count) so every object still lands in a task. Without F, size-balanced."""
    n = len(objects)
    if files_per_task is not None:
        if -(-n // files_per_task) > task_count:
            files_per_task = -(-n // task_count)
        return sorted(objects), files_per_task
    if task_count > 1:
        return _balance(list(objects), task_count), None
    return sorted(objects), None


def shard(ordered: Sequence[ObjectInfo], index: int, task_count: int,
          files_per_task: int | None) -> Sequence[ObjectInfo]:
    """The objects task `index` processes (the runner's rule, `contract.task_share`)."""
    share = task_share(len(ordered), index, task_count, files_per_task)
    return ordered[share.start : share.stop]


def shards(ordered: Sequence[ObjectInfo], task_count: int,
           files_per_task: int | None) -> Iterator[Sequence[ObjectInfo]]:
    for index in range(task_count):
        yield shard(ordered, index, task_count, files_per_task)
