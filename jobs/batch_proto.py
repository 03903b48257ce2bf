"""The Batch `Job` proto as the judge of job JSON: validation with every problem at once,
the canonical form, and the merge of a passthrough part into a rendered job.

Paths are camelCase JSON paths with list indexes (`taskGroups[0].taskCount`), the names the
Batch REST reference uses (https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs).
Imports google-cloud-batch: kept off the submit path unless a job carries `batch_overrides`.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from google.cloud import batch_v1
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

# Output-only fields of a Job (the REST reference and the client's docstrings say "Output
# only"; tests/test_jobs_batch_proto.py checks the docstrings). Batch ignores them on create.
OUTPUT_ONLY: tuple[str, ...] = ("name", "uid", "status", "createTime", "updateTime")
OUTPUT_ONLY_TASK_GROUP: tuple[str, ...] = ("name",)
# Batch ignores the order of these lists (a set of exit codes), so comparisons sort them.
UNORDERED_LISTS: tuple[str, ...] = ("exitCodes",)
MAX_DEPTH = 40  # a Batch job nests about 8 levels; deeper input is not a job

_INT_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}  # fmt: skip
_FLOAT_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}
_DURATION_RE = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def job_descriptor() -> Descriptor:
    desc: Descriptor = batch_v1.Job.pb().DESCRIPTOR
    return desc


def problems(value: Any, desc: Descriptor | None = None, path: str = "") -> list[tuple[str, str]]:
    """Every (path, problem) of `value` read as JSON of message `desc` (default: Job)."""
    return list(_walk(value, desc or job_descriptor(), path))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(value: Any, desc: Descriptor, path: str) -> Iterator[tuple[str, str]]:
    if not isinstance(value, Mapping):
        yield path or "job", f"must be an object ({desc.name}); got {_kind(value)}"
        return
    oneofs: dict[str, list[str]] = {}
    for key, item in value.items():
        here = _join(path, str(key))
        field = desc.fields_by_camelcase_name.get(key) or desc.fields_by_name.get(key)
        if field is None:
            near = difflib.get_close_matches(
                str(key), [f.json_name for f in desc.fields], n=1, cutoff=0.6
            )
            hint = f"; did you mean {near[0]!r}?" if near else ""
            yield here, f"not a field of Batch {desc.name}{hint}"
            continue
        if field.containing_oneof is not None and item is not None:
            oneofs.setdefault(field.containing_oneof.name, []).append(field.json_name)
        yield from _field(item, field, here)
    for group, names in oneofs.items():
        if len(names) > 1:
            yield path or "job", f"sets {' and '.join(names)}; Batch takes one ({group})"


def _field(item: Any, field: FieldDescriptor, here: str) -> Iterator[tuple[str, str]]:
    if item is None:
        return  # JSON null means "unset" for the proto parser
    if _is_map(field):
        if not isinstance(item, Mapping):
            yield here, f"must be an object of {_type_name(field)}; got {_kind(item)}"
            return
        value_field = field.message_type.fields_by_name["value"]
        for k, v in item.items():
            yield from _scalar_or_message(v, value_field, f"{here}.{k}")
    elif field.is_repeated:
        if not isinstance(item, list):
            yield here, f"must be a list; got {_kind(item)}"
            return
        for i, element in enumerate(item):
            yield from _scalar_or_message(element, field, f"{here}[{i}]")
    else:
        yield from _scalar_or_message(item, field, here)


def _scalar_or_message(item: Any, field: FieldDescriptor, here: str) -> Iterator[tuple[str, str]]:
    if field.message_type is not None:
        full = field.message_type.full_name
        if full == "google.protobuf.Duration":
            if not (isinstance(item, str) and _DURATION_RE.match(item)):
                yield here, f'must be a duration like "3600s"; got {_short(item)}'
        elif full == "google.protobuf.Timestamp":
            if not (isinstance(item, str) and _TIMESTAMP_RE.match(item)):
                yield here, f"must be an RFC 3339 timestamp; got {_short(item)}"
        elif not full.startswith("google.protobuf."):
            yield from _walk(item, field.message_type, here)
        return
    if field.enum_type is not None:
        names = [v.name for v in field.enum_type.values]
        if isinstance(item, bool) or not (
            (isinstance(item, str) and item in names)
            or (isinstance(item, int) and item in field.enum_type.values_by_number)
        ):
            yield here, f"must be one of {', '.join(names)}; got {_short(item)}"
    elif field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(item, bool):
            yield here, f"must be true or false; got {_short(item)}"
    elif field.type in _INT_TYPES:
        ok = (isinstance(item, int) and not isinstance(item, bool)) or (
            isinstance(item, str) and re.fullmatch(r"-?\d+", item)
        )
        if not ok:
            yield here, f"must be an integer; got {_short(item)}"
    elif field.type in _FLOAT_TYPES:
        if isinstance(item, bool) or not isinstance(item, int | float | str):
            yield here, f"must be a number; got {_short(item)}"
    elif not isinstance(item, str):
        yield here, f"must be a string; got {_short(item)}"


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _type_name(field: FieldDescriptor) -> str:
    return field.message_type.name if field.message_type is not None else "values"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse(job: Mapping[str, Any]) -> Any:
    """The `batch_v1.Job` protobuf message of a job dict (raises json_format.ParseError)."""
    msg = batch_v1.Job.pb()()
    json_format.ParseDict(dict(job), msg)
    return msg


def canonical(job: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical camelCase dict (int64 as strings, defaults and empty values left out)."""
    out: dict[str, Any] = json_format.MessageToDict(parse(job))
    return out


def comparable(job: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical form with lists Batch treats as sets sorted: what round trips compare."""
    return _sort_unordered(canonical(job))


def _sort_unordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: sorted(v) if k in UNORDERED_LISTS and isinstance(v, list) else _sort_unordered(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_sort_unordered(v) for v in value]
    return value


def same_job(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal `batch_v1.Job` protos, where exit-code lists compare regardless of order."""
    return comparable(a) == comparable(b)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it: objects merge by key, lists element by element (by
    index, extra elements appended), scalars from `extra` win. Neither input is modified."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        out[key] = _merge_value(out[key], value) if key in out else copy.deepcopy(value)
    return out


def _merge_value(a: Any, b: Any) -> Any:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return merge(a, b)
    if isinstance(a, list) and isinstance(b, list):
        merged = [_merge_value(x, y) for x, y in zip(a, b, strict=False)]
        longer = a if len(a) > len(b) else b
        return merged + copy.deepcopy(longer[len(merged) :])
    return copy.deepcopy(b)


def depth(value: Any) -> int:
    """Nesting depth of parsed JSON, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, Mapping):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest
