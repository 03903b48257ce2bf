"""One local cloud started from the REAL synthesized example stack (platform-dev), with IAM on,
and the client-path scenarios the end-to-end tests check.

Each `check_*` scenario raises AssertionError when the platform misbehaves, so the same
function proves the good stack works and, in `test_e2e_defects.py`, that a reintroduced
defect is noticed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from local.backend import Endpoints, LocalBackend
from local.client import batch_client
from local.eventarc import Execution, LocalEventarc
from local.grpc_identity import subscriber_for
from local.iam_launcher import reload_iam
from local.identity import ADMIN_EMAIL, credentials_for
from local.pubsub_stack import declared_topics_and_subscriptions
from stacks.environments import dev
from stacks.settings import EnvironmentSettings
from stacks.workflow_params import RETRY
from tests._helpers.tf import edit_policies
from tfjson.iam import PolicyBinding

ENV: EnvironmentSettings = dev()
JOB = "uppercase"
PARENT = f"projects/{ENV.project_id}/locations/{ENV.region}"
CONNECTOR_TIMEOUT_S = 0.2
# The deployed dispatcher polls jobs.get every 60 s; locally 60 s x 0.01 (retry backoffs too).
SLEEP_SCALE = 0.01
CONNECTOR_POLL_S = 0.2  # local.connectors: jobs.get interval while a jobs.create blocks


def blocking_create_max_s() -> float:
    """The longest a blocking jobs.create may wait: its connector TimeoutError is retryable
    (http.default_retry_predicate), so the deployed retry policy repeats the create (Batch
    dedupes it by request id and it blocks on the same job again) max_retries times, with the
    (scaled) backoffs between the attempts."""
    policy: dict[str, Any] = RETRY
    backoff, retries = policy["backoff"], int(policy["max_retries"])
    delay, waits = float(backoff["initial_delay"]), 0.0
    for _ in range(retries):
        waits += min(delay, float(backoff["max_delay"]))
        delay *= float(backoff["multiplier"])
    attempt = CONNECTOR_TIMEOUT_S + CONNECTOR_POLL_S + 0.05  # + one jobs.get round trip
    return (retries + 1) * attempt + waits * SLEEP_SCALE


# Every job stays SCHEDULED this long (Batch provisioning VMs): longer than a blocking
# jobs.create may wait with its retries, so every job outlives one.
SCHEDULE_DELAY_S = round(blocking_create_max_s() + 1.0, 1)
# Every task's first attempt is preempted (exit 50001) early; its retry must succeed.
BATCH_ENV = {
    "LOCAL_BATCH_SCHEDULE_DELAY_S": str(SCHEDULE_DELAY_S),
    "LOCAL_BATCH_PREEMPT_RATE": "1",
    "LOCAL_BATCH_PREEMPT_ATTEMPTS": "1",
    "LOCAL_BATCH_PREEMPT_MAX_DELAY_S": "0.2",
    "LOCAL_BATCH_SEED": "e2e",
}


@dataclass
class Cloud:
    stack: Path  # the copy of platform-dev's cdk.tf.json the local cloud enforces
    pristine: str  # its synthesized text
    ep: Endpoints
    backend: LocalBackend
    counter: list[int] = field(default_factory=lambda: [0])

    def gcs(self, email: str) -> storage.Client:
        return storage.Client(project=ENV.project_id, credentials=credentials_for(email),
                              client_options={"api_endpoint": self.ep.gcs_endpoint})

    def eventarc(self) -> LocalEventarc:
        return LocalEventarc([self.stack], batch_target=self.ep.batch_target,
                             gcs_endpoint=self.ep.gcs_endpoint,
                             pubsub_target=self.ep.pubsub_target, sleep_scale=SLEEP_SCALE,
                             connector_timeout_s=CONNECTOR_TIMEOUT_S)

    def batch_name(self, what: str) -> str:
        self.counter[0] += 1
        return f"{what}-{os.getpid()}-{self.counter[0]}"

    def set_stack(self, doc: dict[str, Any] | None) -> None:
        """Deploy `doc` (None: the synthesized stack again); the IAM layer re-reads it."""
        text = self.pristine if doc is None else json.dumps(doc)
        self.stack.write_text(text, encoding="utf-8")
        stamp = time.time() + self.counter[0]  # a new mtime even within one clock tick
        os.utime(self.stack, (stamp, stamp))
        # The IAM layer enforces it now (its reload hook); Pub/Sub and Batch IAM stat the file
        # on every call.
        reload_iam(self.ep.gcs_endpoint)


def start_cloud(synth_dir: Path, tmp: Path,
                batch_env: dict[str, str] | None = None) -> Iterator[Cloud]:
    """The local cloud of the dev stack; `batch_env` overrides BATCH_ENV (a scenario that
    needs no job to outlive a blocking create may start jobs at once)."""
    src = synth_dir / "stacks" / f"platform-{ENV.name}" / "cdk.tf.json"
    stack = tmp / "cdk.tf.json"
    shutil.copy(src, stack)
    backend = LocalBackend(tmp / "local", stacks=[stack], env={**BATCH_ENV, **(batch_env or {})})
    try:
        ep = backend.ensure_running()
        cloud = Cloud(stack, src.read_text(encoding="utf-8"), ep, backend)
        admin = cloud.gcs(ADMIN_EMAIL)  # the local `terraform apply`
        for client in ENV.clients:
            admin.create_bucket(ENV.client_bucket(client.name))
        admin.create_bucket(ENV.data_bucket)
        yield cloud
    finally:
        backend.stop(timeout=5)


# ---- the client path -------------------------------------------------------------------------
def upload_batch(cloud: Cloud, client: str, batch: str, n: int = 3, job: str = JOB) -> str:
    """As the client's identity: n JSONL inputs, then the batch marker with their count
    (stacks/layout.py `marker`); the input prefix."""
    bucket = cloud.gcs(ENV.client_sa_email(client)).bucket(ENV.client_bucket(client))
    prefix = ENV.layout.batch_inputs(job, batch)
    for i in range(n):
        bucket.blob(f"{prefix}{i}.jsonl").upload_from_string(
            f'{{"id": {i}, "text": "{client} row {i}"}}\n')
    bucket.blob(ENV.layout.marker(job, batch)).upload_from_string(
        json.dumps({"count": n}), content_type="application/json")
    return prefix


def _is_ignored(run: Execution) -> bool:
    return isinstance(run.result, str) and run.result.startswith("ignored")


def deliver_marker_run(arc: LocalEventarc,
                       timeout: float = 60) -> tuple[Execution, list[Execution]]:
    """Deliver events until one execution did more than ignore its event."""
    runs: list[Execution] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs += arc.deliver(timeout_s=1.5)
        started = [r for r in runs if not _is_ignored(r)]
        if started:
            return started[0], runs
    raise AssertionError(f"no execution started a job within {timeout:g}s: "
                         f"{[(r.workflow, r.result, r.error) for r in runs]}")


def outcomes(arc: LocalEventarc, client: str) -> list[dict[str, Any]]:
    """Drain the client's results subscription, as the stack declares it."""
    topic = f"projects/{ENV.project_id}/topics/{ENV.results_topic(client)}"
    _, subs = declared_topics_and_subscriptions(arc.docs)
    (sub,) = [name for name, (t, _) in subs.items() if t == topic]
    got: list[dict[str, Any]] = []
    me = subscriber_for(arc.endpoints["pubsub_target"], ENV.client_sa_email(client))  # IAM on
    while True:
        resp = me.pull(subscription=sub, max_messages=50, timeout=2)
        if not resp.received_messages:
            return got
        me.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in resp.received_messages])
        got += [json.loads(m.message.data) for m in resp.received_messages]


