"""The SQL of the cost view over the Cloud Billing export, and the query
`bin/submit costs` runs on it. Pure: the submit path and the tests import it.

The export's schema (cloud.google.com/billing/docs/how-to/export-data-bigquery-tables/
standard-usage; the detailed export adds columns to it): `labels` is
ARRAY<STRUCT<key STRING, value STRING>> of the resource's labels, `cost` FLOAT64 in `currency`,
`credits` ARRAY<STRUCT<name, amount FLOAT64, full_name, id, type>> (amounts are negative),
`usage_start_time`/`usage_end_time` TIMESTAMP, `project` STRUCT<id, number, name, ...>,
`service`/`sku` STRUCT<id, description>. A row is one SKU's usage over an hour, so a run's cost
is the sum of the rows carrying its labels (jobs/billing_labels.py puts them there).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from jobs.billing_labels import BILLING_KEYS, CLIENT, RUN

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings

VIEW_ID = "cost_by_run"
COLUMNS = (*BILLING_KEYS, "currency", "first_usage", "last_usage", "cost", "credits",
           "net_cost")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LABEL_RE = re.compile(r"^[a-z0-9_-]{1,63}$")


def _label(key: str) -> str:
    return f"(SELECT l.value FROM UNNEST(labels) AS l WHERE l.key = '{key}')"


def view_sql(export_table: str, project_id: str) -> str:
    """Cost per (client, job, env, run, currency) of the project's labelled usage, in
    BigQuery GoogleSQL; `export_table` is `project.dataset.table`."""
    picks = ",\n  ".join(f"{_label(k)} AS {k}" for k in BILLING_KEYS)
    credits = "IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)"
    return (
        f"SELECT\n  {picks},\n  currency,\n"
        "  MIN(usage_start_time) AS first_usage,\n"
        "  MAX(usage_end_time) AS last_usage,\n"
        "  SUM(cost) AS cost,\n"
        f"  SUM({credits}) AS credits,\n"
        f"  SUM(cost) + SUM({credits}) AS net_cost\n"
        f"FROM `{export_table}`\n"
        f"WHERE project.id = '{project_id}'\n"
        f"  AND EXISTS (SELECT 1 FROM UNNEST(labels) AS l WHERE l.key = '{CLIENT}')\n"
        f"GROUP BY {', '.join(BILLING_KEYS)}, currency\n"
    )


def query_sql(view_table: str, *, client: str | None, since: str | None) -> str:
    """The rows of the view for `client` (all when None) whose usage ended on or after
    `since` (YYYY-MM-DD), newest first. Both are checked here: nothing else reaches the SQL."""
    where: list[str] = []
    if client is not None:
        if not _LABEL_RE.match(client):
            raise ValueError(f"--client: {client!r} is not a client name")
        where.append(f"{CLIENT} = '{client}'")
    if since is not None:
        if not _DATE_RE.match(since):
            raise ValueError(f"--since: {since!r} must be a date YYYY-MM-DD")
        where.append(f"last_usage >= TIMESTAMP('{since}')")
    clause = f"WHERE {' AND '.join(where)}\n" if where else ""
    return (f"SELECT {', '.join(COLUMNS)}\nFROM `{view_table}`\n{clause}"
            f"ORDER BY last_usage DESC, {RUN}\n")


def export_table(settings: EnvironmentSettings) -> str | None:
    """`project.dataset.table` of the billing export, None when none is configured."""
    export = settings.observability.billing_export
    if export is None:
        return None
    return f"{export.project or settings.project_id}.{export.dataset}.{export.table}"


def view_table(settings: EnvironmentSettings) -> str:
    return f"{settings.project_id}.{settings.observability.views_dataset}.{VIEW_ID}"
