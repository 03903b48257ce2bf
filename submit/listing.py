"""`list` filters (client, job, state, since) and the one JSON shape of a job.

Pure: works on the summaries `list`/`status` build, so the filter rules are tested without a
service. JSON schema (every command that prints a job prints these keys; see docs/submit.md):
`job_id`, `name`, `state`, `labels`, `task_count`, `input`, `output`,
`created` (RFC 3339 timestamp of the job's creation, or null), `duration_s`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from submit.errors import SubmitError

# The keys of a job in every JSON output (list rows exactly; status, cancel and run add more).
JOB_KEYS = frozenset({"job_id", "name", "state", "labels", "task_count", "input", "output",
                      "created", "duration_s"})
JOB_STATES = ("QUEUED", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLATION_IN_PROGRESS",
              "CANCELLED", "DELETION_IN_PROGRESS", "STATE_UNSPECIFIED")
_AGO = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`30m`, `12h`, `7d`, `2w` ago, or an ISO 8601 date/time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    if (m := _AGO.match(value.strip())) is not None:
        try:
            return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except (OverflowError, ValueError):  # further back than datetime reaches
            raise SubmitError(f"--since: {value!r} reaches before year 1; give a shorter "
                              "duration or an ISO date") from None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SubmitError(f"--since: expected a duration like 12h or 7d, or an ISO date such "
                          f"as 2026-11-30 or 2026-11-30T08:00:00Z; got {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def check_state(value: str | None) -> str | None:
    if value is None:
        return None
    state = value.strip().upper()
    if state not in JOB_STATES:
        raise SubmitError(f"--state: {value!r} is not a job state (one of "
                          f"{', '.join(JOB_STATES[:7]).lower()})")
    return state


def filter_jobs(rows: Iterable[dict[str, Any]], *, client: str | None = None,
                job: str | None = None, state: str | None = None,
                since: datetime | None = None) -> list[dict[str, Any]]:
    """Rows whose labels, state and creation time match every filter given."""
    out = []
    for row in rows:
        labels = row.get("labels") or {}
        if client is not None and labels.get("client") != client:
            continue
        if job is not None and labels.get("job") != job:
            continue
        if state is not None and row.get("state") != state:
            continue
        if since is not None:
            created = row.get("created")
            if created is None or datetime.fromisoformat(created) < since:
                continue
        out.append(row)
    return out
