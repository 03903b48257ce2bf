"""Run checkov in-process over every stack file at once, and the guardrails over the job JSON.

One in-process TerraformJsonRunner run for all stacks (checkov costs ~1.5 s to import and
~0.3 s per scan; a subprocess per stack would pay the import each time). Results come back as
checkov `Report`s so the SARIF/JUnit/console writers of checkov serve our guardrails too.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policies.guardrails import RULES, GuardrailLimits, check_job
from policies.image_versions import IMAGE_RULES, check_images
from policies.suppressions import Matcher
from tfjson import StackFacts, register_facts, shard_of_document

RULES = {**RULES, **IMAGE_RULES}  # GPUB_JOB_12 (policies/image_versions.py)

if TYPE_CHECKING:
    from checkov.common.output.record import Record
    from checkov.common.output.report import Report

CHECKS_DIR = Path(__file__).with_name("checks")
GUARDRAILS_CHECK_TYPE = "gpub_job_guardrails"


@dataclass
class StackInput:
    """One stack to check: its Terraform JSON, its jobs, and its environment's facts."""

    name: str
    tf_file: Path | None
    facts: StackFacts
    limits: GuardrailLimits
    job_files: list[Path] = field(default_factory=list)


@dataclass
class Located:
    """Where a result belongs: its stack and the names a suppression glob may match."""

    stack: str
    names: list[str]


def _rel(path: Path) -> str:
    try:
        return "/" + os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:
        return str(path)


# A for_each map replaced in the copy checkov scans (see `_slim_copy`).
SLIM_FOR_EACH = {"__gpub_entries_in_the_stack_file__": True}
NAME_LINE_RE = re.compile(r'^( {4}| {6})"([^"]+)": \{$')


def _slim_copy(source: Path, folder: Path) -> Path:
    """The stack file with every literal `for_each` map replaced by a stub.

    checkov's graph flattens each attribute of a resource and compares every flattened key
    with every other (quadratic in the entries of a map: minutes at 1,000 clients), although
    its for_each handling is off and no built-in check reads the map. Our rules read the
    entries from the stack file itself (`GpubCheck`, facts registered for both paths).
    """
    doc = json.loads(source.read_text(encoding="utf-8"))
    for named in (doc.get("resource") or {}).values():
        for conf in named.values() if isinstance(named, dict) else []:
            if isinstance(conf, dict) and isinstance(conf.get("for_each"), dict):
                conf["for_each"] = dict(SLIM_FOR_EACH)
    target = folder / source.parent.name / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return target


def _resource_lines(path: Path) -> dict[tuple[str, str], int]:
    """(type, name) -> first line of the resource in a `cdk.tf.json` as the CDK writes it."""
    lines: dict[tuple[str, str], int] = {}
    section, rtype = "", ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith('  "'):
            section = line.split('"')[1]
            continue
        m = NAME_LINE_RE.match(line)
        if m and section == "resource":
            if len(m.group(1)) == 4:
                rtype = m.group(2)
            else:
                lines[(rtype, m.group(2))] = number
    return lines


def run_checkov(stacks: list[StackInput]) -> tuple[Report, dict[int, Located]]:
    """Built-in checks + our pack over every stack file; records carry real addresses."""
    with tempfile.TemporaryDirectory(prefix="gpub-scan-") as tmp:
        return _run_checkov(stacks, Path(tmp))


def _run_checkov(stacks: list[StackInput], tmp: Path) -> tuple[Report, dict[int, Located]]:
    files, originals = _scanned_copies(stacks, tmp)
    report, by_line = _checkov(list(files))
    return report, _locate(report, files, originals, by_line)


def _scanned_copies(stacks: list[StackInput], tmp: Path
                    ) -> tuple[dict[str, StackInput], dict[str, Path]]:
    """The slim copy checkov scans of each stack file (its stack, its original), facts
    registered for both paths."""
    files: dict[str, StackInput] = {}
    originals: dict[str, Path] = {}
    for i, stack in enumerate(s for s in stacks if s.tf_file is not None):
        assert stack.tf_file is not None
        original = stack.tf_file.resolve()
        slim = _slim_copy(original, tmp / str(i)).resolve()
        files[str(slim)] = stack
        originals[str(slim)] = original
        register_facts(original, stack.facts)
        register_facts(slim, stack.facts)
    return files, originals


