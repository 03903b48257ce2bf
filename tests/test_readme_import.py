"""The README's import example, followed literally: the `bin/import-job` line prints what the
README shows, and the job it declares synthesizes for every example environment and passes the
job rules as `bin/check` applies them (errors fail, warnings print)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

from jobs.spec import JobSpec
from policies.check_cli import _demote_warnings
from policies.import_cli import main as import_job
from policies.scan import StackInput, run_guardrails
from stacks.app import build_app, write_job_json
from stacks.environments import load_environments
from tfjson import facts_from_document

REPO = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^\$ bin/import-job (?P<args>.+?) > (?P<target>jobs/declared/\S+\.py)$",
                     re.MULTILINE)


def _readme_example() -> tuple[list[str], str, list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = COMMAND.search(text)
    assert m, "README shows no `$ bin/import-job ... > jobs/declared/X.py` line"
    block = text[m.end():text.index("```", m.end())]
    printed = [ln for ln in block.splitlines() if ln and not ln.startswith("$")]
    return shlex.split(m["args"]), m["target"], printed


def test_readme_import_example_passes_the_checks(tmp_path: Path) -> None:
    args, target, printed = _readme_example()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(REPO), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert import_job(args) == 0
    assert err.getvalue().splitlines() == printed  # the README shows what the command prints
    namespace: dict[str, object] = {}
    exec(compile(out.getvalue(), target, "exec"), namespace)  # the declared module
    spec = namespace["SPEC"]
    assert isinstance(spec, JobSpec)

    envs = [e.model_copy(update={"jobs": [*e.jobs, spec]}) for e in load_environments()]
    _, stacks = build_app(envs, outdir=str(tmp_path))
    written = write_job_json(tmp_path, stacks)
    inputs = [StackInput(e.stack_name, None, facts_from_document({}, env=e.name, cmek=e.cmek),
                         e.guardrails, [p for p in written if p.parent.name == e.stack_name])
              for e in envs]
    assert all(any(p.stem == spec.name for p in s.job_files) for s in inputs)
    report, located = run_guardrails(inputs)
    warnings = _demote_warnings(report, located, inputs, strict=False)
    assert [r.check_id for r in report.failed_checks] == [], [
        (r.check_id, r.details) for r in report.failed_checks]
    assert all(not line.startswith("ERROR") for line in warnings)
