"""Google Batch API calls (imported only by commands that talk to Batch: google-cloud-batch
and grpc cost ~0.4 s to import).

The connection comes from the command's backend (submit/backend.py): production
`BatchServiceClient()` with Application Default Credentials, or the very same client class over
an insecure channel to the local backend (`local.client.batch_client`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import batch_v1
from gpub_runner import contract

from submit.errors import ConflictError, ServiceError, SubmitError

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


def create_job(
    conn: Connection, *, job_id: str, job: batch_v1.Job, request_id: str,
) -> tuple[batch_v1.Job, bool]:
    """CreateJob with a deterministic job id and an idempotency key. Returns (job, created);
    created is False when this very request was already served (a retry after a lost reply):
    the job with this id carries the same manifest hash. Another job with the id: exit 3."""
    request = batch_v1.CreateJobRequest(
        parent=conn.parent, job_id=job_id, job=job, request_id=request_id
    )
    with api_errors("Batch CreateJob"):
        try:  # the id is deterministic: an earlier try of this request may have created it
            existing = conn.client.get_job(name=job_name(conn, job_id), timeout=_TIMEOUT_S)
        except gexc.NotFound:
            existing = None
        if existing is not None:
            return _same_request(existing, job, job_id), False
        try:
            created = conn.client.create_job(request=request, timeout=_TIMEOUT_S)
        except (gexc.AlreadyExists, gexc.InvalidArgument) as exc:
            if isinstance(exc, gexc.InvalidArgument) and "request_id" not in str(exc.message):
                raise
            try:
                existing = conn.client.get_job(name=job_name(conn, job_id), timeout=_TIMEOUT_S)
            except gexc.NotFound:
                raise exc from None
            return _same_request(existing, job, job_id), False
    return created, True


def _same_request(existing: batch_v1.Job, job: batch_v1.Job, job_id: str) -> batch_v1.Job:
    if existing.labels.get("manifest-hash") != job.labels.get("manifest-hash"):
        raise ConflictError(f"job {job_id} already exists with other inputs; another submit "
                            "into the same output just started")
    return existing


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
