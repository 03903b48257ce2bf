"""The deployed dispatcher source, executed (workflows-emulator with the local cloud's
patches) against a small stateful fake of Cloud Storage, Batch and Pub/Sub: one marker, one
job, one outcome, whatever the batch size and however often the marker is delivered
(issue 20, items 1, 3, 4, 5, 6)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from gpub_runner import contract
from workflows_emulator.utils import WorkflowError

from bench.workflow_fake import PARENT, FakeCloud, StepCounter, execute, marker_event, params
from stacks.workflow_params import EXPECTED_INPUTS
from submit import ids
from submit.ownership import RunRecord

BUCKET = "p-dev-acme"
RESULTS = "projects/p-dev/topics/batch-acme-results"
MARKER = "inputs/_ready/embed/b-7"
OUTPUT = "outputs/embed/b-7/"


def _marked(cloud: FakeCloud, count: Any = 3, batch: str = "b-7") -> dict[str, Any]:
    gen = cloud.put(BUCKET, f"inputs/_ready/embed/{batch}", {"count": count})
    return marker_event(BUCKET, f"inputs/_ready/embed/{batch}", gen)


def _variables(body: dict[str, Any]) -> dict[str, str]:
    return dict(body["taskGroups"][0]["taskSpec"]["environment"]["variables"])


def test_a_marker_makes_one_job_that_plans_itself_and_one_outcome() -> None:
    cloud = FakeCloud()
    event = _marked(cloud, count=1200)
    gen = event["data"]["message"]["attributes"]["objectGeneration"]
    result = execute(params(), event, cloud)
    (job,) = cloud.jobs.values()
    env = _variables(job.body)
    assert env[contract.INPUT_PREFIX] == f"gs://{BUCKET}/inputs/embed/b-7/"
    assert env[contract.OUTPUT_PREFIX] == f"gs://{BUCKET}/{OUTPUT}"
    assert env[EXPECTED_INPUTS] == "1200"
    assert contract.INPUT_OBJECTS not in env and not env.get(contract.MANIFEST)
    assert job.body["taskGroups"][0]["taskCount"] == "60"  # 1,200 files, 20 per task
    assert job.body["allocationPolicy"]["serviceAccount"]["email"] == (
        "run-acme@p-dev.iam.gserviceaccount.com")
    assert job.body["labels"]["marker-generation"] == gen
    # Deterministic ids, the same rule as submit/ids.py.
    assert job.name == f"{PARENT}/jobs/{ids.trigger_job_id('embed', 'acme', 'b-7', gen)}"
    assert job.request_id == ids.trigger_request_id("embed", "acme", "b-7", gen)
    assert re.fullmatch(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", job.name.rsplit("/", 1)[1])
    # The workflow never lists inputs/.
    assert all(not a["prefix"].startswith("inputs/") for a in cloud.named("objects.list"))
    # The run record is the one bin/submit reads.
    record = RunRecord.model_validate(cloud.objects[(BUCKET, OUTPUT + "_run.json")][1])
    assert (record.client, record.job, record.env) == ("acme", "embed", "dev")
    assert record.attempts == [job.name.rsplit("/", 1)[1]]
    (outcome,) = cloud.outcomes(RESULTS)
    keys = {"client", "job", "batch", "env", "state", "job_id", "output", "inputs", "refused",
            "errors", "reason", "task_attempts", "vm_losses", "marker_generation"}
    assert keys <= set(outcome) and outcome == result
    assert (outcome["state"], outcome["marker_generation"]) == ("SUCCEEDED", gen)


def test_every_delivery_after_the_first_follows_the_same_job_and_publishes_nothing() -> None:
    """Pub/Sub and Eventarc deliver at least once: the old workflow made a job per execution."""
    cloud = FakeCloud()
    event = _marked(cloud)
    execute(params(), event, cloud)
    again = execute(params(), event, cloud)
    assert str(again).startswith("duplicate")
    assert len(cloud.jobs) == 1 and len(cloud.outcomes(RESULTS)) == 1
    creates = cloud.named("jobs.create")
    assert len(creates) == 2 and creates[0]["jobId"] == creates[1]["jobId"]


def test_a_second_delivery_publishes_when_the_first_execution_died() -> None:
    cloud = FakeCloud()
    event = _marked(cloud)
    cloud.faults["topics.publish"] = 100  # the first execution never publishes
    with pytest.raises(WorkflowError):
        execute(params(), event, cloud)
    assert cloud.outcomes(RESULTS) == [] and len(cloud.jobs) == 1
    del cloud.objects[(BUCKET, OUTPUT + "_outcomes/" + _gen(event) + ".json")]  # it died first
    cloud.faults.clear()
    execute(params(), event, cloud)
    assert len(cloud.jobs) == 1
    assert [o["state"] for o in cloud.outcomes(RESULTS)] == ["SUCCEEDED"]


def _gen(event: dict[str, Any]) -> str:
    return str(event["data"]["message"]["attributes"]["objectGeneration"])


def test_a_new_marker_generation_reruns_a_failed_batch_as_a_new_job() -> None:
    """The client re-runs a failed batch by writing its marker again (client-<c> may
    overwrite only its markers): a new generation, a new job, a new outcome."""
    cloud = FakeCloud()
    cloud.states = ["FAILED"]
    with pytest.raises(WorkflowError, match="ended FAILED"):
        execute(params(), _marked(cloud), cloud)
    cloud.states = ["SUCCEEDED"]
    execute(params(), _marked(cloud), cloud)
    assert len(cloud.jobs) == 2
    assert [o["state"] for o in cloud.outcomes(RESULTS)] == ["FAILED", "SUCCEEDED"]
    record = RunRecord.model_validate(cloud.objects[(BUCKET, OUTPUT + "_run.json")][1])
    assert record.attempts == [j.name.rsplit("/", 1)[1] for j in cloud.jobs.values()]


def test_an_active_run_on_the_output_is_never_joined_by_a_second_job() -> None:
    """One active run per output, whichever path started it (bin/submit's record here)."""
    cloud = FakeCloud()
    cloud.put(BUCKET, OUTPUT + "_run.json", {
        "job": "embed", "client": "acme", "env": "dev", "input": "x", "output": "y",
        "manifest_hash": "abc", "attempts": ["embed-0123456789-1"]})
    cloud.jobs_create({"parent": PARENT, "jobId": "embed-0123456789-1", "requestId": "r",
                       "body": {}})
    cloud.jobs["embed-0123456789-1"].states = ["RUNNING"]
    with pytest.raises(WorkflowError, match="belongs to the active run of job embed-0123456789-1"):
        execute(params(), _marked(cloud), cloud)
    assert len(cloud.jobs) == 1
    (outcome,) = cloud.outcomes(RESULTS)
    assert outcome["state"] == "FAILED" and "bin/submit cancel" in outcome["reason"]


def test_transient_errors_on_every_call_are_retried() -> None:
    cloud = FakeCloud()
    event = _marked(cloud)
    for call in ("objects.get", "objects.insert", "jobs.create", "jobs.get", "tasks.list",
                 "objects.list", "topics.publish"):
        cloud.faults[call] = 2
    execute(params(), event, cloud)
    assert [o["state"] for o in cloud.outcomes(RESULTS)] == ["SUCCEEDED"]
    assert len(cloud.jobs) == 1


def test_retries_exhausted_still_give_an_outcome_with_the_reason() -> None:
    cloud = FakeCloud()
    event = _marked(cloud)
    cloud.faults["jobs.get"] = 1000
    with pytest.raises(WorkflowError):
        execute(params(), event, cloud)
    (outcome,) = cloud.outcomes(RESULTS)
    assert outcome["state"] == "FAILED"
    assert "jobs.get failed after retries" in outcome["reason"]
    assert "service unavailable" in outcome["reason"]  # the last error, named


def test_refused_inputs_or_errors_make_a_partial_outcome_with_the_plan_counts() -> None:
    cloud = FakeCloud()
    cloud.put(BUCKET, OUTPUT + "_plan.json", {"listed": 6, "accepted": 4, "refused": 2,
                                              "expected": 6, "reason": ""})
    assert execute(params(), _marked(cloud, count=6), cloud)["state"] == "PARTIAL"
    (outcome,) = cloud.outcomes(RESULTS)
    assert (outcome["inputs"], outcome["refused"], outcome["state"]) == (4, 2, "PARTIAL")

    cloud = FakeCloud()
    cloud.put(BUCKET, OUTPUT + "_errors/a,b.jsonl.json", {"error": "refused"})
    execute(params(), _marked(cloud), cloud)
    (outcome,) = cloud.outcomes(RESULTS)
    assert (outcome["errors"], outcome["state"]) == (True, "PARTIAL")


def test_a_failed_job_says_why_and_counts_attempts_and_vm_losses() -> None:
    cloud = FakeCloud()
    cloud.states = ["FAILED"]
    event = _marked(cloud)
    original = cloud.jobs_create

    def create(a: dict[str, Any]) -> Any:
        out = original(a)
        job = cloud.jobs[a["jobId"]]
        job.events = [{"description": "Job state is set from QUEUED to SCHEDULED."},
                      {"description": "Job state is set from RUNNING to FAILED: task 0 "
                                      "failed with exit code 3 (failure budget)."}]
        running = {"description": "Task state is updated from ASSIGNED to RUNNING on z."}
        lost = {"description": "Task state is updated from RUNNING to FAILED on z with "
                               "exit code 50001."}
        job.tasks = [{"status": {"statusEvents": [running, lost, running]}},
                     {"status": {"statusEvents": [running]}}]
        return out

    cloud.jobs_create = create  # type: ignore[method-assign]
    with pytest.raises(WorkflowError, match="failure budget"):
        execute(params(), event, cloud)
    (outcome,) = cloud.outcomes(RESULTS)
    assert outcome["reason"].endswith("exit code 3 (failure budget).")
    assert (outcome["task_attempts"], outcome["vm_losses"]) == (3, 1)


@pytest.mark.parametrize("content", ['{"files": 3}', "not json", '{"count": 0}', '{"count": "3"}'])
def test_a_marker_without_a_count_fails_with_the_reason_and_starts_nothing(content: str) -> None:
    cloud = FakeCloud()
    gen = cloud.put(BUCKET, MARKER, content)
    with pytest.raises(WorkflowError, match="count"):
        execute(params(), marker_event(BUCKET, MARKER, gen), cloud)
    assert cloud.jobs == {}
    (outcome,) = cloud.outcomes(RESULTS)
    assert outcome["state"] == "FAILED" and "count" in outcome["reason"]


def test_the_steps_of_a_run_do_not_grow_with_the_batch() -> None:
    counts = []
    for n in (10, 1000, 100_000):
        cloud, counter = FakeCloud(), StepCounter()
        execute(params(), _marked(cloud, count=n), cloud, counter)
        counts.append(counter.steps)
    assert counts[0] == counts[1] == counts[2], counts


def test_a_call_by_hand_uses_the_markers_current_generation() -> None:
    cloud = FakeCloud()
    event = _marked(cloud)
    execute(params(), {"client": "acme", "batch": "b-7"}, cloud)
    (job,) = cloud.jobs.values()
    assert job.name.endswith(ids.trigger_job_id("embed", "acme", "b-7", _gen(event)))
    assert job.body["labels"]["trigger"] == "manual"
    assert str(execute(params(), event, cloud)).startswith("duplicate")  # the event, later


def test_a_schedule_republishes_only_unclaimed_markers_and_never_held_back_batches() -> None:
    cloud = FakeCloud()
    execute(params(), _marked(cloud, batch="done-1"), cloud)  # run: has a run record
    fresh = _marked(cloud, batch="new-1")  # marked, never run (its event was lost)
    cloud.put(BUCKET, "inputs/embed/held/a.jsonl", "{}")  # uploaded with --no-ready
    jobs_before = len(cloud.jobs)
    result = execute(params(), {"client": "acme", "trigger": "schedule"}, cloud)
    assert result["republished"] == 1 and len(cloud.jobs) == jobs_before
    (message,) = cloud.published["projects/p-dev/topics/batch-intake-embed"]
    attrs = message["attributes"]
    assert attrs["objectId"] == "inputs/_ready/embed/new-1"
    assert attrs["objectGeneration"] == _gen(fresh) and attrs["trigger"] == "schedule"
    # The re-published event runs like the upload's would have.
    again = marker_event(BUCKET, attrs["objectId"], int(attrs["objectGeneration"]))
    again["data"]["message"]["attributes"]["trigger"] = "schedule"
    assert execute(params(), again, cloud)["output"] == f"gs://{BUCKET}/outputs/embed/new-1/"


@pytest.mark.parametrize("name", ["inputs/embed/b-7/a.jsonl", "inputs/_ready/uppercase/b-7",
                                  "inputs/_ready/embed/_x", "inputs/_ready/embed/a/b"])
def test_anything_but_this_jobs_marker_is_ignored_without_a_call(name: str) -> None:
    cloud = FakeCloud()
    assert str(execute(params(), marker_event(BUCKET, name, 1), cloud)).startswith("ignored")
    assert cloud.calls == []


def test_a_bucket_that_is_not_a_client_of_the_job_runs_nothing() -> None:
    """The source lists no clients: a bucket of no client (its marker unreadable to the
    workflow's account, which holds grants on client buckets only) fails at the marker read,
    creating no job; it touches no bucket but that one (where IAM refuses its outcome write:
    the fake has no IAM) and its outcome goes to Pub/Sub, where a missing results topic sends
    it to the dead letters. A name no client can have fails before any call."""
    cloud = FakeCloud()
    with pytest.raises(WorkflowError, match="cannot read the marker"):
        execute(params(), marker_event("p-dev-initech", MARKER, 1), cloud)
    names = [name for name, _ in cloud.calls]
    assert names[0].endswith("objects.get") and not [n for n in names if "batch" in n], names
    assert {a["bucket"] for n, a in cloud.calls if "storage" in n} == {"p-dev-initech"}
    cloud = FakeCloud()
    with pytest.raises(WorkflowError, match="not a client name: x_y"):
        execute(params(), marker_event("p-dev-x_y", MARKER, 1), cloud)
    assert cloud.calls == []


def test_a_cancelled_job_ends_the_execution_with_a_cancelled_outcome() -> None:
    cloud = FakeCloud()
    cloud.states = ["RUNNING", "CANCELLED"]
    with pytest.raises(WorkflowError, match="ended CANCELLED"):
        execute(params(), _marked(cloud), cloud)
    assert [o["state"] for o in cloud.outcomes(RESULTS)] == ["CANCELLED"]
    assert json.loads(json.dumps(cloud.published[RESULTS][0]["attributes"]))["state"] == (
        "CANCELLED")


def test_a_client_may_have_at_most_ten_jobs() -> None:
    """Each job's markers need one of a bucket's 10 OBJECT_FINALIZE notification
    configurations (cloud.google.com/storage/docs/pubsub-notifications)."""
    from types import SimpleNamespace

    from stacks.client import MAX_JOBS_PER_CLIENT, _validate
    from stacks.environments import dev
    from stacks.settings import ClientSettings

    many = ClientSettings(name="acme", jobs=[f"j{i}" for i in range(MAX_JOBS_PER_CLIENT + 1)])
    props = SimpleNamespace(settings=dev(), onboarded=(), jobs={})
    with pytest.raises(ValueError, match=r"clients\.acme\.jobs: 11 jobs; a client may have at "
                                         r"most 10"):
        _validate(props, many)  # type: ignore[arg-type]
