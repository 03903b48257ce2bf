"""`bin/import-job FILE [--name NAME]`: print the JobSpec declaration for a Batch job JSON.

The printed module evaluates to a spec whose rendering equals the input (`SPEC = JobSpec(...)`),
ready to drop into `jobs/declared/`. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

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
    return (
        f'"""Batch job `{spec.name}`{origin} by bin/import-job."""\n\n'
        f"from jobs.spec import {', '.join(used)}\n\n"
        f"SPEC = {body}\n"
    )


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
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python literal, in double quotes
    return repr(value)


def _model_names(model: BaseModel) -> set[str]:
    names: set[str] = set()
    for key in type(model).model_fields:
        value = getattr(model, key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, BaseModel):
                names |= {type(v).__name__} | _model_names(v)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="import-job",
        description="Print the JobSpec declaration (a module for jobs/declared/) equivalent "
        "to a Google Batch job JSON file.",
    )
    parser.add_argument("file", type=Path, help="Batch job JSON (as for gcloud batch jobs submit)")
    parser.add_argument("--name", help="job name (default: from the file name)")
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"import-job: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        spec = JobSpec.from_batch_json(text, name=args.name or default_name(args.file))
    except (JobSpecError, ValueError) as exc:
        print(f"import-job: {args.file}: {one_line(exc)}", file=sys.stderr)
        return 2
    sys.stdout.write(to_python(spec, args.file.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
