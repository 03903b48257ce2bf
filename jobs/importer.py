"""Import Batch job JSON into a `JobSpec`, exactly or not at all.

Four steps, each refusing with a `JobSpecError` that names the JSON path:
1. parse the text (malformed JSON -> line and column);
2. walk it against the Batch `Job` descriptor and the paths JobSpec supports (an unknown or
   unsupported field -> its path);
3. read the canonical form (`MessageToDict` of the parsed proto) into JobSpec fields
   (validation errors -> the JSON path of the field);
4. render the spec back and compare canonical forms (any difference -> its path), then the
   protos themselves. So nothing is ever dropped silently.

Imports google-cloud-batch: keep it off the submit path (JobSpec imports this lazily).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from google.cloud import batch_v1
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from pydantic import ValidationError

from jobs.errors import JobSpecError
from jobs.spec import PREEMPTION_EXIT_CODE, STORAGE_VARIABLES, JobSpec

# Every JSON path JobSpec models ("[]" stands for a list element).
TG = "taskGroups[]"
TS = f"{TG}.taskSpec"
RUN = f"{TS}.runnables[]"
INST = "allocationPolicy.instances[]"
POL = f"{INST}.policy"
NIC = "allocationPolicy.network.networkInterfaces[]"
SUPPORTED: frozenset[str] = frozenset(
    [
        TG, TS, RUN,
        f"{RUN}.container", f"{RUN}.container.imageUri", f"{RUN}.container.entrypoint",
        f"{RUN}.container.commands", f"{RUN}.script", f"{RUN}.script.text",
        f"{TS}.computeResource", f"{TS}.computeResource.cpuMilli",
        f"{TS}.computeResource.memoryMib",
        f"{TS}.maxRunDuration", f"{TS}.maxRetryCount",
        f"{TS}.lifecyclePolicies[]", f"{TS}.lifecyclePolicies[].action",
        f"{TS}.lifecyclePolicies[].actionCondition",
        f"{TS}.lifecyclePolicies[].actionCondition.exitCodes",
        f"{TS}.environment", f"{TS}.environment.variables", f"{TS}.environment.secretVariables",
        f"{TS}.volumes[]", f"{TS}.volumes[].gcs", f"{TS}.volumes[].gcs.remotePath",
        f"{TS}.volumes[].mountPath",
        f"{TG}.taskCount", f"{TG}.parallelism", f"{TG}.schedulingPolicy",
        f"{TG}.taskEnvironments[]", f"{TG}.taskEnvironments[].variables",
        f"{TG}.taskCountPerNode",
        "allocationPolicy", INST, POL, f"{INST}.installGpuDrivers",
        f"{POL}.machineType", f"{POL}.provisioningModel", f"{POL}.accelerators[]",
        f"{POL}.accelerators[].type", f"{POL}.accelerators[].count",
        f"{POL}.accelerators[].driverVersion", f"{POL}.bootDisk", f"{POL}.bootDisk.image",
        f"{POL}.bootDisk.sizeGb", f"{POL}.bootDisk.type",
        "allocationPolicy.location", "allocationPolicy.location.allowedLocations",
        "allocationPolicy.serviceAccount", "allocationPolicy.serviceAccount.email",
        "allocationPolicy.network", NIC, f"{NIC}.network", f"{NIC}.subnetwork",
        f"{NIC}.noExternalIpAddress",
        "labels", "logsPolicy", "logsPolicy.destination",
        "notifications[]", "notifications[].pubsubTopic", "notifications[].message",
        "notifications[].message.type", "notifications[].message.newJobState",
        "notifications[].message.newTaskState",
    ]
)  # fmt: skip
# Lists JobSpec models with one element only.
SINGLE: frozenset[str] = frozenset(
    [TG, RUN, f"{TS}.lifecyclePolicies[]", INST, f"{POL}.accelerators[]", NIC]
)
OUTPUT_ONLY = frozenset(["name", "uid", "status", "createTime", "updateTime"])
WHY: dict[str, str] = {
    "instanceTemplate": "an instance template hides the machine shape from validation; "
    "declare machine_type and gpus instead",
    "encryptedVariables": "use secrets (Secret Manager secretVariables) instead",
    "barrier": "multi-runnable jobs are not modelled",
    "logsPath": "only Cloud Logging is modelled",
}

# JobSpec field -> the JSON path it renders to (for validation messages).
FIELD_PATHS: dict[str, str] = {
    "image": "taskGroups[0].taskSpec.runnables[0].container.imageUri",
    "entrypoint": "taskGroups[0].taskSpec.runnables[0].container.entrypoint",
    "commands": "taskGroups[0].taskSpec.runnables[0].container.commands",
    "script": "taskGroups[0].taskSpec.runnables[0].script.text",
    "machine_type": "allocationPolicy.instances[0].policy.machineType",
    "gpus": "allocationPolicy.instances[0].policy.accelerators[0]",
    "cpu_milli": "taskGroups[0].taskSpec.computeResource.cpuMilli",
    "memory_mib": "taskGroups[0].taskSpec.computeResource.memoryMib",
    "boot_disk_gb": "allocationPolicy.instances[0].policy.bootDisk.sizeGb",
    "boot_disk_image": "allocationPolicy.instances[0].policy.bootDisk.image",
    "boot_disk_type": "allocationPolicy.instances[0].policy.bootDisk.type",
    "provisioning": "allocationPolicy.instances[0].policy.provisioningModel",
    "region": "allocationPolicy.location.allowedLocations",
    "zones": "allocationPolicy.location.allowedLocations",
    "network": "allocationPolicy.network.networkInterfaces[0].network",
    "subnetwork": "allocationPolicy.network.networkInterfaces[0].subnetwork",
    "max_retry_count": "taskGroups[0].taskSpec.maxRetryCount",
    "retry_on_preemption": "taskGroups[0].taskSpec.lifecyclePolicies",
    "retry_exit_codes": "taskGroups[0].taskSpec.lifecyclePolicies",
    "max_run_duration_s": "taskGroups[0].taskSpec.maxRunDuration",
    "task_count": "taskGroups[0].taskCount",
    "parallelism": "taskGroups[0].parallelism",
    "tasks_per_node": "taskGroups[0].taskCountPerNode",
    "scheduling_policy": "taskGroups[0].schedulingPolicy",
    "task_environments": "taskGroups[0].taskEnvironments",
    "env": "taskGroups[0].taskSpec.environment.variables",
    "secrets": "taskGroups[0].taskSpec.environment.secretVariables",
    "volumes": "taskGroups[0].taskSpec.volumes",
    "notifications": "notifications",
    "labels": "labels",
    "service_account_email": "allocationPolicy.serviceAccount.email",
    **{
        field: f"taskGroups[0].taskSpec.environment.variables.{var}"
        for field, var in STORAGE_VARIABLES.items()
    },
}
_VARS = "taskGroups[0].taskSpec.environment.variables"


def spec_from_batch_json(text: str, *, name: str = "imported") -> JobSpec:
    """The JobSpec that renders exactly `text`, or a JobSpecError naming the first JSON path
    it cannot model."""
    raw = _load(text)
    _check_supported(raw, batch_v1.Job.pb().DESCRIPTOR, "", "")
    original = canonical_json(text)
    spec = _build(original, name)
    rendered_text = json.dumps(spec.to_batch_json())
    rendered = canonical_json(rendered_text)
    for path, why in _diff(original, rendered, ""):
        raise JobSpecError(why, path)
    if batch_v1.Job.from_json(text) != batch_v1.Job.from_json(rendered_text):  # belt and braces
        raise JobSpecError("the rendered job differs from the input", "job")  # pragma: no cover
    return spec


def canonical_json(text: str) -> dict[str, Any]:
    """The canonical camelCase dict of a Batch job JSON text (int64 as strings, no defaults)."""
    try:
        job = batch_v1.Job.from_json(text)
    except json_format.ParseError as exc:
        raise _parse_error(exc) from None
    out: dict[str, Any] = json_format.MessageToDict(batch_v1.Job.pb(job))
    return out


# ---- step 1 and 2 ----


def _load(text: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise JobSpecError(f"duplicate key {key!r}", "json")
            seen[key] = value
        return seen

    try:
        raw = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise JobSpecError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", "json"
        ) from None
    if not isinstance(raw, dict):
        raise JobSpecError(f"a Batch job is a JSON object; got {type(raw).__name__}", "json")
    return raw


def _check_supported(value: Any, desc: Descriptor, path: str, pattern: str) -> None:
    """Refuse the first key that is not a Batch field or not modelled by JobSpec."""
    if not isinstance(value, dict):
        return  # wrong value types are reported by the proto parser
    for key, item in value.items():
        field = desc.fields_by_camelcase_name.get(key) or desc.fields_by_name.get(key)
        here = f"{path}.{key}" if path else key
        if field is None:
            raise JobSpecError(f"not a field of Batch {desc.name}", here)
        pat = f"{pattern}.{field.json_name}" if pattern else field.json_name
        is_list = field.is_repeated and field.message_type is not None and not _is_map(field)
        if is_list:
            pat += "[]"
        if pat not in SUPPORTED:
            if not pattern and field.json_name in OUTPUT_ONLY:
                raise JobSpecError("output-only field; remove it before importing", here)
            why = WHY.get(field.json_name, "JobSpec does not model this Batch field (by design)")
            raise JobSpecError(f"unsupported: {why}", here)
        if field.message_type is None or _is_map(field) or _is_leaf(field):
            continue
        if is_list:
            for i, element in enumerate(item if isinstance(item, list) else []):
                if i > 0 and pat in SINGLE:
                    raise JobSpecError(
                        f"unsupported: JobSpec models one {key} element", here + f"[{i}]"
                    )
                _check_supported(element, field.message_type, f"{here}[{i}]", pat)
        else:
            _check_supported(item, field.message_type, here, pat)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_leaf(field: FieldDescriptor) -> bool:
    # Well-known types (Duration) are strings in JSON.
    return field.message_type is not None and field.message_type.full_name.startswith(
        "google.protobuf."
    )


def _parse_error(exc: json_format.ParseError) -> JobSpecError:
    msg = str(exc)
    fields = re.findall(r"Failed to parse (\w+) field: ", msg)
    tail = re.split(r"Failed to parse \w+ field: ", msg)[-1].strip().rstrip(".")
    return JobSpecError(f"invalid value: {tail}", ".".join(fields) or "json")


# ---- step 3 ----


def _build(job: dict[str, Any], name: str) -> JobSpec:
    kwargs: dict[str, Any] = {"name": name}
    groups = job.get("taskGroups") or []
    if not groups:
        raise JobSpecError("a job needs one task group", "taskGroups")
    _read_task_group(groups[0], kwargs)
    _read_allocation(job.get("allocationPolicy", {}), kwargs)
    if "labels" in job:
        kwargs["labels"] = job["labels"]
    destination = job.get("logsPolicy", {}).get("destination")
    if destination not in (None, "CLOUD_LOGGING"):
        raise JobSpecError(
            f"only CLOUD_LOGGING is modelled; got {destination}", "logsPolicy.destination"
        )
    kwargs["cloud_logging"] = destination == "CLOUD_LOGGING"
    kwargs["notifications"] = [
        {
            "topic": n.get("pubsubTopic", ""),
            "type": n.get("message", {}).get("type"),
            "job_state": n.get("message", {}).get("newJobState"),
            "task_state": n.get("message", {}).get("newTaskState"),
        }
        for n in job.get("notifications", [])
    ]
    _fix_retry_default(kwargs)
    try:
        return JobSpec.model_validate(kwargs)
    except ValidationError as exc:
        err = JobSpecError.from_validation_error(exc)
        top = (err.field or "").split(".", 1)[0]
        raise JobSpecError(
            f"{err.message} (JobSpec.{err.field})", FIELD_PATHS.get(top, err.field)
        ) from None


def _read_task_group(tg: dict[str, Any], kw: dict[str, Any]) -> None:
    ts = tg.get("taskSpec", {})
    runnables = ts.get("runnables") or []
    if not runnables:
        raise JobSpecError("a job needs one runnable", "taskGroups[0].taskSpec.runnables")
    run = runnables[0]
    if "script" in run:
        kw["script"] = run["script"].get("text", "")
    else:
        c = run.get("container", {})
        kw["image"] = c.get("imageUri")
        kw["entrypoint"] = c.get("entrypoint")
        kw["commands"] = c.get("commands", [])
    res = ts.get("computeResource", {})
    kw["cpu_milli"] = _int(res.get("cpuMilli"))
    kw["memory_mib"] = _int(res.get("memoryMib"))
    if "maxRunDuration" in ts:
        kw["max_run_duration_s"] = _seconds(ts["maxRunDuration"])
    kw["max_retry_count"] = ts.get("maxRetryCount")
    codes: list[int] = []
    for policy in ts.get("lifecyclePolicies", []):
        if policy.get("action") != "RETRY_TASK":
            raise JobSpecError(
                f"only RETRY_TASK lifecycle policies are modelled; got {policy.get('action')}",
                "taskGroups[0].taskSpec.lifecyclePolicies[0].action",
            )
        codes = list(policy.get("actionCondition", {}).get("exitCodes", []))
    if PREEMPTION_EXIT_CODE in codes:
        kw["retry_on_preemption"] = True
    kw["retry_exit_codes"] = [c for c in codes if c != PREEMPTION_EXIT_CODE]
    environment = ts.get("environment", {})
    variables = dict(environment.get("variables", {}))
    for field, var in STORAGE_VARIABLES.items():
        if var in variables:
            kw[field] = _storage_value(field, variables.pop(var), f"{_VARS}.{var}")
    kw["env"] = variables
    kw["secrets"] = environment.get("secretVariables", {})
    kw["volumes"] = [
        {
            "remote_path": v.get("gcs", {}).get("remotePath", ""),
            "mount_path": v.get("mountPath", ""),
        }
        for v in ts.get("volumes", [])
    ]
    kw["task_count"] = _int(tg.get("taskCount"))
    kw["parallelism"] = _int(tg.get("parallelism"))
    kw["tasks_per_node"] = _int(tg.get("taskCountPerNode"))
    kw["scheduling_policy"] = tg.get("schedulingPolicy")
    kw["task_environments"] = [e.get("variables", {}) for e in tg.get("taskEnvironments", [])]


def _read_allocation(alloc: dict[str, Any], kw: dict[str, Any]) -> None:
    instances = alloc.get("instances") or [{}]
    policy = instances[0].get("policy", {})
    kw["machine_type"] = policy.get("machineType")
    model = policy.get("provisioningModel")
    if model not in (None, "STANDARD", "SPOT"):
        raise JobSpecError(
            f"unsupported: JobSpec models STANDARD and SPOT; got {model}",
            "allocationPolicy.instances[0].policy.provisioningModel",
        )
    kw["provisioning"] = model.lower() if model else None
    accelerators = policy.get("accelerators", [])
    if accelerators:
        acc = accelerators[0]
        kw["gpus"] = {
            "type": acc.get("type", ""),
            "count": _int(acc.get("count")) or 0,
            "driver_version": acc.get("driverVersion"),
        }
    disk = policy.get("bootDisk", {})
    kw["boot_disk_gb"] = _int(disk.get("sizeGb"))
    kw["boot_disk_image"] = disk.get("image")
    kw["boot_disk_type"] = disk.get("type")
    zones: list[str] = []
    for i, loc in enumerate(alloc.get("location", {}).get("allowedLocations", [])):
        if loc.startswith("regions/") and i == 0:
            kw["region"] = loc.removeprefix("regions/")
        elif loc.startswith("zones/"):
            zones.append(loc.removeprefix("zones/"))
        else:
            raise JobSpecError(
                f"unsupported location {loc!r}: JobSpec models one leading 'regions/<r>' and "
                "'zones/<z>' entries",
                f"allocationPolicy.location.allowedLocations[{i}]",
            )
    kw["zones"] = zones
    kw["service_account_email"] = alloc.get("serviceAccount", {}).get("email")
    nics = alloc.get("network", {}).get("networkInterfaces", [])
    if nics:
        kw["network"] = nics[0].get("network")
        kw["subnetwork"] = nics[0].get("subnetwork")
        kw["no_external_ip_address"] = bool(nics[0].get("noExternalIpAddress", False))


def _fix_retry_default(kw: dict[str, Any]) -> None:
    # What the input leaves out (no preemption policy, no retries) is stated explicitly when
    # the model would otherwise fill it in, so validation names the rule instead of a diff.
    spot = kw.get("provisioning") == "spot"
    if spot and not kw.get("retry_on_preemption"):
        kw["retry_on_preemption"] = False
    retries_implied = spot or kw.get("retry_on_preemption") or kw.get("retry_exit_codes")
    if kw.get("max_retry_count") is None and retries_implied:
        kw["max_retry_count"] = 0


def _int(value: Any) -> int | None:
    return None if value is None else int(value)  # canonical int64 strings


def _seconds(duration: str) -> int:
    if not re.fullmatch(r"\d+s", duration):
        raise JobSpecError(
            f"whole seconds only; got {duration!r}", "taskGroups[0].taskSpec.maxRunDuration"
        )
    return int(duration[:-1])


def _storage_value(field: str, value: str, path: str) -> Any:
    try:
        if field in ("files_per_task", "file_timeout_s", "batch_size"):
            return int(value)
        if field == "failure_budget":
            return float(value)
    except ValueError:
        raise JobSpecError(f"{field} must be a number; got {value!r}", path) from None
    return value


# ---- step 4 ----


def _diff(a: Any, b: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, why) of every difference between the input `a` and the rendering `b`."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            here = f"{path}.{key}" if path else key
            if key not in b:
                yield here, f"JobSpec cannot render this value ({_short(a[key])}) back; refused"
            elif key not in a:
                yield here, f"JobSpec always renders {_short(b[key])} here; the input has none"
            else:
                yield from _diff(a[key], b[key], here)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                yield f"{path}[{i}]", f"the input has {len(a)} elements; JobSpec renders {len(b)}"
                return
            yield from _diff(a[i], b[i], f"{path}[{i}]")
    elif a != b:
        yield path, f"the input has {_short(a)}; JobSpec renders {_short(b)}"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
