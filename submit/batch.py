"""Google Batch API calls (imported only by commands that talk to Batch: google-cloud-batch
and grpc cost ~0.4 s to import).

Production: `BatchServiceClient()` with Application Default Credentials. Local: the very same
client class over an insecure channel to the local backend (`local.client.batch_client`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import batch_v1
from gpub_runner import contract

from submit import localmode
from submit.errors import ServiceError, SubmitError

# One definition of active and final (gpub_runner.contract): CANCELLED is final everywhere.
_STATES = list(batch_v1.JobStatus.State)
ACTIVE_STATES = frozenset(s for s in _STATES if s.name in contract.JOB_ACTIVE_STATES)
FINAL_STATES = frozenset(s for s in _STATES if s.name in contract.JOB_FINAL_STATES)
_TIMEOUT_S = 60.0


@dataclass
class Connection:
    client: batch_v1.BatchServiceClient
    parent: str  # projects/P/locations/R
    local: bool


def connect(*, local: bool, project: str, region: str) -> Connection:
    """A Batch client for production (ADC) or the local backend; in local mode also points
    google-cloud-storage at the backend's fake-gcs-server."""
    parent = f"projects/{project}/locations/{region}"
    if local:
        from local.client import batch_client

        endpoints = localmode.start()
        return Connection(batch_client(endpoints.batch_target), parent, True)
    with api_errors("Batch"):
        return Connection(batch_v1.BatchServiceClient(), parent, False)


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    try:
        yield
    except auth_exc.DefaultCredentialsError:
        raise ServiceError(
            "no Google credentials: run `gcloud auth application-default login` (or use --local)"
        ) from None
    except gexc.NotFound as exc:
        raise SubmitError(f"{what}: not found ({exc.message})") from None
    except gexc.PermissionDenied as exc:
        raise SubmitError(f"{what}: permission denied ({exc.message})") from None
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
        raise ServiceError(f"{what}: {exc}".splitlines()[0]) from None


def job_name(conn: Connection, job_id: str) -> str:
    return job_id if job_id.startswith("projects/") else f"{conn.parent}/jobs/{job_id}"


def short_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def variables(job: batch_v1.Job) -> dict[str, str]:
    if not job.task_groups:
        return {}
    return dict(job.task_groups[0].task_spec.environment.variables)


def find_active(
    conn: Connection, *, job: str, run_key: str, input_uri: str, output_uri: str
) -> batch_v1.Job | None:
    """A job of the same run (job, input, output) that is not finished yet, if any."""
    with api_errors("Batch ListJobs"):
        try:
            # Narrow on the server where it can; the exact match is made here either way.
            jobs = list(conn.client.list_jobs(
                request={"parent": conn.parent, "filter": f'labels.job="{job}"'},
                timeout=_TIMEOUT_S))
        except gexc.InvalidArgument:
            jobs = list(conn.client.list_jobs(parent=conn.parent, timeout=_TIMEOUT_S))
    for j in jobs:
        same = j.labels.get("run-key") == run_key or (
            j.labels.get("job") == job
            and variables(j).get("GPUB_INPUT_PREFIX") == input_uri
            and variables(j).get("GPUB_OUTPUT_PREFIX") == output_uri
        )
        if same and j.status.state in ACTIVE_STATES:
            return j
    return None


def find_by_manifest(conn: Connection, *, run_key: str, manifest_hash: str) -> batch_v1.Job | None:
    with api_errors("Batch ListJobs"):
        for j in conn.client.list_jobs(parent=conn.parent, timeout=_TIMEOUT_S):
            labels = j.labels
            if labels.get("run-key") == run_key and labels.get("manifest-hash") == manifest_hash:
                return j
    return None


def create_job(
    conn: Connection, *, job_id: str, job: batch_v1.Job, request_id: str,
    run_key: str, manifest_hash: str,
) -> tuple[batch_v1.Job, bool]:
    """CreateJob with an idempotency key. Returns (job, created); created is False when Batch
    recognised the request as a retry and returned (or pointed at) the existing job."""
    request = batch_v1.CreateJobRequest(
        parent=conn.parent, job_id=job_id, job=job, request_id=request_id
    )
    with api_errors("Batch CreateJob"):
        try:
            created = conn.client.create_job(request=request, timeout=_TIMEOUT_S)
        except (gexc.AlreadyExists, gexc.InvalidArgument) as exc:
            # A re-run of the same submit (same request id, new job id): Batch refuses the
            # second request; the job the first one created is the answer.
            if isinstance(exc, gexc.InvalidArgument) and "request_id" not in str(exc.message):
                raise
            existing = find_by_manifest(conn, run_key=run_key, manifest_hash=manifest_hash)
            if existing is None:
                raise
            return existing, False
    return created, short_id(created.name) == job_id


def get_job(conn: Connection, job_id: str) -> batch_v1.Job:
    with api_errors(f"job {short_id(job_id)}"):
        return conn.client.get_job(name=job_name(conn, job_id), timeout=_TIMEOUT_S)


def list_jobs(conn: Connection) -> list[batch_v1.Job]:
    with api_errors("Batch ListJobs"):
        return list(conn.client.list_jobs(parent=conn.parent, timeout=_TIMEOUT_S))


def list_tasks(conn: Connection, job: batch_v1.Job) -> list[batch_v1.Task]:
    if not job.task_groups:
        return []
    group = job.task_groups[0].name or f"{job.name}/taskGroups/group0"
    with api_errors(f"job {short_id(job.name)} ListTasks"):
        return list(conn.client.list_tasks(parent=group, timeout=_TIMEOUT_S))


def cancel_job(conn: Connection, job_id: str) -> None:
    with api_errors(f"job {short_id(job_id)} CancelJob"):
        # Returns a long-running operation; the job's state shows the outcome.
        conn.client.cancel_job(name=job_name(conn, job_id), timeout=_TIMEOUT_S)
