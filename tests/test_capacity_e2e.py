"""End to end on the local backend: `bin/submit` (a subprocess, real
Batch gRPC and Cloud Storage clients) against the local Batch server with simulated capacity
(local/capacity.py) and injected preemptions.

The `uppercase` job of environment dev is given a ladder and candidate regions by a wrapper
that patches the declared environments (bench/capacity_submit.py); its synthesized JSON is
rendered from the same patched spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BUCKET = "example-ml-dev-batch-data"
pytestmark = pytest.mark.slow


class Local:
    def __init__(self, tmp: Path, server_env: dict[str, str], ladder: dict[str, Any]) -> None:
        from local.backend import LocalBackend

        self.root, self.synth, self.ladder = tmp / "local", tmp / "cdktf.out", ladder
        _render(self.synth, ladder)
        self.backend = LocalBackend(root=self.root, env=server_env)
        self.endpoints = self.backend.ensure_running()
        self.storage().create_bucket(BUCKET)

    def storage(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined]

        os.environ["STORAGE_EMULATOR_HOST"] = self.endpoints.gcs_endpoint
        return storage.Client(project="test", credentials=AnonymousCredentials())

    def submit(self, name: str, *extra: str,
               scale: str = "0.02") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
        env.update(GPUB_LOCAL_ROOT=str(self.root), GPUB_SYNTH_DIR=str(self.synth),
                   GPUB_SUBMITTER="ci-test", GPUB_LADDER_TIME_SCALE=scale,
                   GPUB_TEST_LADDER=json.dumps(self.ladder))
        args = ["uppercase", "--env", "dev", "--input", f"gs://{BUCKET}/jobs/in/{name}/",
                "--output", f"gs://{BUCKET}/jobs/out/{name}/", "--local", "--json",
                "--poll", "0.2", *extra]
        return subprocess.run([sys.executable, "-m", "bench.capacity_submit", *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=240)

    def upload(self, name: str, n: int, bad: int = 0) -> None:
        bucket = self.storage().bucket(BUCKET)
        for i in range(n):
            text = "not json\n" if i < bad else json.dumps({"id": i, "text": f"hi {i}"}) + "\n"
            bucket.blob(f"jobs/in/{name}/f{i:03d}.jsonl").upload_from_string(text)

    def record(self, name: str) -> dict[str, Any]:
        blob = self.storage().bucket(BUCKET).blob(f"jobs/out/{name}/_run.json")
        return dict(json.loads(blob.download_as_bytes()))

    def job_state(self, region: str, job_id: str) -> str:
        from local.client import batch_client

        job = batch_client(self.endpoints.batch_target).get_job(
            name=f"projects/example-ml-dev/locations/{region}/jobs/{job_id}")
        return str(job.status.state.name)

    def stop(self) -> None:
        self.backend.stop()
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


def _render(out: Path, ladder: dict[str, Any]) -> None:
    from bench.capacity_submit import patched_environments
    from jobs.render import render_job

    for env in patched_environments(ladder):
        for spec in env.jobs:
            path = out / "jobs" / env.stack_name / f"{spec.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(render_job(spec, env.render_context(spec.name))))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    started: list[Local] = []

    def start(server_env: dict[str, str], ladder: dict[str, Any]) -> Local:
        b = Local(tmp_path, server_env, ladder)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def _actions(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["provisioning"], s["region"], s["action"]) for s in result["ladder"]]


def test_zero_quota_in_region_a_runs_in_region_b_and_says_why(make: Any) -> None:
    b = make({"LOCAL_BATCH_QUOTAS":
              "europe-west4/CPUS-PER-VM-FAMILY-per-project-region:E2=0"},
             {"ladder": [{"provisioning": "standard"}],
              "candidate_regions": ["europe-west4", "us-central1"]})
    b.upload("quota", 3)
    proc = b.submit("quota", "--wait")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED" and result["region"] == "us-central1"
    assert "/locations/us-central1/" in result["name"]
    assert ("rung 1 STANDARD in europe-west4: skipped (CPUS-PER-VM-FAMILY-per-project-region "
            "in europe-west4 is 0, the run needs 2 E2 vCPUs)") in proc.stderr
    assert _actions(result)[0] == ("STANDARD", "europe-west4", "skipped")
    assert b.record("quota")["ladder"][0]["action"] == "skipped"  # kept in the run record


def test_no_quota_anywhere_is_exit_2_with_the_numbers(make: Any) -> None:
    b = make({"LOCAL_BATCH_QUOTAS": "europe-west4/CPUS-PER-VM-FAMILY-per-project-region=1"},
             {"ladder": [{"provisioning": "standard"}], "candidate_regions": ["europe-west4"]})
    b.upload("noquota", 2)
    proc = b.submit("noquota")
    assert proc.returncode == 2, proc.stderr
    assert "no rung of the ladder can ever run" in proc.stderr
    assert "is 1, the run needs 2 E2 vCPUs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(b.storage().list_blobs(BUCKET, prefix="jobs/out/noquota/"))  # nothing made


def test_a_region_outside_the_guardrails_is_skipped_with_the_reason(make: Any) -> None:
    """Each rung's job must pass the environment's guardrails too (here: its regions)."""
    b = make({"LOCAL_BATCH_QUOTAS": "europe-west4/CPUS-PER-VM-FAMILY-per-project-region:E2=0"},
             {"ladder": [{"provisioning": "standard"}],
              "candidate_regions": ["europe-west4", "us-central1"],
              "_allowed_regions": ["europe-west4"]})
    b.upload("guard", 1)
    proc = b.submit("guard")
    assert proc.returncode == 2, proc.stderr
    assert ("rung 1 STANDARD in us-central1: skipped (guardrail: GPUB_JOB_4 "
            "allocationPolicy.location.allowedLocations: regions/us-central1 is outside the "
            "allowed regions of dev") in proc.stderr
    assert "no rung of the ladder can ever run" in proc.stderr


def test_spot_stockout_falls_to_standard_after_the_deadline(make: Any) -> None:
    b = make({"LOCAL_BATCH_STOCKOUT": "europe-west4/spot"},
             {"ladder": [{"provisioning": "spot", "deadline_s": 60},
                         {"provisioning": "standard"}],
              "candidate_regions": ["europe-west4"]})
    b.upload("stockout", 4)
    proc = b.submit("stockout", "--wait")  # deadline 60 s x 0.02 = 1.2 s
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED"
    assert _actions(result) == [("SPOT", "europe-west4", "created"),
                                ("SPOT", "europe-west4", "cancelled"),
                                ("STANDARD", "europe-west4", "created"),
                                ("STANDARD", "europe-west4", "running")]
    cancelled = result["ladder"][1]
    assert "no VM after 1.2s" in cancelled["reason"]
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in cancelled["reason"]
    first, second = cancelled["job_id"], result["job_id"]
    assert first.endswith("-1") and second.endswith("-2")
    assert b.job_state("europe-west4", first) == "CANCELLED"
    assert "waiting on rung 2 STANDARD in europe-west4" in proc.stderr
    record = b.record("stockout")
    assert record["attempts"] == [first, second]
    assert [s["action"] for s in record["ladder"]] == ["created", "cancelled", "created",
                                                        "running"]


def _exit_codes(b: Local, region: str, job_id: str) -> list[list[int]]:
    """Per task, the exit codes of its ended attempts (Batch status events)."""
    from local.client import batch_client

    client = batch_client(b.endpoints.batch_target)
    parent = f"projects/example-ml-dev/locations/{region}/jobs/{job_id}/taskGroups/group0"
    return [[e.task_execution.exit_code for e in t.status.status_events
             if "task_execution" in e] for t in client.list_tasks(parent=parent)]


PREEMPT_HALF = {"LOCAL_BATCH_PREEMPT_RATE": "0.5", "LOCAL_BATCH_PREEMPT_ATTEMPTS": "2",
                "LOCAL_BATCH_PREEMPT_MAX_DELAY_S": "0.3",
                "LOCAL_BATCH_PREEMPT_CODES": "50001,50002,50003,50004,50006"}
SPOT_JOB = {"ladder": [{"provisioning": "spot"}], "candidate_regions": ["europe-west4"],
            "max_retry_count": 3, "files_per_task": 2}


def test_half_preempted_completes_and_counts_lost_vms_apart_from_app_failures(
        make: Any) -> None:
    """Half the attempts lose their VM (any lost-VM code); one input file is bad on purpose:
    the runner's failure budget absorbs it, Batch never retries it, and the summary counts it
    apart from the preemptions. 12 tasks: all 12 first attempts kept is 1 in 4,096."""
    from jobs.retries import VM_LOST_EXIT_CODES

    b = make(PREEMPT_HALF, SPOT_JOB | {"failure_budget": 0.5})
    b.upload("preempt", 24, bad=1)
    proc = b.submit("preempt", "--wait")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED" and result["task_count"] == 12
    codes = [c for task in _exit_codes(b, "europe-west4", result["job_id"]) for c in task]
    lost = [c for c in codes if c in VM_LOST_EXIT_CODES]
    assert set(codes) <= {0, *VM_LOST_EXIT_CODES}
    assert result["preemptions"] == len(lost) >= 1
    assert result["retries"] == result["preemptions"]
    assert result["application_failures"] == 0  # no task attempt failed on its own
    assert result["files_failed"] == 1  # the bad file, in the runner's own budget
    assert f"preemptions {result['preemptions']} (lost VMs)" in proc.stderr


def test_an_application_failure_past_its_budget_is_never_retried(make: Any) -> None:
    """Exit 3 (failure budget exceeded) fails the task on its first try although the job
    retries lost VMs 3 times (docs/submit.md); the reported exit code is the last attempt's."""
    b = make(PREEMPT_HALF | {"LOCAL_BATCH_PREEMPT_RATE": "0"}, SPOT_JOB | {"failure_budget": 0.0})
    b.upload("overbudget", 2, bad=1)
    proc = b.submit("overbudget", "--wait")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "FAILED"
    assert _exit_codes(b, "europe-west4", result["job_id"]) == [[3]]  # one attempt, no retry
    assert (result["application_failures"], result["preemptions"], result["retries"]) == (1, 0, 0)
    assert result["exit_code"] == 3
    assert "exit code 3 (last attempt)" in proc.stderr


