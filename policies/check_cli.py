"""`bin/check`: synthesize every environment once, run checkov (built-in GCP checks + our
CKV_GPUB pack) on each stack and the job guardrails on each rendered job, apply the
suppression registry, write reports, print a summary. Exit 0 only when everything passes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from policies.check_report import print_findings, result_json, summary_table, write_reports
from policies.suppressions import DEFAULT_PATH, Matcher, SuppressionError, load
from stacks.settings import Guardrails
from tfjson import facts_from_document, split_groups, synthesized_stacks

ROOT = Path(__file__).resolve().parents[1]

app = typer.Typer(help=__doc__)
console = Console(stderr=False, highlight=False)


def _use_stderr_for_people() -> None:
    """With --json, stdout carries only the JSON document; the human output moves to stderr."""
    global console
    console = Console(stderr=True, highlight=False)


def _environments() -> dict[str, tuple[str, bool, Guardrails]]:
    """stack name -> (env name, cmek, limits), from the settings the stacks are built from."""
    try:
        from stacks.environments import load_environments  # pydantic only, no provider
    except Exception as exc:  # settings not importable: fall back to what the files say
        console.print(
            f"[yellow]warning:[/] environment settings not loaded ({exc}); "
            "using the stack files' labels and default guardrails"
        )
        return {}
    try:
        envs = load_environments()  # environments.yaml: the settings the stacks are built from
    except ValueError as exc:  # EnvironmentsError: one line naming the file and the field
        raise _bad_input(str(exc)) from None
    return {
        e.stack_name: (e.name, e.cmek, e.guardrails)
        for e in envs
    }


def _synth(out: Path) -> None:
    env = {**os.environ, "CDKTF_OUTDIR": str(out)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        console.print(f"[red]synth failed (exit {proc.returncode})[/]")
        raise typer.Exit(proc.returncode or 1)
    console.print(f"synth: {out} in {time.monotonic() - started:.1f}s")


# Terraform JSON and Batch job JSON nest a dozen levels; anything far deeper is not one of them
# (and would exhaust the recursion of the checks that walk it).
MAX_JSON_DEPTH = 64


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
    return deepest


def _bad_input(message: str) -> typer.Exit:
    """One line on the console, exit 2, nothing checked or written."""
    console.print(f"[red]{escape(message)}[/]", soft_wrap=True)
    return typer.Exit(2)


def _read_json(path: Path, option: str) -> dict[str, Any]:
    """A JSON object from a file given on the command line, or one line and exit 2."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad_input(f"{option}: cannot read {path}: {exc.strerror}") from None
    except RecursionError:
        raise _bad_input(f"{option}: {path} nests deeper than {MAX_JSON_DEPTH} levels; "
                         "not a Terraform or Batch job JSON") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _bad_input(f"{option}: {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad_input(f"{option}: {path} holds a JSON {type(doc).__name__}; expected an "
                         "object")
    if _depth(doc) > MAX_JSON_DEPTH:
        raise _bad_input(f"{option}: {path} nests deeper than {MAX_JSON_DEPTH} levels; "
                         "not a Terraform or Batch job JSON")
    return doc


def _check_options(env: str | None, reports: Path, out: Path) -> None:
    """Refuse a bad --env, --out or an unusable --reports before anything runs (exit 2)."""
    if out == ROOT or out in ROOT.parents:
        raise _bad_input(f"--out: {out} holds the repository; the synth output needs a folder "
                         "of its own, such as cdktf.out")
    if out.exists() and not out.is_dir():
        raise _bad_input(f"--out: {out} is not a directory")
    known = sorted({name for name, _, _ in _environments().values()})
    if env is not None and known and env not in known:
        raise _bad_input(f"--env: unknown environment {env!r} (known: {', '.join(known)})")
    probe = reports
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise _bad_input(f"--reports: cannot create {reports}: {probe} is not a writable "
                         "directory")


def _jobs_dir(stack_file: Path) -> Path:
    """The synthesized jobs of the stack in `<out>/stacks/<name>/cdk.tf.json`: `<out>/jobs/<name>/`
    of the same synth output, so a stack file checked on its own brings only its own jobs."""
    name = stack_file.parent.name
    return stack_file.parent.parent.parent / "jobs" / name


def _demote_warnings(report: Any, located: dict[int, Any], stacks: list[Any],
                     strict: bool) -> list[str]:
    """Job-rule findings below `error` do not fail the check (policies/job_rules.py), unless
    `--strict` or the stack's environment sets `guardrails.warnings_fail_check`: they move to
    the passed records and come back as lines to print."""
    from policies import job_rules

    fail_warnings = {s.name: strict or s.limits.warnings_fail_check for s in stacks}
    kept, lines = [], []
    for record in report.failed_checks:
        rule = job_rules.BY_ID.get(record.check_id)
        where = located.get(id(record))
        stack = where.stack if where else ""
        if rule is None or rule.severity == "error" or (
                rule.severity == "warning" and fail_warnings.get(stack, strict)):
            kept.append(record)
            continue
        report.passed_checks.append(record)
        detail = "; ".join(record.details) if record.details else record.check_name
        lines.append(f"{rule.severity.upper()} {record.check_id} {stack} {record.resource}: "
                     f"{detail}")
    report.failed_checks = kept
    return lines


def _stack_inputs(
    stack_files: list[Path], job_files: list[Path], out: Path, env_override: str | None
) -> list[Any]:
    from policies.scan import StackInput

    envs = _environments()
    if not stack_files and not job_files:
        # The synth's stacks (its manifest's: a shard a lower count dropped is not checked).
        stack_files = [out / "stacks" / n / "cdk.tf.json"
                       for n in synthesized_stacks(out / "stacks")]
        if not stack_files:
            raise _bad_input(f"no stacks under {out}/stacks; run without --no-synth")
    names = [tf.parent.name for tf in stack_files]  # loose files of one folder: by path
    keys = [n if names.count(n) == 1 else str(tf) for n, tf in zip(names, stack_files,
                                                                     strict=True)]
    docs = {k: _read_json(tf, "--stack-file") for k, tf in zip(keys, stack_files, strict=True)}
    # A platform stack and its client shards are one environment: its settings apply to all,
    # and project-wide limits and the shards' apply order are judged over the whole group.
    groups = split_groups(docs)
    stacks: list[StackInput] = []
    for key, tf in zip(keys, stack_files, strict=True):
        name = tf.parent.name
        group = groups[key]
        env_name, cmek, limits = envs.get(group[0], (None, None, Guardrails()))
        facts = dataclasses.replace(
            facts_from_document(docs[key], env=env_override or env_name, cmek=cmek),
            group=tuple(docs[n] for n in group))
        jobs = sorted(_jobs_dir(tf).glob("*.json")) if not job_files else []
        stacks.append(StackInput(name, tf, facts, limits, jobs))
    for job in job_files:
        _read_json(job, "--job-file")  # refuse unreadable input before any check runs
    if job_files:
        # Loose job files (tests, reviews): checked against the named or default environment.
        name = f"platform-{env_override}" if env_override else "jobs"
        env_name, cmek, limits = envs.get(name, (env_override, False, Guardrails()))
        facts = facts_from_document({}, env=env_name, cmek=bool(cmek))
        stacks.append(StackInput(name, None, facts, limits, list(job_files)))
    return stacks


@app.command()
def main(
    no_synth: Annotated[bool, typer.Option("--no-synth", help="Check what is in --out.")] = False,
    out: Annotated[Path, typer.Option(help="Synth output directory.")] = Path("cdktf.out"),
    reports: Annotated[Path, typer.Option(help="Where the reports go.")] = Path("reports"),
    stack_file: Annotated[
        list[Path] | None,
        typer.Option("--stack-file", help="Check this cdk.tf.json instead (no synth); repeatable."),
    ] = None,
    job_file: Annotated[
        list[Path] | None,
        typer.Option("--job-file", help="Check this Batch job JSON (no synth); repeatable."),
    ] = None,
    env: Annotated[
        str | None, typer.Option(help="Environment of --stack-file/--job-file (dev, prod...).")
    ] = None,
    suppressions: Annotated[Path, typer.Option(help="Suppression registry.")] = DEFAULT_PATH,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout (people's output goes to stderr).")
    ] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Job-rule warnings fail the check too (errors always do).")
    ] = False,
) -> None:
    started = time.monotonic()
    if json_out:
        _use_stderr_for_people()
    out = out if out.is_absolute() else Path.cwd() / out
    stack_files, job_files = list(stack_file or []), list(job_file or [])
    _check_options(env, reports, out.resolve())
    matcher = Matcher(_suppression_entries(suppressions))
    if not no_synth and not stack_files and not job_files:
        _synth(out)
    stacks = _stack_inputs(stack_files, job_files, out, env)

    from policies.scan import apply_suppressions, run_checkov, run_guardrails

    tf_report, located = run_checkov(stacks)
    job_report, job_located = run_guardrails(stacks)
    located.update(job_located)
    all_reports = [tf_report, job_report]
    for report in all_reports:
        apply_suppressions(report, located, matcher)
    for line in _demote_warnings(job_report, located, stacks, strict):
        console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
    print_findings(console, all_reports, located)
    problems = _suppression_problems(matcher, full_scan=not stack_files and not job_files)
    for problem in problems:
        console.print(f"[red]SUPPRESSIONS[/] {escape(problem)}", soft_wrap=True)
    written = write_reports(all_reports, reports)
    console.print(summary_table(all_reports, located))
    console.print("reports: " + ", ".join(str(p) for p in written))
    failed = any(r.failed_checks or r.parsing_errors for r in all_reports) or bool(problems)
    verdict = "[red]FAILED[/]" if failed else "[green]passed[/]"
    console.print(f"policy checks {verdict} in {time.monotonic() - started:.1f}s")
    if json_out:
        doc = result_json(all_reports, located, problems, written, failed,
                          time.monotonic() - started)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    raise typer.Exit(1 if failed else 0)


def _suppression_problems(matcher: Matcher, *, full_scan: bool) -> list[str]:
    """An entry is "unused" only when every stack was scanned: checking a single --stack-file
    or loose --job-file leaves most entries nothing to match (expired ones still fail)."""
    return [p for p in matcher.problems()
            if full_scan or not p.endswith("matches no failing result: remove it")]


def _suppression_entries(path: Path) -> list[Any]:
    try:
        return load(path)
    except SuppressionError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    except OSError as exc:  # a directory, unreadable, not UTF-8 is a ValueError above
        raise _bad_input(f"--suppressions: cannot read {path}: {exc.strerror}") from None


def run(argv: list[str] | None = None) -> int:
    """`bin/check`: typer's usage errors as one line (exit 2), never a traceback box."""
    try:
        code = app(args=argv, prog_name="bin/check", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 130
    except typer.TyperException as exc:  # typer's (vendored) click usage errors
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"bin/check: error: {' '.join(str(text).split())} (see bin/check --help)",
              file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(run())  # help names the command people run
