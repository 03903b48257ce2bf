"""A job that plans itself (issue 20 items 2 and 4) and outputs as done markers (item 8),
against the in-memory store with Cloud Storage's generation rules. No sleeps: waiting goes
through an injected clock and sleep."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence

import pytest
from gpub_runner import Item, Result, contract, plan
from gpub_runner.config import Config
from gpub_runner.gcs import InfraError
from gpub_runner.jobplan import JobPlanner, PlanFailed
from gpub_runner.logs import JsonLogger
from gpub_runner.runner import EXIT_OK, TaskRunner

from submit import planner as submit_planner
from submit.manifest import ObjectInfo
from tests._helpers.runner_store import MemStore, echo


def done(store: MemStore, i: int) -> bool:
    meta = store.meta.get(f"{OUT}d/f{i:04d}.out", {})
    return meta.get(contract.META_INPUT) == f"gs://bkt/in/d/f{i:04d}.jsonl"

OUT = "bkt/out/"


def cfg_for(index: int = 0, count: int = 1, **env: str) -> Config:
    base = {
        "GPUB_HANDLER": "x:y", "GPUB_INPUT_PREFIX": "gs://bkt/in/",
        "GPUB_OUTPUT_PREFIX": "gs://bkt/out/", "GPUB_BATCH_SIZE": "4", "GPUB_CONCURRENCY": "4",
        "GPUB_JOB_NAME": "job-1", "GPUB_INPUT_FORMAT": "jsonl",
        "BATCH_TASK_INDEX": str(index), "BATCH_TASK_COUNT": str(count),
    }
    base.update(env)
    return Config.from_env(base)


class FakeTime:
    """A clock that only moves when the code under test sleeps; `on_sleep` runs each time."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def seed_inputs(store: MemStore, n: int, extra: Sequence[str] = ()) -> None:
    for i in range(n):
        store.write(f"bkt/in/d/f{i:04d}.jsonl", f'{{"i": {i}}}\n'.encode())
    for name in extra:
        store.write(f"bkt/in/{name}", b"x")


def run_task(store: MemStore, cfg: Config, handler: Callable[[list[Item]], Sequence[Result]]
             = echo, fake: FakeTime | None = None) -> tuple[int, list[dict[str, object]]]:
    buf = io.StringIO()
    fake = fake or FakeTime()
    runner = TaskRunner(cfg, store, handler, None, JsonLogger(buf, job="j"),  # type: ignore[arg-type]
                        sleep=fake.sleep, clock=fake.clock)
    code = runner.run()
    return code, [json.loads(line) for line in buf.getvalue().splitlines()]


def plan_record(store: MemStore) -> dict[str, object]:
    return json.loads(store.objects[OUT + contract.PLAN_NAME])  # type: ignore[no-any-return]


def outputs(store: MemStore) -> list[str]:
    return [k for k in store.names(OUT + "d/")]


# ---- item 2: the job plans itself ----------------------------------------------------------

def test_task0_plans_once_and_every_task_processes_its_shard() -> None:
    store = MemStore()
    refused = ["notes.txt", "_hidden.jsonl", "a//b.jsonl", "sub/../x.jsonl"]
    seed_inputs(store, 23, refused)
    store.write("bkt/in/folder/", b"")  # a folder placeholder is not an input
    calls: list[str] = []

    def counting(batch: list[Item]) -> Sequence[Result]:
        calls.extend(i.name for i in batch)
        return echo(batch)

    for k in range(3):
        code, _ = run_task(store, cfg_for(k, 3, GPUB_EXPECTED_INPUTS="27"), counting)
        assert code == EXIT_OK
    assert sorted(calls) == [f"d/f{i:04d}.jsonl" for i in range(23)]  # each exactly once
    record = plan_record(store)
    assert {k: record[k] for k in contract.PLAN_KEYS} == {
        "listed": 27, "accepted": 23, "refused": 4, "expected": 27, "reason": ""}
    assert len(store.names(OUT + contract.MANIFEST_DIR)) == 3  # one shard per task
    # Every refused name has its error record, named safely.
    errors = store.names(OUT + contract.ERRORS_DIR)
    assert len(errors) == 4
    texts = " ".join(json.loads(store.objects[k])["error"] for k in errors)
    assert all(repr(name) in texts for name in refused)
    assert not any(".." in k or "//" in k[len("bkt/"):] for k in errors)