def test_a_capacity_failure_moves_on_without_waiting_for_the_deadline(make: Any) -> None:
    b = make({"LOCAL_BATCH_STOCKOUT_FAIL": "europe-west4/spot"},
             {"ladder": [{"provisioning": "spot", "deadline_s": 3600},
                         {"provisioning": "standard"}],
              "candidate_regions": ["europe-west4"]})
    b.upload("capfail", 2)
    proc = b.submit("capfail", "--wait", scale="1")  # an hour's deadline: only the failure
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED"
    moved = result["ladder"][1]
    assert moved["action"] == "cancelled" and moved["at_s"] < 60
    assert moved["reason"].startswith("failed for capacity: ")
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in moved["reason"]
    assert b.job_state("europe-west4", moved["job_id"]) == "FAILED"


def test_every_rung_stocked_out_is_exit_4_and_nothing_left_running(make: Any) -> None:
    b = make({"LOCAL_BATCH_STOCKOUT": "*/*"},
             {"ladder": [{"provisioning": "spot", "deadline_s": 60},
                         {"provisioning": "standard", "deadline_s": 60}],
              "candidate_regions": ["europe-west4", "us-central1"]})
    b.upload("nowhere", 2)
    proc = b.submit("nowhere")
    assert proc.returncode == 4, proc.stderr
    assert "no rung of the ladder got a VM" in proc.stderr and "Traceback" not in proc.stderr
    record = b.record("nowhere")
    cancelled = [s for s in record["ladder"] if s["action"] == "cancelled"]
    assert [(s["provisioning"], s["region"]) for s in cancelled] == [
        ("SPOT", "europe-west4"), ("SPOT", "us-central1"),
        ("STANDARD", "europe-west4"), ("STANDARD", "us-central1")]
    assert len(record["attempts"]) == 4
    for s in cancelled:
        assert b.job_state(s["region"], s["job_id"]) in ("CANCELLED", "CANCELLATION_IN_PROGRESS")


