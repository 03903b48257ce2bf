"""Where `bin/submit costs` gets its rows: the cost view on Google (BigQuery REST), or, with
`--local`, an estimate computed from the local Batch records and the price catalog.

Both give the view's columns (stacks/billing_sql.COLUMNS) per (client, job, env, run); local
rows also say `estimated: true` and how they were priced. Pure apart from the two readers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobs.billing_labels import BILLING_KEYS, CLIENT, RUN
from submit.errors import ServiceError, SubmitError

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from stacks.settings import EnvironmentSettings
    from submit.batch import Connection

# BigQuery jobs.query (cloud.google.com/bigquery/docs/reference/rest/v2/jobs/query): POST
# .../projects/{p}/queries {query, useLegacySql, location, timeoutMs}; when `jobComplete` is
# false the rows come from jobs.getQueryResults (.../queries/{jobId}?location=).
BQ = "https://bigquery.googleapis.com/bigquery/v2/projects"
BQ_SCOPE = "https://www.googleapis.com/auth/bigquery.readonly"
QUERY_DEADLINE_S = 120.0


@dataclass(frozen=True)
class TaskTime:
    """Seconds a job's tasks spent RUNNING (every attempt), from their status events."""

    seconds: float
    first: datetime | None
    last: datetime | None


def running_time(tasks: list[batch_v1.Task]) -> TaskTime:
    """Sum the spans from each RUNNING event to the task's next state event (a task still
    running counts up to its last event)."""
    total = 0.0
    first: datetime | None = None
    last: datetime | None = None
    for task in tasks:
        started: datetime | None = None
        for event in sorted(task.status.status_events, key=lambda e: e.event_time):
            when = event.event_time
            if started is not None:
                total += (when - started).total_seconds()
                last = when if last is None or when > last else last
                started = None
            if event.task_state.name == "RUNNING":
                started = when
                first = when if first is None or when < first else first
    return TaskTime(total, first, last)


def _job_json(job: batch_v1.Job) -> dict[str, Any]:
    from google.cloud import batch_v1

    data: dict[str, Any] = json.loads(batch_v1.Job.to_json(job, use_integers_for_enums=False))
    return data


def estimate_rows(conn: Connection, *, client: str | None,
                  since: datetime | None) -> list[dict[str, Any]]:
    """One row per run of the local Batch records that carries billing labels: the tasks'
    RUNNING time at the catalog price of the job's machine (jobs/machines.yaml)."""
    from submit import batch, costing

    runs: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for job in batch.list_jobs(conn):
        labels = dict(job.allocation_policy.labels)
        if CLIENT not in labels or (client is not None and labels[CLIENT] != client):
            continue
        spent = running_time(batch.list_tasks(conn, job))
        if since is not None and (spent.last is None or spent.last < since):
            continue
        shape = costing.job_shape(_job_json(job))
        try:
            price = costing.vm_price_per_hour(shape)
        except SubmitError:
            price = None
        vm_hours = spent.seconds / 3600 / max(shape.tasks_per_node, 1)
        key = tuple(labels.get(k) for k in BILLING_KEYS)
        row = runs.setdefault(key, {
            **dict(zip(BILLING_KEYS, key, strict=True)), "currency": "USD",
            "first_usage": None, "last_usage": None, "cost": 0.0, "credits": 0.0,
            "net_cost": 0.0, "estimated": True, "jobs": [], "vm_hours": 0.0,
            "priced": [],
        })
        row["jobs"].append(batch.short_id(job.name))
        row["vm_hours"] += vm_hours
        if price is None:
            row["cost"] = row["net_cost"] = None  # not in the catalog: no estimate
            row["priced"].append(f"{shape.machine_type}: not in the price catalog")
        elif row["cost"] is not None:
            row["cost"] += vm_hours * price
            row["net_cost"] = row["cost"]
            model = "spot" if shape.spot else "on-demand"
            note = f"{shape.machine_type} {model} ${price:.4f}/h"
            if note not in row["priced"]:
                row["priced"].append(note)
        for k, when, better in (("first_usage", spent.first, min),
                                ("last_usage", spent.last, max)):
            if when is not None:
                text = when.isoformat()
                row[k] = text if row[k] is None else better(row[k], text)
    return sorted(runs.values(), key=lambda r: (r["last_usage"] or "", r[RUN] or ""),
                  reverse=True)


def _session() -> Any:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(scopes=[BQ_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ServiceError(f"no Google credentials for BigQuery: {exc}") from None
    return AuthorizedSession(credentials)


def _values(schema: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for f, cell in zip(schema, r["f"], strict=True):
            v = cell.get("v")
            if v is not None and f["type"] in ("FLOAT", "FLOAT64", "NUMERIC"):
                v = float(v)
            elif v is not None and f["type"] == "TIMESTAMP":
                v = datetime.fromtimestamp(float(v)).astimezone().isoformat()
            row[f["name"]] = v
        out.append({**row, "estimated": False})
    return out


def view_rows(env: EnvironmentSettings, sql: str) -> list[dict[str, Any]]:
    """Run `sql` on BigQuery in the environment's project (the view's location)."""
    export = env.observability.billing_export
    assert export is not None
    session = _session()
    url = f"{BQ}/{env.project_id}/queries"
    body = {"query": sql, "useLegacySql": False, "location": export.location,
            "timeoutMs": 30000}
    resp = session.post(url, json=body, timeout=60)
    deadline = time.monotonic() + QUERY_DEADLINE_S
    while True:
        if resp.status_code != 200:
            message = resp.json().get("error", {}).get("message", resp.text[:200])
            raise ServiceError(f"BigQuery refused the cost query ({resp.status_code}): "
                               f"{message}")
        data = resp.json()
        if data.get("jobComplete"):
            break
        if time.monotonic() > deadline:
            raise ServiceError(f"the cost query did not finish in {QUERY_DEADLINE_S:.0f}s")
        job_id = data["jobReference"]["jobId"]
        resp = session.get(f"{url}/{job_id}", params={"location": export.location,
                                                      "timeoutMs": 30000}, timeout=60)
    return _values(data["schema"]["fields"], data.get("rows", []))
