"""Where a command's Batch and Cloud Storage calls go: Google Cloud, or the embedded local
backend. Chosen once per command (`backend_for(local, principal)`), so no command branches on
`--local`.

Both implementations hand out the same client classes (`BatchServiceClient`,
`storage.Client`); only the endpoint and the credentials differ. Nothing here touches
`os.environ`: the local storage endpoint is a client option, not STORAGE_EMULATOR_HOST.

Who a command acts as: locally, the `principal` it passes (submit commands: the environment's
operator identity; data commands: the client's identity), unless GPUB_LOCAL_PRINCIPAL says
otherwise. On Google, Application Default Credentials, or with `impersonate=True` the
principal's identity through the IAM Credentials API (needs
roles/iam.serviceAccountTokenCreator on that account:
https://googleapis.dev/python/google-auth/latest/reference/google.auth.impersonated_credentials.html).

Imported only by commands that talk to a service (google-cloud-* cost ~0.7 s to import).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from submit import gcs, localmode
from submit.errors import SubmitError

if TYPE_CHECKING:
    from google.cloud import batch_v1, storage  # type: ignore[attr-defined]

    from submit.batch import Connection
    from submit.quota import QuotaValue

_READ_WRITE = "https://www.googleapis.com/auth/devstorage.read_write"


class Backend(Protocol):
    """The services one command talks to."""

    name: str

    def storage(self, project: str) -> storage.Client: ...

    def batch(self, project: str, region: str) -> Connection: ...

    def log_lines(self, conn: Connection, job: batch_v1.Job, *, limit: int,
                  task: int | None = None, fmt: str = "text",
                  done: Callable[[], bool] | None = None, poll_s: float = 1.0,
                  ) -> Iterator[str]:
        """A job's log lines, each ending with a newline; `fmt` text (readable), raw or json;
        with `done`, keep following new lines until `done()` (the job is final)."""
        ...

    def log_tail(self, conn: Connection, job: batch_v1.Job, index: int, n: int) -> list[str]:
        """The last `n` readable lines of task `index` (for the failure summary)."""
        ...

    def quotas(self, project: str, quota_ids: Sequence[str]) -> list[QuotaValue]: ...


class GoogleBackend:
    """Production: Application Default Credentials (or a principal impersonated through
    them) and Google's endpoints."""

    name = "google"

    def __init__(self, impersonate: str | None = None) -> None:
        self.impersonate = impersonate

    def storage(self, project: str) -> storage.Client:
        if self.impersonate is None:
            return gcs.make_client(project)
        import google.auth
        from google.auth import impersonated_credentials
        from google.cloud import storage  # type: ignore[attr-defined]

        try:
            source, _ = google.auth.default()
        except google.auth.exceptions.DefaultCredentialsError:
            raise SubmitError("no Google credentials: run `gcloud auth application-default "
                              "login` (or use --local)") from None
        creds = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
            source_credentials=source, target_principal=self.impersonate,
            target_scopes=[_READ_WRITE])
        return storage.Client(project=project, credentials=creds)

    def batch(self, project: str, region: str) -> Connection:
        from google.cloud import batch_v1

        from submit.batch import Connection, api_errors

        with api_errors("Batch"):  # ADC is looked up here
            client = batch_v1.BatchServiceClient()
        return Connection(client, f"projects/{project}/locations/{region}", local=False)

    def log_lines(self, conn: Connection, job: batch_v1.Job, *, limit: int,
                  task: int | None = None, fmt: str = "text",
                  done: Callable[[], bool] | None = None, poll_s: float = 1.0,
                  ) -> Iterator[str]:
        from submit import logs

        project = conn.parent.split("/")[1]
        recs = (logs.cloud_entries(project, job.uid, limit=limit, task=task) if done is None
                else logs.cloud_follow(project, job.uid, done, task=task,
                                       poll_s=max(poll_s, 5.0)))
        for rec in recs:
            yield logs.format_record(rec, fmt) + "\n"

    def log_tail(self, conn: Connection, job: batch_v1.Job, index: int, n: int) -> list[str]:
        from submit import logs

        try:
            return logs.cloud_tail(conn.parent.split("/")[1], job.uid, index, n)
        except Exception as exc:  # the summary must not hide the failure behind a log error
            return [f"(log unavailable: {str(exc).splitlines()[0][:160]})"]

    def quotas(self, project: str, quota_ids: Sequence[str]) -> list[QuotaValue]:
        """Compute Engine quota values from the Cloud Quotas API (submit/quota.py)."""
        from google.cloud import cloudquotas_v1

        from submit.batch import api_errors
        from submit.quota import read_quota_values

        with api_errors("Cloud Quotas"):  # ADC is looked up here
            client = cloudquotas_v1.CloudQuotasClient()
        return read_quota_values(client, project, quota_ids)