def test_list_calls_of_a_whole_job_stay_near_files_per_thousand() -> None:
    store = MemStore()
    n, tasks = 4_500, 9
    seed_inputs(store, n)
    for k in range(tasks):
        assert run_task(store, cfg_for(k, tasks, GPUB_EXPECTED_INPUTS=str(n)))[0] == EXIT_OK
    assert len(outputs(store)) == n
    # One pass over the inputs and one over the (empty) outputs: never tasks x anything.
    assert store.requests["list"] <= math.ceil(n / 1000) + 1
    # Two requests per file (read, write) plus a constant per task.
    per_task = 4  # plan read, shard write and read, summary
    assert store.requests["get"] + store.requests["put"] <= 2 * n + per_task * tasks + 2


def test_other_tasks_wait_for_the_plan_with_backoff() -> None:
    store = MemStore()
    seed_inputs(store, 10)

    def task0_runs_meanwhile(sleeps: int) -> None:
        if sleeps == 3:
            assert run_task(store, cfg_for(0, 2))[0] == EXIT_OK

    fake = FakeTime(task0_runs_meanwhile)
    code, logs = run_task(store, cfg_for(1, 2), fake=fake)
    assert code == EXIT_OK and logs[-1]["ok"] == 5
    assert fake.sleeps == [1.0, 2.0, 4.0]  # polled with backoff until the plan appeared
    assert len(outputs(store)) == 10


def test_waiting_for_a_plan_is_bounded() -> None:
    store = MemStore()
    seed_inputs(store, 4)
    fake = FakeTime()
    with pytest.raises(InfraError, match="no plan from task 0 after 120s"):
        run_task(store, cfg_for(1, 2, GPUB_PLAN_WAIT_S="120"), fake=fake)
    assert fake.now >= 120 and len(fake.sleeps) <= 8  # backoff, not a busy poll


def test_a_plan_of_an_earlier_job_on_the_same_output_is_replaced() -> None:
    store = MemStore()
    seed_inputs(store, 6)
    assert run_task(store, cfg_for(0, 1, GPUB_JOB_NAME="job-old"))[0] == EXIT_OK
    old_plan = store.gens[OUT + contract.PLAN_NAME]
    # The client overwrites one input (a new generation) and re-runs the batch: a new job.
    store.write("bkt/in/d/f0002.jsonl", b'{"i": "new"}\n')
    calls: list[str] = []

    def counting(batch: list[Item]) -> Sequence[Result]:
        calls.extend(i.name for i in batch)
        return echo(batch)

    code, logs = run_task(store, cfg_for(0, 1, GPUB_JOB_NAME="job-new"), counting)
    assert code == EXIT_OK
    assert calls == ["d/f0002.jsonl"]  # only the changed input: the rest is done
    assert store.objects[OUT + "d/f0002.out"] == b'{"I": "NEW"}\n'  # the stale one replaced
    record = plan_record(store)
    assert record["job"] == "job-new" and record["already_done"] == 5
    assert store.gens[OUT + contract.PLAN_NAME] != old_plan
    assert logs[-1]["skipped"] == 5 and logs[-1]["total"] == 6


def test_racing_planners_agree_on_one_plan() -> None:
    store = MemStore()
    seed_inputs(store, 8)
    cfg = cfg_for(0, 2)
    log = JsonLogger(io.StringIO())
    first = JobPlanner(cfg, store, log)  # type: ignore[arg-type]
    share_a = first.my_share()
    # A second planner that read no plan before the first committed: its create(...=0) 412s
    # and it adopts the committed plan instead of writing another.
    second = JobPlanner(cfg_for(0, 2, BATCH_TASK_RETRY_ATTEMPT="1"), store,  # type: ignore[arg-type]
                        log)
    winner = second._make(None)
    assert winner.record["plan_id"] == plan_record(store)["plan_id"]
    assert second._share_of(winner) == share_a


# ---- item 4: a short listing ---------------------------------------------------------------

def test_short_listing_is_relisted_until_the_files_arrive() -> None:
    store = MemStore()
    seed_inputs(store, 8)

    def upload_the_rest(sleeps: int) -> None:
        if sleeps == 2:
            seed_inputs(store, 10)

    fake = FakeTime(upload_the_rest)
    code, logs = run_task(store, cfg_for(0, 1, GPUB_EXPECTED_INPUTS="10"), fake=fake)
    assert code == EXIT_OK and logs[-1]["ok"] == 10
    assert plan_record(store)["listed"] == 10
    assert sum(r["message"] == "short listing; listing again" for r in logs) == 2


