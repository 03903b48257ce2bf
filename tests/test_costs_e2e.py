"""End to end on the local cloud (IAM on, the REAL synthesized platform-dev stack): a billed
resource of client A's run carries `client=A`, for the workflow path and for `bin/submit`, and
`bin/submit costs --local --json` lists each client's runs with an estimated cost (issue 24).

What billing sees of a Batch job is its `allocationPolicy.labels` (Batch copies them onto the
job's VMs, GPUs and disks: cloud.google.com/batch/docs/organize-resources-using-labels); the
local Batch server keeps the job as created, so the labels are read back from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.backend import Endpoints, LocalBackend
from local.client import batch_client
from local.eventarc import LocalEventarc
from local.identity import ADMIN_EMAIL, credentials_for
from stacks.environments import dev

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ENV = dev()
JOB = "uppercase"
PARENT = f"projects/{ENV.project_id}/locations/{ENV.region}"


@dataclass
class Cloud:
    root: Path
    synth: Path
    stack: Path
    ep: Endpoints

    def gcs(self, email: str) -> Any:
        from google.cloud import storage  # type: ignore[attr-defined]

        return storage.Client(project=ENV.project_id, credentials=credentials_for(email),
                              client_options={"api_endpoint": self.ep.gcs_endpoint})

    def submit(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
        env.update(GPUB_LOCAL_ROOT=str(self.root), GPUB_SYNTH_DIR=str(self.synth),
                   GPUB_SUBMITTER="ci-test",
                   PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'images/runner/src'}")
        return subprocess.run([sys.executable, "-m", "submit", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180)

    def jobs(self) -> list[Any]:
        return list(batch_client(self.ep.batch_target).list_jobs(parent=PARENT))


@pytest.fixture(scope="module")
def cloud(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("costs-e2e")
    synth = tmp / "cdktf.out"
    shutil.copytree(synth_dir, synth)
    stack = (synth / "stacks" / f"platform-{ENV.name}" / "cdk.tf.json").resolve()
    backend = LocalBackend(root=tmp / "local", stacks=[stack])
    try:
        c = Cloud(tmp / "local", synth, stack, backend.ensure_running())
        admin = c.gcs(ADMIN_EMAIL)
        for client in ENV.clients:
            admin.create_bucket(ENV.client_bucket(client.name))
        yield c
    finally:
        backend.stop(timeout=5)


def _upload(c: Cloud, client: str, batch: str, marker: bool) -> str:
    bucket = c.gcs(ENV.client_sa_email(client)).bucket(ENV.client_bucket(client))
    prefix = ENV.layout.batch_inputs(JOB, batch)
    for i in range(2):
        bucket.blob(f"{prefix}{i}.jsonl").upload_from_string(
            f'{{"id": {i}, "text": "{client} {i}"}}\n')
    if marker:  # the batch's marker, with its input count (stacks/layout.py `marker`)
        bucket.blob(ENV.layout.marker(JOB, batch)).upload_from_string(
            json.dumps({"count": 2}), content_type="application/json")
    return prefix


def _workflow_run(c: Cloud, client: str, batch: str) -> Any:
    """Upload a batch and its marker; the deployed workflow creates (and awaits) the job."""
    _upload(c, client, batch, marker=True)
    arc = LocalEventarc([c.stack], batch_target=c.ep.batch_target,
                        gcs_endpoint=c.ep.gcs_endpoint, pubsub_target=c.ep.pubsub_target,
                        sleep_scale=0.01)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for r in arc.deliver(timeout_s=1.5):
            if isinstance(r.result, dict) and r.result.get("client") == client:
                assert r.state == "SUCCEEDED", (r.result, r.error)
                return batch_client(c.ep.batch_target).get_job(name=r.result["batch_job"])
    raise AssertionError(f"no workflow run for {client}/{batch}")


def test_a_workflow_run_of_client_a_bills_resources_labelled_client_a(cloud: Cloud) -> None:
    for client in ("acme", "globex"):
        job = _workflow_run(cloud, client, f"wf-{client}")
        labels = dict(job.allocation_policy.labels)
        assert labels == {"client": client, "job": JOB, "env": ENV.name,
                          "run": job.name.rsplit("/", 1)[1]}, labels
        assert job.status.state.name == "SUCCEEDED"


def test_a_submitted_run_of_client_a_bills_resources_labelled_client_a(cloud: Cloud) -> None:
    _upload(cloud, "acme", "cli-1", marker=False)
    proc = cloud.submit(JOB, "--env", ENV.name, "--client", "acme", "--input",
                        f"gs://{ENV.client_bucket('acme')}/inputs/{JOB}/cli-1/", "--output",
                        f"gs://{ENV.client_bucket('acme')}/outputs/{JOB}/cli-1/", "--local",
                        "--wait", "--json", "--poll", "0.3")
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["job_id"]
    (job,) = [j for j in cloud.jobs() if j.name.endswith(f"/{job_id}")]
    labels = dict(job.allocation_policy.labels)
    assert labels == {"client": "acme", "job": JOB, "env": ENV.name,
                      "run": job_id.rsplit("-", 1)[0]}, labels  # the run: every attempt


def test_costs_local_lists_each_clients_runs_with_an_estimate(cloud: Cloud) -> None:
    if not any(j.allocation_policy.labels.get("client") == "globex" for j in cloud.jobs()):
        _workflow_run(cloud, "globex", "wf-globex-costs")  # run alone: make globex's run
    if not any(j.allocation_policy.labels.get("client") == "acme" for j in cloud.jobs()):
        _workflow_run(cloud, "acme", "wf-acme-costs")
    proc = cloud.submit("costs", "--env", ENV.name, "--local", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["estimated"] is True
    runs = out["runs"]
    assert {r["client"] for r in runs} >= {"acme", "globex"}
    for r in runs:
        assert r["estimated"] is True and r["env"] == ENV.name and r["job"] == JOB
        assert r["cost"] > 0 and r["net_cost"] == r["cost"] and r["vm_hours"] > 0
        assert r["priced"] and "e2-standard-2" in r["priced"][0]
    assert {r["run"] for r in runs} >= {j.allocation_policy.labels["run"] for j in cloud.jobs()}
    only = json.loads(cloud.submit("costs", "--env", ENV.name, "--local", "--json",
                                   "--client", "globex").stdout)["runs"]
    assert only and {r["client"] for r in only} == {"globex"}
    text = cloud.submit("costs", "--env", ENV.name, "--local")
    assert text.returncode == 0 and "estimated" in text.stdout + text.stderr


def test_costs_never_loads_the_provider_bindings() -> None:
    code = ("import sys, submit.costs, submit.costs_sources, stacks.billing_sql\n"
            "assert 'stacks.provider' not in sys.modules and 'jsii' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
