"""`logs`: task log files in local mode, Cloud Logging entries in production; readable lines,
`--follow`, one task's tail for the failure summary.

The task runtime writes one JSON object per line (severity, message, time, context). People
get `HH:MM:SS SEVERITY message key=value`; `--raw` keeps the JSON, `--json` prints one
normalised object per line for scripts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from submit.errors import ServiceError, SubmitError

_LOGGING_API = "https://logging.googleapis.com/v2/entries:list"
# Context the runner stamps on every line: noise when reading one job's log.
_QUIET_KEYS = frozenset({"severity", "message", "time", "job", "job_name", "task_index",
                         "task_count", "attempt"})


def record(line: str) -> dict[str, Any]:
    """A log line as a dict: the runner's JSON, or {"message": line} for anything else."""
    text = line.rstrip("\n")
    try:
        data = json.loads(text)
    except ValueError:
        return {"message": text}
    return data if isinstance(data, dict) else {"message": text}


def readable(rec: dict[str, Any]) -> str:
    """`12:00:01.250 ERROR could not read x key=value` (time shortened to the clock)."""
    stamp = str(rec.get("time") or rec.get("timestamp") or "")
    clock = stamp[11:23] if len(stamp) >= 19 and stamp[10] in "T " else stamp
    extras = " ".join(f"{k}={v}" for k, v in rec.items()
                      if k not in _QUIET_KEYS and k != "timestamp")
    parts = [clock, str(rec.get("severity", "")), str(rec.get("message", "")), extras]
    return " ".join(p for p in parts if p)


def _attempt_key(path: Path) -> tuple[int, int, str]:
    # .../tasks/<index>/attempt-<n>.log: order by task, then attempt.
    try:
        index = int(path.parent.name)
        attempt = int(path.stem.rsplit("-", 1)[-1])
    except ValueError:
        return (1 << 30, 0, str(path))
    return (index, attempt, str(path))


def local_paths(backend: Any, job_id: str, task: int | None = None) -> list[Path]:
    finder = getattr(backend, "task_log_paths", None)
    if finder is not None:
        paths = [Path(p) for p in finder(job_id)]
    else:  # the layout docs/contracts.md fixes
        tasks = Path(backend.root) / "batch" / "jobs" / job_id / "tasks"
        paths = list(tasks.glob("*/attempt-*.log"))
    if task is not None:
        paths = [p for p in paths if p.parent.name == str(task)]
    return sorted(paths, key=_attempt_key)


def _label(path: Path) -> str:
    return f"[task {path.parent.name} {path.stem}]"


def local_lines(backend: Any, job_id: str, *, task: int | None = None,
                fmt: str = "text") -> Iterator[str]:
    """Every task attempt's log: a header per attempt, then its lines (text); each line
    labelled with its task and attempt (raw, json). Lines end with a newline."""
    paths = local_paths(backend, job_id, task)
    if not paths:
        which = f" task {task}" if task is not None else ""
        raise SubmitError(f"JOB_ID: no local task logs for {job_id!r}{which} (yet)")
    for path in paths:
        if fmt == "text":  # one header per attempt, like `tail` of several files
            yield f"==> task {path.parent.name} {path.stem} <==\n"
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                yield _format(line, path, fmt, label=fmt != "text") + "\n"


def _format(line: str, path: Path, fmt: str, *, label: bool = True) -> str:
    if fmt == "raw":
        return f"{_label(path)} {line.rstrip()}" if label else line.rstrip()
    rec = record(line)
    if fmt == "json":
        index, attempt, _ = _attempt_key(path)
        return json.dumps({"task": index, "attempt": attempt, **rec}, sort_keys=True,
                          default=str)
    return f"{_label(path)} {readable(rec)}" if label else readable(rec)


def local_follow(backend: Any, job_id: str, done: Callable[[], bool], *, task: int | None = None,
                 fmt: str = "text", poll_s: float = 1.0) -> Iterator[str]:
    """New complete lines of every attempt as they are written (each labelled, ending with a
    newline), until `done()` (the job is final), then whatever was written last."""
    offsets: dict[Path, int] = {}
    partial: dict[Path, str] = {}
    while True:
        finished = done()  # read before draining, so nothing written after it is missed
        for path in local_paths(backend, job_id, task):
            with path.open(encoding="utf-8", errors="replace") as fh:
                fh.seek(offsets.get(path, 0))
                chunk = fh.read()
                offsets[path] = fh.tell()
            text = partial.pop(path, "") + chunk
            *lines, rest = text.split("\n")
            if rest:
                partial[path] = rest
            for line in lines:
                yield _format(line, path, fmt) + "\n"
        if finished:
            for path, rest in partial.items():
                yield _format(rest, path, fmt) + "\n"
            return
        time.sleep(poll_s)