def test_a_run_moved_to_another_region_still_owns_its_output(make: Any) -> None:
    """The ladder moved the run to us-central1, where it waits for capacity; the same submit
    again lists jobs in europe-west4 first: it must still see the active run (exit 3)."""
    b = make({"LOCAL_BATCH_STOCKOUT": "*/spot,europe-west4/standard",
              "LOCAL_BATCH_TIME_TO_CAPACITY": "us-central1/standard=600"},
             {"ladder": [{"provisioning": "spot", "deadline_s": 60},
                         {"provisioning": "standard"}],
              "candidate_regions": ["europe-west4", "us-central1"]})
    b.upload("moved", 2)
    first = b.submit("moved")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["rung"], result["region"]) == ("rung 2 STANDARD in us-central1", "us-central1")
    assert b.job_state("us-central1", result["job_id"]) == "QUEUED"
    again = b.submit("moved")
    assert again.returncode == 3, again.stderr
    assert f"job {result['job_id']} is already running" in again.stderr


def test_a_run_the_ladder_finished_in_another_region_is_reported_done(make: Any) -> None:
    """The same submit again after the run SUCCEEDED in us-central1: the state of its last
    attempt is asked where the ladder created it, so nothing is created (not a "resume")."""
    b = make({"LOCAL_BATCH_STOCKOUT": "europe-west4/standard"},
             {"ladder": [{"provisioning": "standard"}],
              "candidate_regions": ["europe-west4", "us-central1"]})
    b.upload("doneelsewhere", 2)
    first = b.submit("doneelsewhere", "--wait", scale="0.002")  # 900 s default x 0.002
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    assert (done["state"], done["region"]) == ("SUCCEEDED", "us-central1")
    again = b.submit("doneelsewhere")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["new"] is False and result["job_id"] == done["job_id"]
    assert "already completed this run (SUCCEEDED)" in again.stderr
