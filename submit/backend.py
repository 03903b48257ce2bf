"""Where a command's Batch and Cloud Storage calls go: Google Cloud, or the embedded local
backend. Chosen once per command (`backend_for(local)`), so no command branches on `--local`.

Both implementations hand out the same client classes (`BatchServiceClient`,
`storage.Client`); only the endpoint and the credentials differ. Nothing here touches
`os.environ`: the local storage endpoint is a client option, not STORAGE_EMULATOR_HOST.

Imported only by commands that talk to a service (google-cloud-* cost ~0.7 s to import).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from submit import gcs, localmode

if TYPE_CHECKING:
    from google.cloud import batch_v1, storage  # type: ignore[attr-defined]

    from submit.batch import Connection
    from submit.quota import QuotaValue


class Backend(Protocol):
    """The services one command talks to."""

    name: str

    def storage(self, project: str) -> storage.Client: ...

    def batch(self, project: str, region: str) -> Connection: ...

    def log_lines(self, conn: Connection, job: batch_v1.Job, *, limit: int) -> Iterator[str]: ...

    def quotas(self, project: str, quota_ids: Sequence[str]) -> list[QuotaValue]: ...


class GoogleBackend:
    """Production: Application Default Credentials and Google's endpoints."""

    name = "google"

    def storage(self, project: str) -> storage.Client:
        return gcs.make_client(project)

    def batch(self, project: str, region: str) -> Connection:
        from google.cloud import batch_v1

        from submit.batch import Connection, api_errors

        with api_errors("Batch"):  # ADC is looked up here
            client = batch_v1.BatchServiceClient()
        return Connection(client, f"projects/{project}/locations/{region}", local=False)

    def log_lines(self, conn: Connection, job: batch_v1.Job, *, limit: int) -> Iterator[str]:
        from submit import logs

        for line in logs.cloud_lines(conn.parent.split("/")[1], job.uid, limit=limit):
            yield line + "\n"

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
        # pass the environment's operator identity), else anonymous (IAM layer off only).
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
        from submit.batch import Connection

        client = batch_client(self.endpoints().batch_target)
        return Connection(client, f"projects/{project}/locations/{region}", local=True)

    def log_lines(self, conn: Connection, job: batch_v1.Job, *, limit: int) -> Iterator[str]:
        from submit import logs
        from submit.batch import short_id

        # Local task logs are files; `limit` applies to Cloud Logging entries only.
        yield from logs.local_lines(localmode.backend(), short_id(job.name))

    def quotas(self, project: str, quota_ids: Sequence[str]) -> list[QuotaValue]:
        """The simulated values (LOCAL_BATCH_QUOTAS, written by the local Batch server)."""
        from local.capacity import CapacityConfig
        from submit.quota import QuotaValue

        self.endpoints()  # the server writes them when it starts
        wanted = set(quota_ids)
        return [QuotaValue(q.quota_id, dict(q.dimensions), q.value)
                for q in CapacityConfig.read(localmode.root()).quotas if q.quota_id in wanted]


def backend_for(local: bool, principal: str | None = None) -> Backend:
    """`principal`: who a local command acts as (ignored on Google, where ADC decides)."""
    return LocalBackend(principal) if local else GoogleBackend()
