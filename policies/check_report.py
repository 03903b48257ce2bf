"""What `bin/check` prints and writes: the findings, the summary table, the `--json` document
and the reports (SARIF, JUnit XML, plain text)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
SARIF_FILE = "results_sarif.sarif"
JUNIT_FILE = "results_junitxml.xml"
CLI_FILE = "results_cli.txt"


def print_findings(console: Console, reports: list[Any], located: dict[int, Any]) -> None:
    """One line per parse error and per failed check, with where it is."""
    for report in reports:
        for error in report.parsing_errors:
            console.print(f"[red]PARSE ERROR[/] {escape(error)}", soft_wrap=True)
        for record in report.failed_checks:
            where = located.get(id(record))
            detail = "; ".join(record.details) if record.details else record.check_name
            console.print(
                f"[red]FAILED[/] {record.check_id} {where.stack if where else ''} "
                f"{escape(record.resource)} ({escape(record.file_path)}:"
                f"{record.file_line_range[0]}): {escape(detail)}",
                soft_wrap=True,
            )


def summary_table(reports: list[Any], located: dict[int, Any]) -> Table:
    table = Table(title="policy checks")
    for col in ("stack", "scope", "checks run", "passed", "failed", "suppressed"):
        table.add_column(col, justify="left" if col in {"stack", "scope"} else "right")
    counts: Counter[tuple[str, str, str]] = Counter()
    for report in reports:
        scope = "jobs" if report.check_type.startswith("gpub_job") else "terraform"
        for state, records in (
            ("passed", report.passed_checks),
            ("failed", report.failed_checks),
            ("suppressed", report.skipped_checks),
        ):
            for record in records:
                where = located.get(id(record))
                counts[(where.stack if where else "?", scope, state)] += 1
    keys = sorted({(s, sc) for s, sc, _ in counts})
    totals: Counter[str] = Counter()
    for stack, scope in keys:
        row = {st: counts[(stack, scope, st)] for st in ("passed", "failed", "suppressed")}
        totals.update(row)
        style = "red" if row["failed"] else None
        table.add_row(
            stack,
            scope,
            str(sum(row.values())),
            str(row["passed"]),
            str(row["failed"]),
            str(row["suppressed"]),
            style=style,
        )
    table.add_row(
        "total",
        "",
        str(sum(totals.values())),
        str(totals["passed"]),
        str(totals["failed"]),
        str(totals["suppressed"]),
        style="bold",
    )
    return table


def result_json(reports: list[Any], located: dict[int, Any], problems: list[str],
                 written: list[Path], failed: bool, seconds: float) -> dict[str, Any]:
    """The `--json` document: one object, stable keys (docs/policies.md "bin/check --json")."""
    findings = []
    for report in reports:
        for record in report.failed_checks:
            where = located.get(id(record))
            findings.append({
                "check_id": record.check_id, "stack": where.stack if where else None,
                "resource": record.resource, "file": record.file_path,
                "line": record.file_line_range[0],
                "detail": "; ".join(record.details) if record.details else record.check_name,
            })
    return {
        "passed": not failed,
        "checks_run": sum(len(r.passed_checks) + len(r.failed_checks) + len(r.skipped_checks)
                          for r in reports),
        "passed_checks": sum(len(r.passed_checks) for r in reports),
        "suppressed": sum(len(r.skipped_checks) for r in reports),
        "failed": findings,
        "parse_errors": [e for r in reports for e in r.parsing_errors],
        "suppression_problems": problems,
        "reports": [str(p) for p in written],
        "seconds": round(seconds, 1),
    }


def write_reports(reports: list[Any], directory: Path) -> list[Path]:
    """The SARIF (GitHub code scanning), JUnit and plain-text reports of one run."""
    from checkov.common.output.report import Report
    from checkov.common.output.sarif import Sarif
    from checkov.common.util.json_utils import CustomJSONEncoder

    directory.mkdir(parents=True, exist_ok=True)
    sarif = Sarif(reports=reports, tool="bin/check (checkov + CKV_GPUB rules)")
    (directory / SARIF_FILE).write_text(json.dumps(sarif.json, indent=2, cls=CustomJSONEncoder))
    junit = Report.get_junit_xml_string([r.get_test_suite() for r in reports])
    (directory / JUNIT_FILE).write_text(junit)
    text = "".join(r.print_console(is_compact=True) for r in reports)
    (directory / CLI_FILE).write_text(ANSI_RE.sub("", text))
    return [directory / n for n in (CLI_FILE, SARIF_FILE, JUNIT_FILE)]