def _checkov(files: list[str]) -> tuple[Report, dict[tuple[str, int], tuple[str, str | None]]]:
    """One checkov run over `files`, and (file, first line) -> (`<type>.<name>`, construct
    path): the terraform_json runner names resources "resource.<name>"."""
    from checkov.runner_filter import RunnerFilter
    from checkov.terraform_json.runner import TerraformJsonRunner

    # checkov's own for_each handling renders every map entry through its variable renderer
    # (asteval per value): minutes at 20 clients. Our rules expand the literal maps themselves
    # (GpubCheck); built-in checks read the resources' literal attributes.
    os.environ["CHECKOV_ENABLE_FOREACH_HANDLING"] = "False"
    runner = TerraformJsonRunner()
    result = runner.run(
        root_folder=None,
        files=files,
        external_checks_dir=[str(CHECKS_DIR)],
        runner_filter=RunnerFilter(
            framework=["terraform_json"], download_external_modules=False, show_progress_bar=False
        ),
    )
    report = result[0] if isinstance(result, list) else result
    by_line: dict[tuple[str, int], tuple[str, str | None]] = {}
    for path, definition in runner.definitions.items():
        for entity in definition.get("resource", []):
            for rtype, named in entity.items():
                for name, conf in named.items():
                    meta = conf.get("//", {}).get("metadata", {}) if isinstance(conf, dict) else {}
                    by_line[(str(Path(path).resolve()), conf.get("__startline__", -1))] = (
                        f"{rtype}.{name}",
                        meta.get("path") if isinstance(meta, dict) else None,
                    )
    return report, by_line


def _locate(report: Report, files: dict[str, StackInput], originals: dict[str, Path],
            by_line: dict[tuple[str, int], tuple[str, str | None]]) -> dict[int, Located]:
    """Each record renamed to its address and pointed at the stack file itself (not the
    scanned copy); what suppressions may match it by."""
    located: dict[int, Located] = {}
    lines = {slim: _resource_lines(original) for slim, original in originals.items()}
    for record in report.get_all_records():
        abs_path = str(Path(record.file_abs_path).resolve())
        stack_name = files[abs_path].name if abs_path in files else Path(abs_path).parent.name
        address, construct = by_line.get(
            (abs_path, record.file_line_range[0]), (record.resource, None)
        )
        record.resource = address
        if abs_path in originals:
            original = originals[abs_path]
            record.file_abs_path = str(original)
            record.file_path = _rel(original)
            start = lines[abs_path].get(tuple(address.split(".", 1)))  # type: ignore[arg-type]
            if start is not None:
                span = record.file_line_range[1] - record.file_line_range[0]
                record.file_line_range = [start, start + span]
        located[id(record)] = Located(stack_name, _names(address, stack_name, construct,
                                                         files.get(abs_path)))
    return located


def _names(address: str, stack_name: str, construct: str | None,
           stack: StackInput | None) -> list[str]:
    """What a suppression's `resource` glob may match: the address, `<stack>/<address>`, the
    construct path; in a client shard also `<platform stack>/<address>` (a shard is part of
    its platform's environment: what is suppressed for `platform-dev/*` is in its shards)."""
    names = [address, f"{stack_name}/{address}"] + ([construct] if construct else [])
    shard = shard_of_document(stack.facts.document) if stack is not None else None
    if shard is not None:
        names.append(f"{shard[0]}/{address}")
    return names


def _record(
    rule_id: str, failed: bool, details: list[str], job_file: Path, resource: str
) -> Record:
    from checkov.common.models.enums import CheckResult
    from checkov.common.output.record import Record

    return Record(
        check_id=rule_id,
        check_name=RULES[rule_id],
        check_result={"result": CheckResult.FAILED if failed else CheckResult.PASSED},
        code_block=[],
        file_path=_rel(job_file),
        file_line_range=[1, 1],
        resource=resource,
        evaluations=None,
        check_class="policies.guardrails",
        file_abs_path=str(job_file.resolve()),
        details=details,
    )


def run_guardrails(stacks: list[StackInput]) -> tuple[Report, dict[int, Located]]:
    """Every guardrail on every job file: one PASSED or FAILED record per (job, rule)."""
    from checkov.common.output.report import Report

    report = Report(GUARDRAILS_CHECK_TYPE)
    located: dict[int, Located] = {}
    for stack in stacks:
        for job_file in stack.job_files:
            job = job_file.stem
            resource = f"batch_job.{job}"
            try:
                doc: Any = json.loads(job_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                report.add_parsing_error(f"{job_file}: {exc}")
                continue
            violations = check_job(doc, stack.limits, env_name=stack.facts.env or stack.name)
            violations += check_images(doc)
            for rule_id in RULES:
                mine = [f"{v.path}: {v.message}" for v in violations if v.rule_id == rule_id]
                record = _record(rule_id, bool(mine), mine, job_file, resource)
                report.add_record(record)
                located[id(record)] = Located(stack.name, [job, f"{stack.name}/{job}", resource])
    return report, located


def apply_suppressions(report: Report, located: dict[int, Located], matcher: Matcher) -> None:
    """Move matched failures to skipped, with the registry's reason as the comment."""
    from checkov.common.models.enums import CheckResult

    kept = []
    for record in report.failed_checks:
        where = located.get(id(record))
        entry = matcher.match(record.check_id, where.names if where else [record.resource])
        if entry is None:
            kept.append(record)
            continue
        record.check_result = {"result": CheckResult.SKIPPED, "suppress_comment": entry.reason}
        report.skipped_checks.append(record)
    report.failed_checks = kept
