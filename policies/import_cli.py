"""`bin/import-job FILE [--name NAME] [--strict]`: print the JobSpec declaration for a Batch
job file (JSON or YAML, as `gcloud batch jobs submit --config` takes).

The printed module evaluates to a spec whose rendering equals the input (`SPEC = JobSpec(...)`),
ready to drop into `jobs/declared/`. Notes (dropped output-only fields, untyped parts kept in
`batch_overrides`) and job-rule findings (`warning:`, `info:`) go to stderr; a job-scope rule of
severity error refuses (exit 2), as everywhere; `--strict` also refuses warnings and notes.
Bad input: one line on stderr, exit 2. Everything taken from the input file that
reaches the generated code is written with `repr`, so no file name or value can inject code.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel

from jobs.errors import JobSpecError, one_line
from jobs.spec import NAME_MAX, JobSpec

_INDENT = "    "


def default_name(path: Path) -> str:
    """A valid job name from a file name: "batch.json" -> "batch"."""
    name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"job-{name}".rstrip("-")
    return name[:NAME_MAX].rstrip("-")


def to_python(spec: JobSpec, source: str = "") -> str:
    """Python source of a module declaring `SPEC`, listing only fields that differ from the
    defaults."""
    body = _call(spec, 0)
    used = sorted({"JobSpec"} | _model_names(spec))
    origin = f", imported from {source}" if source else ""
    doc = repr(f"Batch job {spec.name}{origin} by bin/import-job.")  # repr: never code
    return f"{doc}\n\nfrom jobs.spec import {', '.join(used)}\n\nSPEC = {body}\n"


def _call(model: BaseModel, depth: int) -> str:
    fields = type(model).model_fields
    items: list[str] = []
    for key, info in fields.items():
        value = getattr(model, key)
        default = info.get_default(call_default_factory=True)
        if value == default and key != "name":
            continue
        items.append(f"{key}={_literal(value, depth + 1)}")
    name = type(model).__name__
    if sum(len(i) for i in items) + len(name) < 70 and "\n" not in "".join(items):
        return f"{name}({', '.join(items)})"
    pad = _INDENT * (depth + 1)
    inner = "".join(f"{pad}{item},\n" for item in items)
    return f"{name}(\n{inner}{_INDENT * depth})"


def _literal(value: Any, depth: int) -> str:
    if isinstance(value, BaseModel):
        return _call(value, depth)
    if isinstance(value, list):
        parts = [_literal(v, depth + 1) for v in value]
        if sum(len(p) for p in parts) < 70 and not any("\n" in p for p in parts):
            return f"[{', '.join(parts)}]"
        pad = _INDENT * (depth + 1)
        return "[\n" + "".join(f"{pad}{p},\n" for p in parts) + f"{_INDENT * depth}]"
    if isinstance(value, dict):
        parts = [f"{_literal(k, 0)}: {_literal(v, depth + 1)}" for k, v in value.items()]
        if sum(len(p) for p in parts) < 70 and not any("\n" in p for p in parts):
            return "{" + ", ".join(parts) + "}"
        pad = _INDENT * (depth + 1)
        return "{\n" + "".join(f"{pad}{p},\n" for p in parts) + f"{_INDENT * depth}}}"
    return repr(value)  # str, int, float, bool, None: repr is a safe Python literal


def _model_names(model: BaseModel) -> set[str]:
    names: set[str] = set()
    for key in type(model).model_fields:
        value = getattr(model, key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, BaseModel):
                names |= {type(v).__name__} | _model_names(v)
    return names


def findings(spec: JobSpec) -> list[Any]:
    """Job-scope rule findings about the job itself (policies/job_rules.py); an import has no
    environment, so no environment's ceiling is checked here."""
    from jobs.render import render_job
    from policies.guardrails import check_job

    return check_job(render_job(spec), env_name="import", scopes=("job",))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        print(f"import-job: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="import-job",
        description="Print the JobSpec declaration (a module for jobs/declared/) equivalent "
        "to a Google Batch job file (JSON or YAML).",
    )
    parser.add_argument(
        "file", type=Path, help="Batch job JSON or YAML (gcloud --config); - for stdin"
    )
    parser.add_argument("--name", help="job name (default: from the file name)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse warnings too (errors always refuse), and untyped fields or dropped "
        "output-only fields, instead of reporting them",
    )
    args = parser.parse_args(argv)
    shown = ascii(str(args.file))  # a file name is printed, never trusted
    try:
        # "-" reads stdin, as `gcloud batch jobs submit --config=-` does.
        raw = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        print(f"import-job: cannot read {shown}: {exc.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"import-job: {shown}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return 2
    from jobs.importer import import_job  # google-cloud-batch

    try:
        default = "imported" if str(args.file) == "-" else default_name(args.file)
        result = import_job(text, name=args.name or default)
    except (JobSpecError, ValueError) as exc:
        print(f"import-job: {shown}: {one_line(exc)}", file=sys.stderr)
        return 2
    found = findings(result.spec)
    refused = [v for v in found if v.severity == "error" or (args.strict and v.severity ==
                                                              "warning")]
    if refused or (args.strict and result.notes):
        problems = [f"{v.path}: {v.message} ({v.rule_id})" for v in refused]
        problems += result.notes if args.strict else []
        more = " (--strict)" if args.strict else " (errors of policies/job_rules.py)"
        print(f"import-job: {shown}: {len(problems)} problems{more}: " + "; ".join(problems),
              file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for v in found:
        print(f"{v.severity}: {v}", file=sys.stderr)
    sys.stdout.write(to_python(result.spec, "stdin" if str(args.file) == "-" else args.file.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
