"""Import any Batch job JSON or YAML into a `JobSpec` that renders back to an equal proto.

1. read the text (JSON, or YAML as gcloud reads it; errors give line and column);
2. drop output-only fields with a note (Batch ignores them on create);
3. check it against the Batch `Job` proto, reporting every problem at once with its camelCase
   JSON path (`taskGroups[0].taskCount`);
4. read the canonical form into typed JobSpec fields, group by group. A group the model
   refuses for a reason Batch would not (a label pattern, an unusual variable name) stays
   untyped; a value Batch itself would reject at create time (an accelerator a built-in GPU
   machine does not carry, maxRetryCount over 10) is refused with its path;
5. everything not typed goes into `batch_overrides`: the difference between the canonical
   input and the typed rendering. The result is checked: the rendering equals the input.

Imports google-cloud-batch: keep it off the submit path (`jobs.from_batch_json` imports this
module lazily).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from pydantic import ValidationError

from jobs.batch_proto import OUTPUT_ONLY, OUTPUT_ONLY_TASK_GROUP, canonical, problems, same_job
from jobs.errors import JobSpecError
from jobs.import_read import FIELD_PATHS, read_groups
from jobs.job_text import load_job_text
from jobs.render import render_job
from jobs.spec import JobSpec

# Fields whose refusal means Batch itself would refuse the job at create time.
HARD_FIELDS = frozenset(["gpus", "cpu_milli", "memory_mib", "max_retry_count", "name"])
_MAX_ROUNDS = 12


@dataclass(frozen=True)
class ImportResult:
    """The imported spec, with what the import did that a reader should know."""

    spec: JobSpec
    notes: list[str] = field(default_factory=list)  # dropped fields, untyped groups


def spec_from_batch_json(text: str, *, name: str = "imported") -> JobSpec:
    """The JobSpec that renders to the same Batch job as `text` (JSON or YAML)."""
    return import_job(text, name=name).spec


def import_job(text: str, *, name: str = "imported") -> ImportResult:
    """Import `text`; JobSpecError (with every problem) only for input Batch would refuse."""
    raw = load_job_text(text)
    notes = _drop_output_only(raw)
    found = problems(raw)
    if found:
        raise JobSpecError.many(found)
    try:
        original = canonical(raw)
    except json_format.ParseError as exc:  # the walk above should have caught it
        raise JobSpecError(f"invalid Batch job: {' '.join(str(exc).split())}", "job") from None
    groups = read_groups(original)
    spec, untyped = _validate(name, groups)
    notes += [f"kept untyped in batch_overrides: {why}" for why in untyped]
    typed = render_job(spec)
    overrides = _difference(original, typed, "")
    if overrides:
        spec = spec.model_copy(update={"batch_overrides": overrides})
        paths = ", ".join(_leaf_paths(overrides, "", 8))
        notes.append(f"kept in batch_overrides (not typed, rendered back as is): {paths}")
    rendered = render_job(spec)
    if not same_job(rendered, original):  # pragma: no cover - a bug in the readers
        raise JobSpecError("internal: the rendered job differs from the input; please report")
    return ImportResult(spec, notes)


def _drop_output_only(raw: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    for key in OUTPUT_ONLY:
        if key in raw:
            del raw[key]
            notes.append(f"dropped output-only field {key} (Batch ignores it on create)")
    groups = raw.get("taskGroups")
    if isinstance(groups, list):
        for i, group in enumerate(groups):
            if isinstance(group, dict):
                for key in OUTPUT_ONLY_TASK_GROUP:
                    if key in group:
                        del group[key]
                        notes.append(f"dropped output-only field taskGroups[{i}].{key}")
    return notes


def _validate(name: str, groups: dict[str, dict[str, Any]]) -> tuple[JobSpec, list[str]]:
    """The spec from every group the model accepts; groups it refuses softly are left out."""
    active = dict(groups)
    untyped: list[str] = []
    for _ in range(_MAX_ROUNDS):
        kwargs: dict[str, Any] = {"name": name}
        for values in active.values():
            kwargs.update(values)
        try:
            return JobSpec.model_validate(kwargs), untyped
        except ValidationError as exc:
            err = JobSpecError.from_validation_error(exc)
        hard: list[tuple[str | None, str]] = []
        dropped: set[str] = set()
        for spec_field, message in err.problems:
            top = (spec_field or "").split(".", 1)[0]
            owner = next((g for g, vals in groups.items() if top in vals), None)
            if top in HARD_FIELDS or owner is None or owner == "main" or _is_hard(message):
                path = FIELD_PATHS.get(top, spec_field or "job")
                hard.append((path, f"{message} (JobSpec.{spec_field})"))
            elif owner not in dropped:
                dropped.add(owner)
                untyped.append(f"{FIELD_PATHS.get(top, top)} ({message})")
                active.pop(owner, None)
        if hard:
            raise JobSpecError.many(hard)
    raise JobSpecError("could not type this job; please report")  # pragma: no cover


def _is_hard(message: str) -> bool:
    # Accelerator counts and CPU shapes a machine cannot carry: Batch refuses those too.
    return bool(
        re.search(r"carries|needs nvidia|attaches to|comes in counts|supports at most", message)
    )


def _difference(original: Any, typed: Any, path: str) -> Any:
    """What must be laid over `typed` (with jobs.batch_proto.merge) to get `original`."""
    if isinstance(original, dict) and isinstance(typed, dict):
        out: dict[str, Any] = {}
        for key in typed:
            if key not in original:
                raise JobSpecError(
                    f"internal: the typed rendering adds {key}; please report", _join(path, key)
                )
        for key, value in original.items():
            if key not in typed:
                out[key] = value
            else:
                sub = _difference(value, typed[key], _join(path, key))
                if sub not in ({}, None):
                    out[key] = sub
        return out
    if isinstance(original, list) and isinstance(typed, list):
        if not all(isinstance(x, dict) for x in original + typed):
            return None if original == typed else list(original)
        if len(typed) > len(original):
            raise JobSpecError("internal: the typed rendering has more elements", path)
        pairs = enumerate(zip(original, typed, strict=False))
        items = [_difference(o, t, f"{path}[{i}]") for i, (o, t) in pairs]
        items += original[len(typed) :]  # elements the typed rendering lacks, even empty ones
        same = len(original) == len(typed) and all(i == {} for i in items)
        return None if same else items
    return None if original == typed else original


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _leaf_paths(value: Any, path: str, levels: int) -> list[str]:
    if levels == 0 or not isinstance(value, dict | list):
        return [path]
    items: list[tuple[str, Any]] = (
        [(_join(path, k), v) for k, v in value.items()]
        if isinstance(value, dict)
        else [(f"{path}[{i}]", v) for i, v in enumerate(value) if v != {}]
    )
    out: list[str] = []
    for sub, v in items:
        out += _leaf_paths(v, sub, levels - 1)
    return out