def job_for_batch(cloud: Cloud, client: str, batch: str) -> Any:
    """The Batch job a workflow created for the client's batch (None when there is none)."""
    for job in batch_client(cloud.ep.batch_target).list_jobs(parent=PARENT):
        variables = job.task_groups[0].task_spec.environment.variables
        if (job.labels.get("client") == client
                and variables.get("GPUB_INPUT_PREFIX", "").endswith(f"/{batch}/")):
            return job
    return None


def batch_logs(cloud: Cloud, batch: str) -> str:
    """The task logs of every job that wrote the batch's outputs."""
    jobs = [j for j in batch_client(cloud.ep.batch_target).list_jobs(parent=PARENT)
            if j.task_groups[0].task_spec.environment.variables.get(
                "GPUB_OUTPUT_PREFIX", "").endswith(f"/{batch}/")]
    return "\n".join(run_logs(cloud, j.name) for j in jobs)


def run_logs(cloud: Cloud, job_name: str) -> str:
    job_id = job_name.rsplit("/", 1)[-1]
    return "\n".join(p.read_text(errors="replace") for p in cloud.backend.task_log_paths(job_id))


def check_story(cloud: Cloud, arc: LocalEventarc) -> dict[str, Any]:
    """acme uploads a batch; the marker starts the deployed workflow; the job runs as run-acme
    (its first attempts preempted and retried), outlives the connector timeout, writes outputs
    acme can read, and the outcome reaches acme's subscription only."""
    outcomes(arc, "acme"), outcomes(arc, "globex")  # start from empty subscriptions
    batch = cloud.batch_name("story")
    upload_batch(cloud, "acme", batch)
    run, _ = deliver_marker_run(arc)
    out = run.result if isinstance(run.result, dict) else {}
    job_of_batch = job_for_batch(cloud, "acme", batch)
    logs = run_logs(cloud, job_of_batch.name) if job_of_batch else ""
    assert run.state == "SUCCEEDED" and out.get("state") == "SUCCEEDED", (
        f"workflow {run.state}: {run.error or out}\n{logs[-3000:]}")
    job = batch_client(cloud.ep.batch_target).get_job(name=out["batch_job"])
    assert job.allocation_policy.service_account.email == ENV.run_sa_email("acme")
    ran_for = (job.update_time - job.create_time).total_seconds()
    assert ran_for > blocking_create_max_s(), ran_for  # longer than a blocking create waits
    group = f"{job.name}/taskGroups/group0"
    tasks = list(batch_client(cloud.ep.batch_target).list_tasks(parent=group))
    events = " ".join(e.description for t in tasks for e in t.status.status_events)
    assert "exit code 50001" in events and "Retrying" in events, events
    client = cloud.gcs(ENV.client_sa_email("acme"))
    names = {b.name for b in client.list_blobs(ENV.client_bucket("acme"),
                                               prefix=f"outputs/{JOB}/{batch}/")}
    assert {f"outputs/{JOB}/{batch}/{i}.jsonl" for i in range(3)} <= names, names
    first = client.bucket(ENV.client_bucket("acme")).blob(f"outputs/{JOB}/{batch}/0.jsonl")
    assert "ACME ROW 0" in first.download_as_text()
    got = outcomes(arc, "acme")
    assert [(o["client"], o["batch"], o["state"]) for o in got] == [("acme", batch, "SUCCEEDED")]
    assert outcomes(arc, "globex") == []
    return out


