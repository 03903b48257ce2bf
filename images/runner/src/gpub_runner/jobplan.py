"""A job that plans itself (GPUB_INPUT_PREFIX set, no manifest, no GPUB_INPUT_OBJECTS).

Task 0 lists the input prefix once (pages of 1,000), applies the name rule
(`gpub_runner.plan`, the planner bin/submit uses), lists the output prefix once to leave out
inputs already done, writes one manifest shard per task, reports every refused name under
`_errors/`, and commits `_plan.json`. Every other task waits for that plan, bounded, with
backoff, then reads its own shard. So a job's list calls are about inputs/1,000 (plus
outputs/1,000 when re-run over old outputs), whatever its task count.

Why a plan object and not a Batch barrier: a barrier runnable "blocks until all tasks in a
taskgroup reach it" (Batch v1 API, Runnable.Barrier:
https://cloud.google.com/dotnet/docs/reference/Google.Cloud.Batch.V1/latest/Google.Cloud.Batch.V1.Runnable.Types.Barrier),
so it needs every task of the group running at once; our parallelism is capped below the task
count (GPU quota, budget, Batch's 5,000), and then the first wave would wait forever for tasks
that cannot start until it ends. Waiting on an object works at any parallelism.

Commit point: shards are written under `_manifest/<plan id>/`, then `_plan.json` (naming the
plan id and this job) is created with `ifGenerationMatch=0`, or `=<generation>` when it replaces
the plan of an earlier job on the same output (a re-run) or a failed plan of this job
(https://cloud.google.com/storage/docs/request-preconditions: 412 when the generation does not
match). Of two racing planners exactly one commits; the other adopts the winner's plan. Shards
are never rewritten after a commit: a new plan gets a new id.

A short listing (fewer inputs than GPUB_EXPECTED_INPUTS, the marker's count) is re-listed with
backoff for GPUB_LISTING_WAIT_S, then the plan is committed as failed with the reason, and
every task exits EXIT_PLAN. A retry of task 0 re-plans a failed plan.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gpub_runner import contract, plan
from gpub_runner.config import Config, GcsUri
from gpub_runner.done import DoneIndex
from gpub_runner.gcs import InfraError, Store
from gpub_runner.logs import JsonLogger
from gpub_runner.plan import ObjectInfo

__all__ = ["JobPlanner", "PlanFailed"]

_BACKOFF_START_S = 1.0
_BACKOFF_MAX_S = 30.0


class PlanFailed(Exception):
    """The job's plan failed (short listing): exit EXIT_PLAN with this reason."""


@dataclass(frozen=True)
class Committed:
    record: dict[str, Any]
    generation: int


