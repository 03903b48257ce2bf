"""Plan a storage-based run: which input objects, how many tasks, how many at once (pure).

The rules are the one planner's, `gpub_runner.plan` (name rule, manifest order, task split)
and `gpub_runner.contract.task_split` (task count), which a job that plans itself also calls;
this module adds what only bin/submit has: the parallelism caps and their reasons, and the
refusal of a folder holding a name the runner would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpub_runner import plan as shared
from gpub_runner.contract import (
    BATCH_MAX_PARALLELISM,
    BATCH_MAX_TASKS,
    input_name_problem,
    task_share,
    task_split,
)
from gpub_runner.plan import matches_format

from submit.errors import SubmitError
from submit.manifest import ObjectInfo

__all__ = ["BATCH_MAX_PARALLELISM", "BATCH_MAX_TASKS", "Plan", "input_name_problem",
           "matches_format", "plan_tasks", "select_inputs", "task_share"]


def select_inputs(objects: Iterable[ObjectInfo], input_format: str | None) -> list[ObjectInfo]:
    """The job's inputs; SubmitError when one of them has a name the runner would refuse
    (such as `b1/sub/../x.jsonl`), so a run never starts with a file it cannot process.
    Other extensions and bookkeeping (`_...`) are left out, as the runner's rule says."""
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
    split = task_split(n, files_per_task, p_cap, max_tasks)
    ordered, fpt = shared.order_for_tasks(objects, split.task_count, split.files_per_task)
    if files_per_task is not None:
        if fpt != files_per_task:
            # Batch caps tasks per group; pack more files per task rather than fail.
            notes.append(
                f"{n} files at the job's files per task exceed {max_tasks} tasks; "
                f"packing {fpt} files per task instead"
            )
        return Plan(ordered, split.task_count, split.parallelism, fpt,
                    why if p_cap <= split.task_count else "task count", notes)
    # No files-per-task in the job: one wave of size-balanced tasks (every VM boots once;
    # GPU VMs take minutes to start, and outputs carrying their input make retries cheap).
    return Plan(ordered, split.task_count, split.parallelism, None,
                why if p_cap <= n else "number of input files", notes)