def check_rerun(cloud: Cloud, arc: LocalEventarc) -> None:
    """The client re-runs a finished batch itself: it rewrites the batch's marker (a new
    generation, which `client-<c>` may overwrite under the markers prefix only), which starts
    a new job on the same output; the tasks skip what is done and rewrite their records,
    which needs storage.objects.delete."""
    batch = cloud.batch_name("rerun")
    upload_batch(cloud, "acme", batch, n=2)
    first, _ = deliver_marker_run(arc)
    assert first.state == "SUCCEEDED", f"{first.error}\n{batch_logs(cloud, batch)[-3000:]}"
    bucket = cloud.gcs(ENV.client_sa_email("acme")).bucket(ENV.client_bucket("acme"))
    bucket.blob(ENV.layout.marker(JOB, batch)).upload_from_string(
        json.dumps({"count": 2}), content_type="application/json")
    again, _ = deliver_marker_run(arc)
    assert again.state == "SUCCEEDED", f"{again.error}\n{batch_logs(cloud, batch)[-3000:]}"
    outcomes(arc, "acme")


def check_cancel(cloud: Cloud, arc: LocalEventarc, within_s: float = 8) -> None:
    """Cancelling the job a workflow waits on ends that workflow, with a CANCELLED outcome."""
    outcomes(arc, "acme")
    batch = cloud.batch_name("cancel")
    upload_batch(cloud, "acme", batch, n=1)
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.update(runs=deliver_marker_run(arc)),
                              daemon=True)
    worker.start()
    client = batch_client(cloud.ep.batch_target)
    deadline = time.monotonic() + 20
    job = None
    while job is None and time.monotonic() < deadline:
        job = job_for_batch(cloud, "acme", batch)
        time.sleep(0.05)
    assert job is not None, "the workflow created no job"
    client.cancel_job(name=job.name)
    worker.join(within_s)
    if worker.is_alive():
        arc.abandon()
        raise AssertionError(f"the workflow still waits {within_s:g}s after its job was "
                             f"cancelled ({client.get_job(name=job.name).status.state.name})")
    run, _ = box["runs"]
    assert run.state == "FAILED" and "CANCELLED" in str(run.error), (run.result, run.error)
    got = outcomes(arc, "acme")
    assert [(o["batch"], o["state"]) for o in got] == [(batch, "CANCELLED")], got


