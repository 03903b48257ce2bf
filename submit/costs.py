"""`bin/submit costs [--client C] [--since D] [--json] [--env E] [--local]`: what each run of
each client cost (docs/costs.md).

On Google it reads the cost view over the billing export (stacks/billing_sql.py: the rows the
billing export attributes to the `client`/`job`/`env`/`run` labels of the runs' VMs, GPUs and
disks). With `--local` there is no bill: it computes the same table from the local Batch
records (the tasks' RUNNING time) and the price catalog, and marks every row as an estimate.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from submit import synth
from submit.errors import SubmitError
from submit.ui import EnvDefault, JsonOpt, LocalOpt, say

ClientOpt = Annotated[str | None, typer.Option("--client", help="Only this client's runs.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="Only usage since: 12h, 7d, or an ISO date such as 2026-12-01.")]


def _since(value: str | None) -> datetime | None:
    from submit import listing

    return listing.parse_since(value) if value is not None else None


def _check_client(env_name: str, client: str | None) -> None:
    if client is None:
        return
    env = synth.load_environment(env_name)
    known = sorted(c.name for c in env.clients)
    if client not in known:
        raise SubmitError(f"--client: unknown client {client!r} in {env_name} (known: "
                          f"{', '.join(known) or 'none'})")


def _usd(value: float | None) -> str:
    from submit.costing import usd

    return "n/a" if value is None else usd(value)


def _print_table(rows: list[dict[str, Any]], estimated: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    title = ("estimated cost per run (local records x catalog prices; not a bill)" if estimated
             else "cost per run (Cloud Billing export)")
    table = Table(title=title)
    for col in ("client", "job", "env", "run", "last usage", "cost", "credits", "net"):
        table.add_column(col, justify="right" if col in ("cost", "credits", "net") else "left")
    for r in rows:
        table.add_row(r["client"] or "-", r["job"] or "-", r["env"] or "-", r["run"] or "-",
                      (r["last_usage"] or "-")[:19], _usd(r["cost"]), _usd(r["credits"]),
                      _usd(r["net_cost"]))
    Console(file=sys.stdout, width=160).print(table)
    total = sum(r["net_cost"] or 0.0 for r in rows)
    say(f"{len(rows)} runs, {'estimated ' if estimated else ''}total {_usd(total)}")


def costs_cmd(
    env: EnvDefault = "dev", local: LocalOpt = False, json_out: JsonOpt = False,
    client: ClientOpt = None, since: SinceOpt = None,
) -> int:
    """Cost per client, job and run: the billing export's view on Google; with --local an
    estimate from the local Batch records and the price catalog."""
    from stacks.billing_sql import query_sql, view_table

    # Bad input is refused before any service is started or called.
    after = _since(since)
    _check_client(env, client)
    settings = synth.load_environment(env)
    if local:
        from submit.backend import backend_for
        from submit.costs_sources import estimate_rows

        backend = backend_for(True, settings.operator_sa_email)
        rows = estimate_rows(backend.batch(settings.project_id, settings.region),
                             client=client, since=after)
    else:
        from submit.costs_sources import view_rows

        if settings.observability.billing_export is None:
            raise SubmitError(
                f"--env: environment {env} names no billing export "
                "(observability.billing_export: dataset and table), so there is no cost view "
                "to read; see docs/costs.md, or use --local for an estimate")
        try:
            sql = query_sql(view_table(settings), client=client,
                            since=after.date().isoformat() if after else None)
        except ValueError as exc:
            raise SubmitError(str(exc)) from None
        rows = view_rows(settings, sql)
    if json_out:
        sys.stdout.write(json.dumps({"env": env, "estimated": local, "runs": rows},
                                    sort_keys=True) + "\n")
    else:
        _print_table(rows, estimated=local)
    return 0