def test_short_listing_fails_with_the_reason_for_every_task() -> None:
    store = MemStore()
    seed_inputs(store, 8)
    fake = FakeTime()
    with pytest.raises(PlanFailed, match="listed 8 of the 10 inputs"):
        run_task(store, cfg_for(0, 2, GPUB_EXPECTED_INPUTS="10", GPUB_LISTING_WAIT_S="60"),
                 fake=fake)
    assert fake.now >= 60 and len(fake.sleeps) <= 7
    record = plan_record(store)
    assert record["status"] == "failed" and "listed 8 of the 10" in str(record["reason"])
    assert record["listed"] == 8 and record["expected"] == 10
    with pytest.raises(PlanFailed, match="listed 8 of the 10"):
        run_task(store, cfg_for(1, 2, GPUB_EXPECTED_INPUTS="10"))
    assert outputs(store) == []
    # A retry of task 0 after the files arrived re-plans and succeeds.
    seed_inputs(store, 10)
    retry = cfg_for(0, 2, GPUB_EXPECTED_INPUTS="10", BATCH_TASK_RETRY_ATTEMPT="1")
    assert run_task(store, retry)[0] == EXIT_OK
    assert plan_record(store)["status"] == "planned"


# ---- item 8: outputs are the done markers ----------------------------------------------------

def test_an_input_with_several_outputs_is_done_only_when_all_exist() -> None:
    store = MemStore()
    seed_inputs(store, 3)

    def two(batch: list[Item]) -> Sequence[Result]:
        return [o for i in batch
                for o in (i.output(b"a", suffix=".a"), i.output(b"b", suffix=".b"))]

    assert run_task(store, cfg_for(0, 1), two)[0] == EXIT_OK
    del store.objects[OUT + "d/f0001.b"]  # as if the attempt died between the two uploads
    calls: list[str] = []

    def counting(batch: list[Item]) -> Sequence[Result]:
        calls.extend(i.name for i in batch)
        return two(batch)

    code, logs = run_task(store, cfg_for(0, 1, BATCH_TASK_RETRY_ATTEMPT="1"), counting)
    assert code == EXIT_OK and calls == ["d/f0001.jsonl"]
    assert logs[-1]["outputs_created"] == 1 and logs[-1]["outputs_existing"] == 1


def test_an_input_with_no_output_gets_a_marker_and_is_not_redone() -> None:
    store = MemStore()
    seed_inputs(store, 2)
    assert run_task(store, cfg_for(0, 1), lambda batch: [])[0] == EXIT_OK
    assert len(store.names(OUT + contract.DONE_DIR)) == 2
    calls: list[str] = []

    def nothing(batch: list[Item]) -> Sequence[Result]:
        calls.extend(i.name for i in batch)
        return []

    code, _ = run_task(store, cfg_for(0, 1, BATCH_TASK_RETRY_ATTEMPT="1"), nothing)
    assert code == EXIT_OK and calls == []


def test_an_output_of_another_input_is_never_overwritten() -> None:
    store = MemStore()
    seed_inputs(store, 2)
    store.write(OUT + "d/f0000.out", b"someone else's", {contract.META_INPUT: "gs://b/other"})
    code, logs = run_task(store, cfg_for(0, 1))
    assert code == EXIT_OK
    assert store.objects[OUT + "d/f0000.out"] == b"someone else's"
    assert any(str(r["message"]).startswith("output exists") for r in logs)


# ---- one planner: bin/submit and the job size and split alike --------------------------------

@pytest.mark.parametrize(("n", "fpt", "cap"), [
    (1, None, None), (7, None, 3), (10, 4, None), (10, 4, 2), (250_001, 2, None),
    (9, None, None), (12, 5, 8)])
def test_submit_and_the_contract_size_jobs_alike(n: int, fpt: int | None, cap: int | None
                                                 ) -> None:
    objects = [ObjectInfo(f"f{i:06d}.jsonl", i % 7, "1") for i in range(n)]
    p = submit_planner.plan_tasks(objects, files_per_task=fpt,
                                  parallelism_caps=[("cap", cap)])
    split = contract.task_split(n, fpt, cap)
    assert (p.task_count, p.parallelism, p.files_per_task) == (
        split.task_count, split.parallelism, split.files_per_task)
    # The job's own split of the same objects over the same task count gives the same shards.
    ordered, per_task = plan.order_for_tasks(objects, split.task_count, fpt)
    assert ordered == p.objects and per_task == p.files_per_task


