"""Jobs run as they are written (docs/submit.md, "imported jobs keep their shape"): `run --config
FILE` and declared jobs without inputs keep their task count, parallelism and labels, and
every change submit must make is said (submit/asis.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacks.environments import dev
from submit import asis
from submit.errors import SubmitError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tests" / "fixtures" / "submit" / "hello_in_order.yaml"


def _job() -> dict:
    return asis.load_config(CONFIG)


def test_config_keeps_its_shape_and_says_what_changed() -> None:
    a = asis.adapt(dev(), "hello", _job(), client=None, parallelism=None, submitter="ci")
    group = a.job["taskGroups"][0]
    assert (int(group["taskCount"]), int(group["parallelism"])) == (3, 1)
    assert group["schedulingPolicy"] == "IN_ORDER"
    assert a.job["labels"]["team"] == "search"  # their own labels stay
    assert a.job["labels"]["env"] == "dev"
    assert "label env: 'prod' -> 'dev'" in a.changes
    assert a.job["allocationPolicy"]["location"]["allowedLocations"] == [
        "regions/europe-west4"]
    # the ad-hoc identity, since the file names none and there is no --client
    assert a.job["allocationPolicy"]["serviceAccount"]["email"] == dev().adhoc_sa_email
    # nothing else was changed, so nothing else is reported
    assert all(c.startswith(("label ", "allocationPolicy.location",
                             "allocationPolicy.serviceAccount")) for c in a.changes)


def test_parallelism_and_client_identity_changes_are_reported() -> None:
    env = dev()
    a = asis.adapt(env, "hello", _job(), client="acme", parallelism=2, submitter="ci")
    assert int(a.job["taskGroups"][0]["parallelism"]) == 2
    assert "parallelism: 1 -> 2 (--parallelism)" in a.changes
    email = a.job["allocationPolicy"]["serviceAccount"]["email"]
    assert email == env.run_sa_email("acme")
    assert any(c.startswith("allocationPolicy.serviceAccount.email:") for c in a.changes)


def test_same_job_same_run_base_other_job_other_base() -> None:
    env = dev()
    one = asis.adapt(env, "hello", _job(), client=None, parallelism=None, submitter="ci")
    two = asis.adapt(env, "hello", _job(), client=None, parallelism=None, submitter="ci")
    other = asis.adapt(env, "hello", _job(), client=None, parallelism=3, submitter="ci")
    assert one.base == two.base != other.base


def test_environment_ceilings_refuse_opinions_are_findings() -> None:
    env = dev()
    job = _job()
    job["taskGroups"][0]["parallelism"] = env.guardrails.max_parallelism + 1
    with pytest.raises(SubmitError, match="GPUB_JOB_6"):
        asis.adapt(env, "hello", job, client=None, parallelism=None, submitter="ci")
    gpu = _job()
    gpu["allocationPolicy"]["instances"][0]["policy"] = {"machineType": "g2-standard-8"}
    a = asis.adapt(env, "hello", gpu, client=None, parallelism=None, submitter="ci")
    assert any(f.startswith("warning: GPUB_JOB_10") for f in a.findings)  # a warning prints


def test_file_names_become_job_ids() -> None:
    assert asis.name_from_file(Path("Spot L4 finetune.yaml")) == "spot-l4-finetune"
    assert asis.name_from_file(Path("42.json")) == "job-42"


def _submit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "submit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from local.backend import LocalBackend

    root = tmp_path_factory.mktemp("asis") / "local"
    backend = LocalBackend(root=root)
    backend.ensure_running()
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env.update(GPUB_LOCAL_ROOT=str(root), GPUB_SUBMITTER="ci-test",
               PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'images/runner/src'}")
    try:
        yield env
    finally:
        backend.stop()


@pytest.mark.slow
def test_run_config_locally_keeps_shape_end_to_end(local_env: dict[str, str]) -> None:
    proc = _submit(local_env, "run", "--config", str(CONFIG), "--env", "dev", "--local",
                   "--wait", "--json", "--poll", "0.2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED"
    assert (result["task_count"], result["parallelism"]) == (3, 1)
    assert result["tasks"].get("SUCCEEDED") == 3
    assert "label env: 'prod' -> 'dev'" in result["changes"]
    assert "changed: label env: 'prod' -> 'dev'" in proc.stderr
    assert result["job_id"].startswith("hello-in-order-")


@pytest.mark.slow
def test_dry_run_prints_the_job_as_written(local_env: dict[str, str]) -> None:
    proc = _submit(local_env, "--config", str(CONFIG), "--env", "dev", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    assert job["taskGroups"][0]["taskCount"] in (3, "3")
    assert job["labels"]["team"] == "search"


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--config", "/nonexistent.yaml"], "--config: cannot read"),
    (["run", "--config", str(CONFIG), "--input", "gs://b/x/"], "--config: the job runs as "
                                                                  "written"),
    (["run", "uppercase", "--input", "gs://b/x/"], "--output: give both"),
    (["run", "uppercase"], "--input/--output: job 'uppercase' reads its inputs"),
    (["run"], "JOB: give a declared job name, or --config FILE"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str,
                                          tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env.update(GPUB_LOCAL_ROOT=str(tmp_path / "local"),
               PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'images/runner/src'}")
    proc = _submit(env, *args, "--env", "dev", "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "local").exists()  # nothing started, nothing created


class _Client:
    """Just enough of BatchServiceClient for `asis.create`: a listing and CreateJob."""

    def __init__(self, jobs: list) -> None:
        self.jobs = jobs
        self.created: list = []

    def list_jobs(self, parent: str, timeout: float) -> list:
        return self.jobs

    def get_job(self, name: str, timeout: float) -> None:
        from google.api_core import exceptions as gexc

        raise gexc.NotFound(name)

    def create_job(self, request, timeout: float):  # type: ignore[no-untyped-def]
        job = request.job
        job.name = f"{request.parent}/jobs/{request.job_id}"
        self.created.append(request.job_id)
        return job


def _existing(name: str, state: str):  # type: ignore[no-untyped-def]
    from google.cloud import batch_v1

    job = batch_v1.Job(name=f"projects/p/locations/r/jobs/{name}")
    job.status.state = batch_v1.JobStatus.State[state]
    return job


@pytest.mark.parametrize(("state", "created"), [("RUNNING", None), ("SUCCEEDED", 2),
                                                ("FAILED", 2)])
def test_same_job_again_while_active_is_exit_3_else_next_attempt(
        state: str, created: int | None) -> None:
    from submit.batch import Connection
    from submit.errors import ConflictError

    a = asis.adapt(dev(), "hello", _job(), client=None, parallelism=None, submitter="ci")
    client = _Client([_existing(f"{a.base}-1", state)])
    conn = Connection(client, "projects/p/locations/r", local=True)  # type: ignore[arg-type]
    if created is None:
        with pytest.raises(ConflictError, match=f"already running as {a.base}-1") as exc:
            asis.create(a, conn)
        assert exc.value.exit_code == 3 and client.created == []
    else:
        job_id, is_new, _ = asis.create(a, conn)
        assert (job_id, is_new) == (f"{a.base}-{created}", True)


# Issue 23: as-written runs use the environment's identities, ceilings fill what is left out,
# and the cost is never silently unbounded.

def test_a_file_naming_another_identity_is_refused_with_the_fix() -> None:
    env = dev()
    job = _job()
    job["allocationPolicy"]["serviceAccount"] = {"email": env.run_sa_email("globex")}
    other = re.escape(env.run_sa_email("globex"))
    with pytest.raises(SubmitError, match=rf"serviceAccount.email: '{other}' is not an "
                       r"identity this run may use.*remove the field, or pass --client"):
        asis.adapt(env, "hello", job, client=None, parallelism=None, submitter="ci")
    with pytest.raises(SubmitError, match="is not an identity this run may use"):
        asis.adapt(env, "hello", job, client="acme", parallelism=None, submitter="ci")
    ok = asis.adapt(env, "hello", job, client="globex", parallelism=None, submitter="ci")
    assert ok.job["allocationPolicy"]["serviceAccount"]["email"] == env.run_sa_email("globex")


def test_instance_template_job_keeps_its_identity_or_is_refused() -> None:
    env = dev()
    job = _job()
    job["allocationPolicy"]["instances"] = [{"instanceTemplate": "batch-gpu-template"}]
    for client in (None, "acme"):
        with pytest.raises(SubmitError, match=r"instance template 'batch-gpu-template'.*"
                           r"create the template with"):
            asis.adapt(env, "hello", job, client=client, parallelism=None, submitter="ci")
    # naming the run identity already: accepted by identity, refused by the unbounded cost
    job["allocationPolicy"]["serviceAccount"] = {"email": env.run_sa_email("acme")}
    with pytest.raises(SubmitError, match=r"GPUB_JOB_20.*cannot bound the cost.*instance "
                       r"template"):
        asis.adapt(env, "hello", job, client="acme", parallelism=None, submitter="ci")


def test_missing_run_duration_gets_the_ceiling_an_explicit_longer_one_is_refused() -> None:
    env = dev()
    job = _job()
    del job["taskGroups"][0]["taskSpec"]["maxRunDuration"]
    a = asis.adapt(env, "hello", job, client=None, parallelism=None, submitter="ci")
    ceiling = env.guardrails.max_run_duration_s
    assert a.job["taskGroups"][0]["taskSpec"]["maxRunDuration"] == f"{ceiling}s"
    assert any(c.startswith("taskGroups[0].taskSpec.maxRunDuration: unset -> ")
               for c in a.changes)
    job["taskGroups"][0]["taskSpec"]["maxRunDuration"] = f"{ceiling + 1}s"
    with pytest.raises(SubmitError, match=rf"GPUB_JOB_3 .*ceiling of {ceiling}s: set "
                       rf"maxRunDuration to at most {ceiling}s"):
        asis.adapt(env, "hello", job, client=None, parallelism=None, submitter="ci")


def test_gcs_remote_path_with_scheme_is_refused() -> None:
    job = _job()
    job["taskGroups"][0]["taskSpec"]["volumes"] = [
        {"gcs": {"remotePath": "gs://bucket/data"}, "mountPath": "/mnt/data"}]
    with pytest.raises(SubmitError, match=r"GPUB_JOB_15 .*write 'bucket/data'"):
        asis.adapt(dev(), "hello", job, client=None, parallelism=None, submitter="ci")


def _run(tmp_path: Path, job: dict, max_cost: float | None) -> asis.AsIs:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    a, _, _ = asis.run_as_written(job=None, config=path, env=dev(), backend=None,  # type: ignore[arg-type]
                                  client=None, parallelism=None, max_cost=max_cost,
                                  out_dir=None, submitter="ci", dry_run=True)
    return a


def test_max_cost_holds_a_spot_job_of_many_tasks(tmp_path: Path) -> None:
    job = _job()
    job["taskGroups"][0]["taskCount"] = 127
    job["allocationPolicy"]["instances"][0]["policy"]["provisioningModel"] = "SPOT"
    with pytest.raises(SubmitError, match=r"--max-cost: the run may cost up to \$.*127 tasks"):
        _run(tmp_path, job, 0.01)
    a = _run(tmp_path, job, None)
    assert a.cost.usd is not None and a.cost.usd > 0.01
    assert "Spot" in a.cost.why and "europe-west4" in a.cost.why


def test_unpriced_machine_cannot_be_bounded_and_says_why(tmp_path: Path) -> None:
    job = _job()
    job["allocationPolicy"]["instances"][0]["policy"]["machineType"] = "n2d-standard-8"
    with pytest.raises(SubmitError, match=r"cannot bound the cost.*no price for n2d-standard-8 "
                       r"in europe-west4"):
        _run(tmp_path, job, None)


def test_client_moves_the_ad_hoc_identity_of_a_declared_job_to_its_run_identity() -> None:
    """A declared job is synthesized with the ad-hoc identity; --client C runs it as C's."""
    env = dev()
    job = _job()
    job["allocationPolicy"]["serviceAccount"] = {"email": env.adhoc_sa_email}
    a = asis.adapt(env, "hello", job, client="acme", parallelism=None, submitter="ci")
    assert a.job["allocationPolicy"]["serviceAccount"]["email"] == env.run_sa_email("acme")
    assert (f"allocationPolicy.serviceAccount.email: {env.adhoc_sa_email!r} -> "
            f"{env.run_sa_email('acme')!r} (client acme's run identity)") in a.changes