# ---- defects of the deployability issue, reintroduced into a copy of the stack ----------------
BUCKET_POLICY = ("google_storage_bucket_iam_policy", "clients-bucket-policy")


def no_list_for_run_identity(doc: dict[str, Any]) -> dict[str, Any]:
    """The run identity reads objects under an object-name condition: a list is authorized on
    the bucket, so no list grant remains."""
    doc = copy.deepcopy(doc)

    def edit(client: str, bindings: list[PolicyBinding]) -> list[PolicyBinding]:
        out = []
        for b in bindings:
            run = [m for m in b.members if "clients-run-sa" in m]
            if b.condition is not None or b.role != "roles/storage.objectViewer" or not run:
                out.append(b)
                continue
            out.append(b._replace(members=[m for m in b.members if m not in run]))
            out.append(PolicyBinding(
                b.role, run, f'resource.name.startsWith("projects/_/buckets/'
                             f'{ENV.client_bucket(client)}/objects/")',
                f"{client}-run-reads", "objects only"))
        return out

    edit_policies(doc, *BUCKET_POLICY, edit)
    return doc


def no_delete_for_run_identity(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    # create only: no overwrite, no delete
    edit_policies(doc, *BUCKET_POLICY, lambda client, bindings: [
        b._replace(role="roles/storage.objectCreator")
        if b.title == f"{client}-run-writes-outputs" else b for b in bindings])
    return doc


def _edit_workflows(doc: dict[str, Any], edit: Callable[[str], str]) -> dict[str, Any]:
    text = json.dumps(doc)
    edited = json.loads(edit(text))
    assert edited != doc, "the mutation changed nothing"
    return edited  # type: ignore[no-any-return]


def blocking_jobs_create(doc: dict[str, Any]) -> dict[str, Any]:
    return _edit_workflows(doc, lambda t: t.replace("skip_polling: true", "skip_polling: false"))


def cancelled_not_final(doc: dict[str, Any]) -> dict[str, Any]:
    return _edit_workflows(doc, lambda t: t.replace('state == \\"CANCELLED\\" or ', ""))


def denied(fn: Callable[[], object], permission: str) -> None:
    try:
        fn()
    except gexc.Forbidden as exc:
        assert permission in str(exc), str(exc)
        return
    raise AssertionError(f"expected a 403 naming {permission}")
