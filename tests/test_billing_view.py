"""The cost view's SQL, run on a recorded billing-export sample with an embedded engine:
sqlglot transpiles the BigQuery SQL for DuckDB, which runs it on the sample loaded in the
export's schema (labels ARRAY<STRUCT<key, value>>, credits ARRAY<STRUCT<...>>). What this
does not cover is in docs/costs.md ("What the view's test omits")."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from stacks.billing_sql import COLUMNS, export_table, query_sql, view_sql, view_table
from stacks.environments import prod

SAMPLE = Path(__file__).parent / "fixtures" / "billing" / "export_sample.json"
ENV = prod()
# The export's columns the view reads, typed as the export types them.
SCHEMA = {
    "billing_account_id": "VARCHAR",
    "service": "STRUCT(id VARCHAR, description VARCHAR)",
    "sku": "STRUCT(id VARCHAR, description VARCHAR)",
    "usage_start_time": "TIMESTAMPTZ",
    "usage_end_time": "TIMESTAMPTZ",
    "project": "STRUCT(id VARCHAR, number VARCHAR, name VARCHAR, "
               "labels STRUCT(key VARCHAR, value VARCHAR)[], ancestry_numbers VARCHAR)",
    "labels": "STRUCT(key VARCHAR, value VARCHAR)[]",
    "system_labels": "STRUCT(key VARCHAR, value VARCHAR)[]",
    "location": "STRUCT(location VARCHAR, country VARCHAR, region VARCHAR, zone VARCHAR)",
    "export_time": "TIMESTAMPTZ",
    "cost": "DOUBLE",
    "currency": "VARCHAR",
    "currency_conversion_rate": "DOUBLE",
    "usage": "STRUCT(amount DOUBLE, unit VARCHAR, amount_in_pricing_units DOUBLE, "
             "pricing_unit VARCHAR)",
    "credits": "STRUCT(name VARCHAR, amount DOUBLE, full_name VARCHAR, id VARCHAR, "
               "type VARCHAR)[]",
    "invoice": "STRUCT(month VARCHAR)",
    "cost_type": "VARCHAR",
}


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(SAMPLE.read_text())["rows"]
    return rows


def _duck(sql: str) -> str:
    return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    table = export_table(ENV)
    assert table is not None
    project, dataset, name = table.split(".")
    for catalog in {project, ENV.project_id}:
        con.execute(f'ATTACH \':memory:\' AS "{catalog}"')
    con.execute(f'CREATE SCHEMA "{project}"."{dataset}"')
    cols = ", ".join(f"{c} {t}" for c, t in SCHEMA.items())
    con.execute(f'CREATE TABLE "{project}"."{dataset}"."{name}" ({cols})')
    # Load through DuckDB's JSON reader, cast to the export's types.
    lines = tmp_path_factory.mktemp("export") / "export_sample.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    casts = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in SCHEMA.items())
    con.execute(f'INSERT INTO "{project}"."{dataset}"."{name}" SELECT {casts} FROM '
                f"read_json('{lines}', format='newline_delimited', columns={{"
                + ", ".join(f"'{c}': '{t}'" for c, t in SCHEMA.items()) + "})")
    _, views_dataset, view = view_table(ENV).split(".")
    con.execute(f'CREATE SCHEMA "{ENV.project_id}"."{views_dataset}"')
    con.execute(f'CREATE VIEW "{ENV.project_id}"."{views_dataset}"."{view}" AS '
                + _duck(view_sql(table, ENV.project_id)))
    return con


def _expected() -> dict[tuple[Any, ...], tuple[float, float]]:
    """The oracle: the sample summed in Python by the same keys."""
    out: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in _rows():
        labels = {x["key"]: x["value"] for x in r["labels"]}
        if r["project"]["id"] != ENV.project_id or "client" not in labels:
            continue
        key = (labels.get("client"), labels.get("job"), labels.get("env"), labels.get("run"))
        out[key][0] += r["cost"]
        out[key][1] += sum(c["amount"] for c in r["credits"])
    return {k: (v[0], v[1]) for k, v in out.items()}


def test_the_view_sums_cost_and_credits_by_client_job_env_and_run(
        db: duckdb.DuckDBPyConnection) -> None:
    got = db.execute(
        "SELECT client, job, env, run, currency, cost, credits, net_cost FROM "
        f'"{ENV.project_id}"."{ENV.observability.views_dataset}"."cost_by_run"').fetchall()
    expected = _expected()
    assert {r[:4] for r in got} == set(expected)
    for client, job, env, run, currency, cost, credits, net in got:
        want_cost, want_credits = expected[(client, job, env, run)]
        assert currency == "USD"
        assert cost == pytest.approx(want_cost) and credits == pytest.approx(want_credits)
        assert net == pytest.approx(want_cost + want_credits)
    acme_run = next(r for r in got if r[3] == "embed-0a1b2c3d4e")
    # Four SKUs of one run (cores, RAM, GPU, disk) less the Spot discount.
    assert acme_run[5] == pytest.approx(0.2419 + 0.1015 + 0.0434 + 0.0061)
    assert acme_run[6] == pytest.approx(-0.1123)
    # Unlabelled (shared logging) and other projects' rows are not attributed.
    assert all(r[0] in ("acme", "globex") for r in got)
    assert not any(r[3] == "embed-dev-1" for r in got)
    # The bucket's cost is acme's, with no job or run.
    assert ("acme", None, None, None) in {r[:4] for r in got}


@pytest.mark.parametrize(("client", "since", "runs"), [
    ("globex", None, {"uppercase-9f8e7d6c5b"}),
    ("acme", "2026-12-02", {"embed-20261202t101500-7c1d2e3f"}),
    (None, "2026-12-02", {"embed-20261202t101500-7c1d2e3f"}),
])
def test_the_costs_query_filters_by_client_and_date(
        db: duckdb.DuckDBPyConnection, client: str | None, since: str | None,
        runs: set[str]) -> None:
    sql = _duck(query_sql(view_table(ENV), client=client, since=since))
    cursor = db.execute(sql)
    assert tuple(d[0] for d in cursor.description) == COLUMNS
    assert {r[3] for r in cursor.fetchall()} == runs


@pytest.mark.parametrize(("client", "since", "field"), [
    ("acme' OR '1'='1", None, "--client"), (None, "yesterday", "--since")])
def test_the_query_refuses_what_is_not_a_name_or_a_date(
        client: str | None, since: str | None, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        query_sql(view_table(ENV), client=client, since=since)


def test_the_view_is_bigquery_sql_sqlglot_reads_without_loss() -> None:
    table = export_table(ENV)
    assert table is not None
    tree = sqlglot.parse_one(view_sql(table, ENV.project_id), read="bigquery")
    assert [t.sql("bigquery") for t in tree.find_all(sqlglot.exp.Table)
            if t.name == table.split(".")[2]] == [f"`{table}`"]
    assert {c.alias_or_name for c in tree.expressions} == set(COLUMNS)
