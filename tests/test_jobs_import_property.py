"""Property: every valid Batch job imports, and renders back to an equal proto.

The jobs are drawn from the Batch proto descriptors themselves (every field of every message
the `Job` reaches, oneofs respected, output-only fields left out), so a field the importer
forgets is found by the property rather than by a reviewer. A few leaves get values from the
set Batch accepts (machine and accelerator pairs, image URIs, a main runnable) because Batch
refuses the rest at create time, which the importer must refuse too (tested elsewhere).
"""

from __future__ import annotations

import json
import string
from typing import Any

from google.cloud import batch_v1
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import to_batch_json
from jobs.batch_proto import OUTPUT_ONLY, OUTPUT_ONLY_TASK_GROUP, problems, same_job
from jobs.import_read import main_index
from jobs.importer import import_job

_WORD = st.text(string.ascii_lowercase + string.digits + "-_./", min_size=1, max_size=8)
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
}  # fmt: skip

# Leaves whose values Batch constrains (path with "[]" for list elements).
LEAVES: dict[str, st.SearchStrategy[Any]] = {
    "taskGroups[].taskSpec.runnables[].container.imageUri": st.from_regex(
        r"gcr\.io/[a-z][a-z0-9-]{0,8}/[a-z][a-z0-9._-]{0,8}(:[a-z0-9.]{1,5})?", fullmatch=True
    ),
    "taskGroups[].taskSpec.runnables[].script.text": st.text(
        string.ascii_letters + " ;$_{}", min_size=1, max_size=20
    ).filter(str.strip),
    "taskGroups[].taskSpec.maxRetryCount": st.integers(0, 10),
    "taskGroups[].taskSpec.lifecyclePolicies[].actionCondition.exitCodes": st.lists(
        st.sampled_from([1, 2, 3, 42, 50001, 50002, 50003, 50004, 50005, 50006]), max_size=4
    ),
    "taskGroups[].taskSpec.computeResource.cpuMilli": st.integers(1, 2000),
    "taskGroups[].taskSpec.computeResource.memoryMib": st.integers(1, 4096),
    "allocationPolicy.location.allowedLocations": st.lists(
        st.sampled_from(
            [
                "regions/us-central1",
                "zones/us-central1-a",
                "zones/us-central1-b",
                "regions/europe-west4",
                "zones/europe-west4-a",
            ]
        ),
        max_size=3,
    ),
    "priority": st.integers(0, 99),
}
# Machine types and the accelerators Batch accepts with them (the rest is refused).
SHAPES: list[tuple[str | None, list[dict[str, Any]]]] = [
    (None, []),
    ("e2-standard-4", []),
    ("g2-standard-8", []),
    ("g2-standard-8", [{"type": "nvidia-l4", "count": "1"}]),
    ("n1-standard-4", [{"type": "nvidia-tesla-t4", "count": "2", "driverVersion": "535"}]),
    ("a2-highgpu-2g", []),
    ("n1-highmem-96", []),  # not in the catalog: typed anyway, with a guardrail warning
    ("e2-custom-4-8192", []),
]


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.enum_type is not None:
        return st.sampled_from([v.name for v in field.enum_type.values])
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in _INT_TYPES:
        return st.integers(0, 1000)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.integers(0, 100).map(float)
    return _WORD


def _field(field: FieldDescriptor, path: str, depth: int) -> st.SearchStrategy[Any]:
    if path in LEAVES:
        return LEAVES[path]
    msg = field.message_type
    if msg is not None and msg.GetOptions().map_entry:
        keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True)
        return st.dictionaries(keys, _scalar(msg.fields_by_name["value"]), max_size=3)
    one: st.SearchStrategy[Any]
    if msg is not None and msg.full_name == "google.protobuf.Duration":
        one = st.integers(1, 86400).map(lambda s: f"{s}s") | st.just("1.500s")
    elif msg is not None:
        one = _message(msg, path + ("[]" if field.is_repeated else ""), depth + 1)
    else:
        one = _scalar(field)
    if field.is_repeated:
        min_size = 1 if path in ("taskGroups", "taskGroups[].taskSpec.runnables") else 0
        return st.lists(one, min_size=min_size, max_size=3 if msg is None else 2)
    return one


def _message(desc: Descriptor, path: str, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    if depth > 8:
        return st.just({})
    optional: dict[str, st.SearchStrategy[Any]] = {}
    required: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if (
            field.message_type is not None
            and field.message_type.full_name.startswith("google.protobuf.")
            and field.message_type.full_name != "google.protobuf.Duration"
        ):
            continue
        here = f"{path}.{field.json_name}" if path else field.json_name
        if path == "" and field.json_name in OUTPUT_ONLY:
            continue
        if path == "taskGroups[]" and field.json_name in OUTPUT_ONLY_TASK_GROUP:
            continue
        if here in ("taskGroups", "taskGroups[].taskSpec", "taskGroups[].taskSpec.runnables"):
            required[field.json_name] = _field(field, here, depth)
        else:
            optional[field.json_name] = _field(field, here, depth)
    return st.fixed_dictionaries(required, optional=optional).map(lambda d: _one_of(desc, d))


def _one_of(desc: Descriptor, value: dict[str, Any]) -> dict[str, Any]:
    """Keep one member of each oneof (Batch takes one)."""
    for oneof in desc.oneofs:
        members = [f.json_name for f in oneof.fields if f.json_name in value]
        for extra in members[1:]:
            del value[extra]
    return value


@st.composite
def batch_jobs(draw: st.DrawFn) -> dict[str, Any]:
    job: dict[str, Any] = draw(_message(batch_v1.Job.pb().DESCRIPTOR, "", 0))
    # Batch needs a runnable to run: make sure the first task group has a main one.
    runnables = job["taskGroups"][0]["taskSpec"]["runnables"]
    if main_index(runnables) is None:
        runnables.insert(draw(st.integers(0, len(runnables))), {"script": {"text": "echo main"}})
    machine, accelerators = draw(st.sampled_from(SHAPES))
    instances = job.setdefault("allocationPolicy", {}).get("instances") or [{}]
    for inst in instances:
        inst.pop("instanceTemplate", None)
        policy = inst.setdefault("policy", {})
        policy.pop("machineType", None)
        policy.pop("accelerators", None)
        if machine:
            policy["machineType"] = machine
        if accelerators:
            policy["accelerators"] = accelerators
    job["allocationPolicy"]["instances"] = instances
    return job


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(job=batch_jobs())
def test_every_valid_job_imports_and_renders_back_equal(job: dict[str, Any]) -> None:
    assert problems(job) == []  # the strategy draws valid Batch JSON only
    text = json.dumps(job)
    result = import_job(text, name="prop")
    rendered = to_batch_json(result.spec)
    assert same_job(rendered, job)
    # Exact, not only up to exit-code order: the importer keeps the order it was given.
    assert batch_v1.Job.from_json(json.dumps(rendered)) == batch_v1.Job.from_json(text)