def local_tail(backend: Any, job_id: str, index: int, n: int = 5) -> list[str]:
    """The last `n` readable lines of task `index`'s last attempt ([] when it logged none)."""
    paths = local_paths(backend, job_id, index)
    if not paths:
        return []
    lines = paths[-1].read_text(encoding="utf-8", errors="replace").splitlines()
    return [readable(record(line)) for line in lines[-n:] if line.strip()]


def _cloud_filter(project: str, job_uid: str, task: int | None) -> str:
    # Batch writes task output to batch_task_logs and agent events to batch_agent_logs, both
    # labelled with the job's uid (https://cloud.google.com/batch/docs/analyze-job-using-logs).
    text = (f'logName=("projects/{project}/logs/batch_task_logs" OR '
            f'"projects/{project}/logs/batch_agent_logs") AND labels.job_uid="{job_uid}"')
    if task is not None:
        # Entries carry labels.task_id like "task/<job uid>-group0-<index>/<retry>/0" (seen
        # in Batch's logs; the docs name job_uid only): a substring match, so a different
        # format means an empty tail, never a wrong task's lines.
        text += f' AND labels.task_id:"-group0-{task}/"'
    return text


def cloud_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A Cloud Logging LogEntry (REST JSON) as a runner-style record."""
    payload = entry.get("jsonPayload")
    rec: dict[str, Any] = dict(payload) if isinstance(payload, dict) else {
        "message": entry.get("textPayload", "")}
    rec.setdefault("severity", entry.get("severity", ""))
    rec["time"] = rec.get("time") or entry.get("timestamp", "")
    rec["timestamp"] = entry.get("timestamp", "")  # the entry's own: what `since` compares
    task_id = str(entry.get("labels", {}).get("task_id", ""))
    if task_id:
        rec["task_id"] = task_id
    return rec


def cloud_entries(project: str, job_uid: str, *, limit: int, task: int | None = None,
                  since: str | None = None, newest_first: bool = False,
                  ) -> Iterator[dict[str, Any]]:
    """Cloud Logging entries of a job through the Logging REST API (google-auth's
    AuthorizedSession, no extra dependency). Needs a real project: not run by the tests."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/logging.read"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ServiceError("no Google credentials: run `gcloud auth application-default login`"
                           ) from None
    session = AuthorizedSession(creds)
    log_filter = _cloud_filter(project, job_uid, task)
    if since:
        log_filter += f' AND timestamp>"{since}"'
    body: dict[str, Any] = {"resourceNames": [f"projects/{project}"], "filter": log_filter,
                            "orderBy": "timestamp desc" if newest_first else "timestamp asc",
                            "pageSize": min(limit, 1000)}
    seen = 0
    while seen < limit:
        resp = session.post(_LOGGING_API, json=body, timeout=60)
        if resp.status_code != 200:
            raise ServiceError(f"Cloud Logging: HTTP {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        for entry in data.get("entries", []):
            yield cloud_entry(entry)
            seen += 1
            if seen >= limit:
                return
        token = data.get("nextPageToken")
        if not token:
            return
        body["pageToken"] = token


def cloud_follow(project: str, job_uid: str, done: Callable[[], bool], *,
                 task: int | None = None, poll_s: float = 5.0) -> Iterator[dict[str, Any]]:
    """Poll for entries newer than the last one seen until the job is final."""
    since: str | None = None
    while True:
        finished = done()
        for rec in cloud_entries(project, job_uid, limit=1000, task=task, since=since):
            since = str(rec.get("timestamp") or since)
            yield rec
        if finished:
            return
        time.sleep(poll_s)


def cloud_tail(project: str, job_uid: str, index: int, n: int = 5) -> list[str]:
    recs = list(cloud_entries(project, job_uid, limit=n, task=index, newest_first=True))
    return [readable(r) for r in reversed(recs)]


def format_record(rec: dict[str, Any], fmt: str) -> str:
    """A Cloud Logging record as `logs` prints it: readable (text), the entry as JSON (raw),
    or one normalised object with sorted keys (json). No trailing newline."""
    if fmt == "json":
        return json.dumps(rec, sort_keys=True, default=str)
    if fmt == "raw":
        return json.dumps(rec, default=str)
    return readable(rec)