class JobPlanner:
    def __init__(self, cfg: Config, store: Store, log: JsonLogger, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        assert cfg.input_prefix is not None  # plan-in-job mode needs it (Config checks)
        self.cfg = cfg
        self.store = store
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.already_done = 0  # inputs left out of the shards because their outputs exist

    def _out(self, name: str) -> GcsUri:
        return GcsUri(self.cfg.output_prefix.bucket, self.cfg.output_prefix.name + name)

    # ---- the plan object ------------------------------------------------------------------
    def _read_plan(self) -> Committed | None:
        import google.api_core.exceptions as gexc

        try:
            data, gen = self.store.fetch(self._out(contract.PLAN_NAME))
        except gexc.NotFound:
            return None
        try:
            record = json.loads(data)
        except ValueError:
            record = {}
        return Committed(record if isinstance(record, dict) else {}, int(gen or 0))

    def _mine(self, committed: Committed | None) -> bool:
        return committed is not None and committed.record.get("job") == self.cfg.job_name

    # ---- entry point ----------------------------------------------------------------------
    def my_share(self) -> list[ObjectInfo]:
        """This task's inputs; PlanFailed or InfraError when there is no usable plan."""
        current = self._read_plan()
        if (self._mine(current) and current is not None
                and (current.record.get("status") == "planned" or self.cfg.task_index != 0)):
            return self._share_of(current)
        if self.cfg.task_index == 0:
            return self._share_of(self._make(current))
        return self._share_of(self._wait())

    def _share_of(self, committed: Committed) -> list[ObjectInfo]:
        record = committed.record
        if record.get("status") != "planned":
            raise PlanFailed(str(record.get("reason") or "the job's plan failed"))
        if int(record.get("task_count", -1)) != self.cfg.task_count:
            raise InfraError(f"{contract.PLAN_NAME} was made for {record.get('task_count')} "
                             f"tasks; this job has {self.cfg.task_count}")
        uri = self._out(contract.manifest_shard_name(str(record["plan_id"]),
                                                     self.cfg.task_index))
        self.already_done = int(record.get("already_done", 0)) if self.cfg.task_index == 0 else 0
        return plan.decode(self.store.read(uri))

    def _wait(self) -> Committed:
        deadline = self.clock() + self.cfg.plan_wait_s
        delay = _BACKOFF_START_S
        while True:
            current = self._read_plan()
            if self._mine(current) and current is not None:
                return current
            if self.clock() >= deadline:
                raise InfraError(f"no plan from task 0 after {self.cfg.plan_wait_s:g}s "
                                 f"({self._out(contract.PLAN_NAME)})")
            self.sleep(delay)
            delay = min(_BACKOFF_MAX_S, delay * 2)

    # ---- planning (task 0) ----------------------------------------------------------------
    def _list_inputs(self) -> plan.Listing:
        prefix = self.cfg.input_prefix
        assert prefix is not None
        cut = len(prefix.name)
        objects = (ObjectInfo(o.name[cut:], o.size, o.generation)
                   for o in self.store.iter_objects(prefix))
        return plan.listing_of(objects, self.cfg.input_format)

    def _list_until_complete(self) -> tuple[plan.Listing, str]:
        """List; while fewer than expected, re-list with backoff until GPUB_LISTING_WAIT_S."""
        expected = self.cfg.expected_inputs
        deadline = self.clock() + self.cfg.listing_wait_s
        delay = _BACKOFF_START_S
        while True:
            listing = self._list_inputs()
            if expected is None or listing.listed >= expected:
                more = expected is not None and listing.listed > expected
                return listing, (f"listed {listing.listed} inputs, more than the {expected} "
                                 "the marker declared; all of them planned" if more else "")
            if self.clock() >= deadline:
                return listing, (
                    f"listed {listing.listed} of the {expected} inputs the marker declared "
                    f"under {self.cfg.input_prefix} after re-listing for "
                    f"{self.cfg.listing_wait_s:g}s (files still uploading, or deleted?)")
            self.log.warning("short listing; listing again", listed=listing.listed,
                             expected=expected, wait_s=delay)
            self.sleep(delay)
            delay = min(_BACKOFF_MAX_S, delay * 2)

    def _todo(self, listing: plan.Listing) -> list[ObjectInfo]:
        """Accepted inputs whose outputs are not all there yet (one listing of the output
        prefix, with metadata). Error records of an earlier job on this output that this
        plan does not make again are deleted: they are about files since fixed, renamed or
        removed, and would make this run's outcome PARTIAL."""
        prefix = self.cfg.input_prefix
        assert prefix is not None
        index = DoneIndex(self.cfg.output_prefix.name).add_all(
            self.store.iter_objects(self.cfg.output_prefix, metadata=True))
        todo = [o for o in listing.accepted
                if not index.is_done(o.name, f"{prefix}{o.name}", o.generation)]
        self.already_done = len(listing.accepted) - len(todo)
        current = {contract.error_record_name(r.name) for r in listing.refused}
        stale = [name for name in index.objects
                 if name.startswith(contract.ERRORS_DIR) and name not in current]
        if stale:
            with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="stale") as pool:
                list(pool.map(lambda name: self.store.delete_if_exists(self._out(name)), stale))
        return todo

    def _make(self, current: Committed | None) -> Committed:
        cfg = self.cfg
        listing, note = self._list_until_complete()
        short = cfg.expected_inputs is not None and listing.listed < cfg.expected_inputs
        self._report_refused(listing.refused)
        record: dict[str, Any] = {
            "listed": listing.listed, "accepted": len(listing.accepted),
            "refused": len(listing.refused), "expected": cfg.expected_inputs, "reason": note,
            "job": cfg.job_name, "task_count": cfg.task_count, "attempt": cfg.attempt,
            "status": "failed" if short else "planned",
        }
        if not short:
            todo = self._todo(listing)
            ordered, fpt = plan.order_for_tasks(todo, cfg.task_count, cfg.files_per_task)
            plan_id = f"a{cfg.attempt}-{secrets.token_hex(4)}"
            self._write_shards(plan_id, [plan.encode(s) for s in
                                         plan.shards(ordered, cfg.task_count, fpt)])
            record.update(plan_id=plan_id, files_per_task=fpt, already_done=self.already_done)
        gen = current.generation if current is not None else 0
        uri = self._out(contract.PLAN_NAME)
        if not self.store.create(uri, json.dumps(record).encode(), "application/json",
                                 if_generation_match=gen):
            winner = self._read_plan()
            if not self._mine(winner) or winner is None:
                raise InfraError(f"{uri} changed while planning and is not this job's plan")
            self.log.info("another planner committed first; using its plan")
            return winner
        self.log.log("ERROR" if short else "INFO", "plan committed",
                     **{k: record[k] for k in contract.PLAN_KEYS},
                     already_done=self.already_done, task_count=cfg.task_count)
        return Committed(record, -1)

    def _write_shards(self, plan_id: str, bodies: list[bytes]) -> None:
        def write(index: int) -> None:
            self.store.create(self._out(contract.manifest_shard_name(plan_id, index)),
                              bodies[index], "application/x-ndjson")

        with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="shard") as pool:
            list(pool.map(write, range(len(bodies))))

    def _report_refused(self, refused: Sequence[plan.Refusal]) -> None:
        """One error record per refused name under `_errors/` (what the outcome counts)."""
        prefix = self.cfg.input_prefix

        def write(r: plan.Refusal) -> None:
            body = {"input": f"{prefix}{r.name}", "name": r.name, "refused": r.kind,
                    "error": f"refused: {r.name!r} {r.reason}", "job": self.cfg.job_name}
            self.store.put(self._out(contract.error_record_name(r.name)),
                           json.dumps(body).encode(), "application/json")

        if refused:
            with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="refused") as pool:
                list(pool.map(write, refused))
