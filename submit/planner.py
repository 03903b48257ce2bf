"""Plan a storage-based run: which input objects, how many tasks, how many at once (pure).

The runner gives task k the manifest lines `[k*F, (k+1)*F)` when `GPUB_FILES_PER_TASK` (F) is
set, and `[k*n//c, (k+1)*n//c)` otherwise: `gpub_runner.contract.task_share`, the one
definition both sides import. So the plan is just
an order of the manifest plus a task count: with F set, files are packed F per task in name
order; without it, files are dealt to tasks so every task gets about the same number of bytes
and the manifest is written task by task.

Fast enough for a million objects (one sort plus linear passes; no per-object allocation
beyond the NamedTuples the listing already made).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpub_runner.contract import input_name_problem, task_share

from submit.errors import SubmitError
from submit.manifest import ObjectInfo

__all__ = ["Plan", "input_name_problem", "plan_tasks", "select_inputs", "task_share"]

# Google Batch system limits (cloud.google.com/batch/quotas): fixed, cannot be raised.
BATCH_MAX_TASKS = 100_000
BATCH_MAX_PARALLELISM = 5_000


def matches_format(name: str, input_format: str | None) -> bool:
    """True when `name` is an input of `input_format` ("jsonl" -> "*.jsonl").

    Folder placeholders ("x/") and the toolkit's own bookkeeping ("_manifest.jsonl",
    "_done/...", "_errors/...") never count as inputs.
    """
    if not name or name.endswith("/"):
        return False
    base = name.rsplit("/", 1)[-1]
    if base.startswith("_") or "/_done/" in f"/{name}" or "/_errors/" in f"/{name}":
        return False
    if not input_format:
        return True
    return base.lower().endswith("." + input_format.lower().lstrip("."))


def select_inputs(objects: Iterable[ObjectInfo], input_format: str | None) -> list[ObjectInfo]:
    """The job's inputs; SubmitError when one of them has a name the runner would refuse
    (such as `b1/sub/../x.jsonl`), so a run never starts with a file it cannot process."""
    selected = [o for o in objects if matches_format(o.name, input_format)]
    bad = [(o.name, why) for o in selected if (why := input_name_problem(o.name)) is not None]
    if bad:
        name, why = bad[0]
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SubmitError(f"--input: object name {name!r} {why}{more}; rename or move it, "
                          "it cannot be processed safely")
    return selected


@dataclass(frozen=True)
class Plan:
    objects: list[ObjectInfo]  # manifest order
    task_count: int
    parallelism: int
    files_per_task: int | None  # None: even split over task_count (size-balanced order)
    limited_by: str  # what set the parallelism, for the human summary
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def task_size(self, index: int) -> int:
        """How many files task `index` processes (without slicing the manifest)."""
        return len(task_share(len(self.objects), index, self.task_count, self.files_per_task))

    def task_files(self, index: int) -> Sequence[ObjectInfo]:
        """The objects task `index` processes (the runner's rule, imported)."""
        share = task_share(len(self.objects), index, self.task_count, self.files_per_task)
        return self.objects[share.start : share.stop]


def _cap_parallelism(caps: Sequence[tuple[str, int | None]]) -> tuple[int, str]:
    best, why = BATCH_MAX_PARALLELISM, "Batch limit (5,000 parallel tasks per job)"
    for name, cap in caps:
        if cap is None:
            continue
        if cap < 1:
            raise SubmitError(f"{name} leaves room for no task at all ({cap}); nothing to run")
        if cap < best:
            best, why = cap, name
    return best, why


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


def plan_tasks(
    objects: Sequence[ObjectInfo],
    *,
    files_per_task: int | None,
    parallelism_caps: Sequence[tuple[str, int | None]] = (),
    max_tasks: int = BATCH_MAX_TASKS,
) -> Plan:
    """Plan tasks for `objects` (already filtered to the job's format).

    `parallelism_caps` are (reason, limit) pairs such as ("--parallelism", 8),
    ("job maximum", 20), ("GPU quota L4=8 / 1 GPU per VM", 8); None means no limit.
    """
    n = len(objects)
    if n == 0:
        raise SubmitError("--input: no input objects to plan")
    if files_per_task is not None and files_per_task < 1:
        raise SubmitError(f"GPUB_FILES_PER_TASK must be >= 1; got {files_per_task}")
    notes: list[str] = []
    p_cap, why = _cap_parallelism(parallelism_caps)

    if files_per_task is not None:
        ordered = sorted(objects)
        task_count = -(-n // files_per_task)
        if task_count > max_tasks:
            # Batch caps tasks per group; pack more files per task rather than fail.
            files_per_task = -(-n // max_tasks)
            task_count = -(-n // files_per_task)
            notes.append(
                f"{n} files at the job's files per task exceed {max_tasks} tasks; "
                f"packing {files_per_task} files per task instead"
            )
        return Plan(ordered, task_count, min(p_cap, task_count),
                    files_per_task, why if p_cap <= task_count else "task count", notes)

    # No files-per-task in the job: one wave of size-balanced tasks (every VM boots once;
    # GPU VMs take minutes to start, and done markers make retries cheap).
    task_count = min(n, max_tasks, p_cap)
    ordered = _balance(list(objects), task_count) if task_count > 1 else sorted(objects)
    return Plan(ordered, task_count, task_count, None,
                why if p_cap <= n else "number of input files", notes)
