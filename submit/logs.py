"""`logs`: task log files in local mode, Cloud Logging entries in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from submit.errors import ServiceError, SubmitError

_LOGGING_API = "https://logging.googleapis.com/v2/entries:list"


def _attempt_key(path: Path) -> tuple[int, int, str]:
    # .../tasks/<index>/attempt-<n>.log: order by task, then attempt.
    try:
        index = int(path.parent.name)
        attempt = int(path.stem.rsplit("-", 1)[-1])
    except ValueError:
        return (1 << 30, 0, str(path))
    return (index, attempt, str(path))


def local_lines(backend: Any, job_id: str) -> Iterator[str]:
    """Every task attempt's log, with a header line per file."""
    finder = getattr(backend, "task_log_paths", None)
    if finder is not None:
        paths = [Path(p) for p in finder(job_id)]
    else:  # the layout docs/contracts.md fixes
        tasks = Path(backend.root) / "batch" / "jobs" / job_id / "tasks"
        paths = list(tasks.glob("*/attempt-*.log"))
    if not paths:
        raise SubmitError(f"JOB_ID: no local task logs for {job_id!r} (yet)")
    for path in sorted(paths, key=_attempt_key):
        yield f"==> task {path.parent.name} {path.stem} <==\n"
        with path.open(encoding="utf-8", errors="replace") as fh:
            yield from fh


def cloud_lines(project: str, job_uid: str, *, limit: int) -> Iterator[str]:
    """Cloud Logging entries of a job, oldest first.

    Uses the Logging REST API through google-auth's AuthorizedSession (no extra dependency;
    google-cloud-logging is used instead when installed). Batch writes task output to
    `batch_task_logs` and agent events to `batch_agent_logs`, both labelled with the job's
    uid. Not exercised by the test suite: it needs a real project and credentials.
    """
    log_filter = (
        f'logName=("projects/{project}/logs/batch_task_logs" OR '
        f'"projects/{project}/logs/batch_agent_logs") AND labels.job_uid="{job_uid}"'
    )
    try:
        from google.cloud import logging as cloud_logging  # type: ignore[attr-defined]
    except ImportError:
        cloud_logging = None
    if cloud_logging is not None:
        client = cloud_logging.Client(project=project)
        for entry in client.list_entries(filter_=log_filter, order_by="timestamp asc",
                                         max_results=limit):
            yield f"{entry.timestamp} {entry.payload}"
        return

    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/logging.read"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ServiceError("no Google credentials: run `gcloud auth application-default login`"
                           ) from None
    session = AuthorizedSession(creds)
    body: dict[str, Any] = {"resourceNames": [f"projects/{project}"], "filter": log_filter,
                            "orderBy": "timestamp asc", "pageSize": min(limit, 1000)}
    seen = 0
    while seen < limit:
        resp = session.post(_LOGGING_API, json=body, timeout=60)
        if resp.status_code != 200:
            raise ServiceError(f"Cloud Logging: HTTP {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        for entry in data.get("entries", []):
            text = entry.get("textPayload") or entry.get("jsonPayload", {}).get("message", "")
            yield f"{entry.get('timestamp', '')} {text}"
            seen += 1
        token = data.get("nextPageToken")
        if not token:
            return
        body["pageToken"] = token