def test_more_files_than_the_task_count_was_sized_for_still_all_land_in_a_task() -> None:
    objects = [ObjectInfo(f"f{i:03d}.jsonl", 1, "1") for i in range(11)]
    ordered, fpt = plan.order_for_tasks(objects, 2, 4)  # sized for 8 at 4 per task
    got = [o for s in plan.shards(ordered, 2, fpt) for o in s]
    assert sorted(got) == sorted(objects)


def test_submit_keeps_refusing_unsafe_names_and_skipping_other_files() -> None:
    from submit.errors import SubmitError

    objects = [ObjectInfo(n, 1, "1") for n in ("a.jsonl", "b.txt", "_READY", "x/")]
    assert [o.name for o in submit_planner.select_inputs(objects, "jsonl")] == ["a.jsonl"]
    with pytest.raises(SubmitError, match=r"'\.\.'"):
        submit_planner.select_inputs([ObjectInfo("s/../a.jsonl", 1, "1")], "jsonl")


def test_the_planning_benchmark_runs_and_reports_list_calls() -> None:
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-m", "bench.plan", "--files", "3000", "--real", "0"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    assert line["name"] == "fake_listing" and line["files"] == 3000
    assert line["list_calls"] == 3 + 1  # the inputs in pages of 1,000, the outputs once


def test_resume_among_many_other_outputs_checks_each_input_instead() -> None:
    store = MemStore()
    seed_inputs(store, 3)
    assert run_task(store, cfg_for(0, 1))[0] == EXIT_OK
    for i in range(3_100):  # other tasks' outputs under the share's common prefix
        store.write(f"{OUT}d/f000-{i:05d}.out", b"x", {contract.META_INPUT: f"gs://b/o{i}"})
    del store.objects[OUT + "d/f0001.out"]  # the attempt died before this one was written
    store.requests.clear()
    calls: list[str] = []

    def counting(batch: list[Item]) -> Sequence[Result]:
        calls.extend(i.name for i in batch)
        return echo(batch)

    retry = cfg_for(0, 1, BATCH_TASK_RETRY_ATTEMPT="1")
    assert run_task(store, retry, counting)[0] == EXIT_OK
    assert calls == ["d/f0001.jsonl"]
    assert done(store, 1)
    # The big listing gives up at its budget (1,000 objects per input: 4 pages), then one
    # small listing per input (3), plus the `_done/` markers' (1).
    assert store.requests["list"] == 4 + 1 + 3


@pytest.mark.parametrize(("env", "needle"), [
    ({"GPUB_EXPECTED_INPUTS": "many"}, "GPUB_EXPECTED_INPUTS must be a number"),
    ({"GPUB_EXPECTED_INPUTS": "-1"}, "GPUB_EXPECTED_INPUTS must be >= 0"),
    ({"GPUB_PLAN_WAIT_S": "soon"}, "GPUB_PLAN_WAIT_S"),
    ({"GPUB_INPUT_PREFIX": ""}, "set GPUB_INPUT_PREFIX"),
])
def test_plan_variables_are_checked_with_the_name_and_what_is_allowed(
        env: dict[str, str], needle: str) -> None:
    from gpub_runner.config import ConfigError

    with pytest.raises(ConfigError, match=needle):
        cfg_for(**env)


def test_plan_mode_is_the_prefix_alone() -> None:
    cfg = cfg_for(GPUB_EXPECTED_INPUTS="7")
    assert cfg.plans_itself and cfg.expected_inputs == 7 and cfg.input_format == "jsonl"
    assert not cfg_for(GPUB_MANIFEST="gs://bkt/out/_manifest.jsonl").plans_itself


def test_a_rerun_clears_error_records_of_files_since_fixed_or_removed() -> None:
    store = MemStore()
    seed_inputs(store, 3, ["notes.txt"])
    store.write("bkt/in/d/f0001.jsonl", b"bad")
    code, _ = run_task(store, cfg_for(0, 1, GPUB_JOB_NAME="job-a", GPUB_FAILURE_BUDGET="0.5"))
    assert code == EXIT_OK
    assert store.names(OUT + "_errors/") == [OUT + "_errors/d/f0001.jsonl.json",
                                            OUT + "_errors/notes.txt.json"]
    # The client fixes f0001, removes notes.txt and re-runs the batch (a new job).
    store.write("bkt/in/d/f0001.jsonl", b'{"i": 1}\n')
    del store.objects["bkt/in/notes.txt"]
    assert run_task(store, cfg_for(0, 1, GPUB_JOB_NAME="job-b"))[0] == EXIT_OK
    assert store.names(OUT + "_errors/") == []  # the outcome is not PARTIAL for old news
    assert done(store, 1)