class LocalBackend:
    """The embedded backend (`local/`): started on first use, then reused by this process."""

    name = "local"

    def __init__(self, principal: str | None = None) -> None:
        self._endpoints: Any = None
        # Who local storage calls act as: GPUB_LOCAL_PRINCIPAL, else `principal` (commands
        # pass the operator's or the client's identity), else anonymous (IAM layer off only).
        self.principal = principal

    def endpoints(self) -> Any:
        if self._endpoints is None:
            self._endpoints = localmode.start()
        return self._endpoints

    def storage(self, project: str) -> storage.Client:
        from local.identity import credentials_for, principal_credentials

        creds = principal_credentials() or (
            credentials_for(self.principal) if self.principal else None
        )
        return gcs.make_client(project, endpoint=self.endpoints().gcs_endpoint, credentials=creds)

    def batch(self, project: str, region: str) -> Connection:
        from local.client import batch_client
        from local.identity import PRINCIPAL_ENV
        from submit.batch import Connection

        # The same principal as storage: the local Batch server checks its actAs at CreateJob.
        principal = os.environ.get(PRINCIPAL_ENV, "").strip() or self.principal
        client = batch_client(self.endpoints().batch_target, principal)
        return Connection(client, f"projects/{project}/locations/{region}", local=True)

    def log_lines(self, conn: Connection, job: batch_v1.Job, *, limit: int,
                  task: int | None = None, fmt: str = "text",
                  done: Callable[[], bool] | None = None, poll_s: float = 1.0,
                  ) -> Iterator[str]:
        from submit import logs
        from submit.batch import short_id

        # Local task logs are files; `limit` applies to Cloud Logging entries only.
        files, job_id = localmode.backend(), short_id(job.name)
        if done is None:
            yield from logs.local_lines(files, job_id, task=task, fmt=fmt)
        else:
            yield from logs.local_follow(files, job_id, done, task=task, fmt=fmt,
                                         poll_s=poll_s)

    def log_tail(self, conn: Connection, job: batch_v1.Job, index: int, n: int) -> list[str]:
        from submit import logs
        from submit.batch import short_id

        return logs.local_tail(localmode.backend(), short_id(job.name), index, n)

    def quotas(self, project: str, quota_ids: Sequence[str]) -> list[QuotaValue]:
        """The simulated values (LOCAL_BATCH_QUOTAS, written by the local Batch server)."""
        from local.capacity import CapacityConfig
        from submit.quota import QuotaValue

        self.endpoints()  # the server writes them when it starts
        wanted = set(quota_ids)
        return [QuotaValue(q.quota_id, dict(q.dimensions), q.value)
                for q in CapacityConfig.read(localmode.root()).quotas if q.quota_id in wanted]


def backend_for(local: bool, principal: str | None = None, *,
                impersonate: bool = False) -> Backend:
    """`principal`: who a local command acts as. On Google, ADC decides, unless
    `impersonate` (data commands: the client's identity) makes storage calls act as it."""
    if local:
        return LocalBackend(principal)
    return GoogleBackend(principal if impersonate else None)
