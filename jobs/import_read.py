"""Read the canonical Batch job dict into JobSpec keyword groups (one step of the import).

Each group is a set of JobSpec fields read together; the importer drops a group the model
refuses and leaves its JSON to `batch_overrides`. A reader types only what it can render back
exactly (a whole-seconds duration, a RETRY_TASK policy with exit codes); anything else stays
in the JSON and so in the passthrough.
"""

from __future__ import annotations

import re
from typing import Any

from jobs.errors import JobSpecError
from jobs.spec import PREEMPTION_EXIT_CODE, STORAGE_VARIABLES

_TG = "taskGroups[0]"
_TS = f"{_TG}.taskSpec"
_POL = "allocationPolicy.instances[0].policy"
_NIC = "allocationPolicy.network.networkInterfaces[0]"
_VARS = f"{_TS}.environment.variables"

# JobSpec field -> the JSON path it renders to (for messages).
FIELD_PATHS: dict[str, str] = {
    "image": f"{_TS}.runnables",
    "script": f"{_TS}.runnables",
    "script_path": f"{_TS}.runnables",
    "setup": f"{_TS}.runnables",
    "teardown": f"{_TS}.runnables",
    "machine_type": f"{_POL}.machineType",
    "gpus": f"{_POL}.accelerators[0]",
    "install_gpu_drivers": "allocationPolicy.instances[0].installGpuDrivers",
    "cpu_milli": f"{_TS}.computeResource.cpuMilli",
    "memory_mib": f"{_TS}.computeResource.memoryMib",
    "boot_disk_gb": f"{_POL}.bootDisk.sizeGb",
    "boot_disk_image": f"{_POL}.bootDisk.image",
    "boot_disk_type": f"{_POL}.bootDisk.type",
    "provisioning": f"{_POL}.provisioningModel",
    "reservation": f"{_POL}.reservation",
    "region": "allocationPolicy.location.allowedLocations",
    "zones": "allocationPolicy.location.allowedLocations",
    "network": f"{_NIC}.network",
    "subnetwork": f"{_NIC}.subnetwork",
    "no_external_ip_address": f"{_NIC}.noExternalIpAddress",
    "max_retry_count": f"{_TS}.maxRetryCount",
    "retry_on_preemption": f"{_TS}.lifecyclePolicies[0]",
    "retry_exit_codes": f"{_TS}.lifecyclePolicies[0].actionCondition.exitCodes",
    "max_run_duration_s": f"{_TS}.maxRunDuration",
    "task_count": f"{_TG}.taskCount",
    "parallelism": f"{_TG}.parallelism",
    "tasks_per_node": f"{_TG}.taskCountPerNode",
    "scheduling_policy": f"{_TG}.schedulingPolicy",
    "task_environments": f"{_TG}.taskEnvironments",
    "env": _VARS,
    "secrets": f"{_TS}.environment.secretVariables",
    "volumes": f"{_TS}.volumes",
    "notifications": "notifications",
    "labels": "labels",
    "service_account_email": "allocationPolicy.serviceAccount.email",
    "cloud_logging": "logsPolicy.destination",
    **{f: f"{_VARS}.{var}" for f, var in STORAGE_VARIABLES.items()},
}
_WHOLE_SECONDS = re.compile(r"^(\d+)s$")


def read_groups(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """JobSpec keyword groups read from a canonical job dict (`jobs.batch_proto.canonical`)."""
    groups: dict[str, dict[str, Any]] = {}
    task_groups = job.get("taskGroups") or []
    if not task_groups:
        raise JobSpecError(
            "a job needs a task group with a runnable (Batch refuses none)", "taskGroups"
        )
    _task_group(task_groups[0], groups)
    _allocation(job.get("allocationPolicy", {}), groups)
    if "labels" in job:
        groups["labels"] = {"labels": job["labels"]}
    if job.get("logsPolicy", {}).get("destination") == "CLOUD_LOGGING":
        groups["cloud_logging"] = {"cloud_logging": True}
    if "notifications" in job:
        groups["notifications"] = {
            "notifications": [_notification(n) for n in job["notifications"]]
        }
    return {k: v for k, v in groups.items() if v}


def _notification(n: dict[str, Any]) -> dict[str, Any]:
    message = n.get("message", {})
    return {
        "topic": n.get("pubsubTopic", ""),
        "type": message.get("type"),
        "job_state": message.get("newJobState"),
        "task_state": message.get("newTaskState"),
    }


def _task_group(tg: dict[str, Any], groups: dict[str, dict[str, Any]]) -> None:
    ts = tg.get("taskSpec", {})
    _runnables(ts.get("runnables") or [], groups)
    for key, spec_field in (
        ("taskCount", "task_count"),
        ("parallelism", "parallelism"),
        ("taskCountPerNode", "tasks_per_node"),
    ):
        if key in tg:
            groups[spec_field] = {spec_field: int(tg[key])}
    if "schedulingPolicy" in tg:
        groups["scheduling_policy"] = {"scheduling_policy": tg["schedulingPolicy"]}
    if "taskEnvironments" in tg:
        envs = [e.get("variables", {}) for e in tg["taskEnvironments"]]
        groups["task_environments"] = {"task_environments": envs}
    resources = ts.get("computeResource", {})
    if "cpuMilli" in resources:
        groups["cpu_milli"] = {"cpu_milli": int(resources["cpuMilli"])}
    if "memoryMib" in resources:
        groups["memory_mib"] = {"memory_mib": int(resources["memoryMib"])}
    seconds = _seconds(ts.get("maxRunDuration"))
    if seconds is not None:
        groups["max_run_duration_s"] = {"max_run_duration_s": seconds}
    _retries(ts, groups)
    environment = ts.get("environment", {})
    variables = dict(environment.get("variables", {}))
    for spec_field, var in STORAGE_VARIABLES.items():
        if var in variables:
            value = _storage_value(spec_field, variables[var])
            if value is not None:
                del variables[var]
                groups[spec_field] = {spec_field: value}
    if variables:
        groups["env"] = {"env": variables}
    if "secretVariables" in environment:
        groups["secrets"] = {"secrets": environment["secretVariables"]}
    volumes = ts.get("volumes", [])
    if volumes and all(
        set(v) <= {"gcs", "mountPath", "mountOptions"} and "gcs" in v for v in volumes
    ):
        groups["volumes"] = {
            "volumes": [
                {
                    "remote_path": v["gcs"].get("remotePath", ""),
                    "mount_path": v.get("mountPath", ""),
                    "mount_options": v.get("mountOptions", []),
                }
                for v in volumes
            ]
        }


def main_index(runnables: list[dict[str, Any]]) -> int | None:
    """The main runnable: the first container (else the first script) that is not a barrier,
    a background runnable or an always-run cleanup step."""

    def plain(r: dict[str, Any]) -> bool:
        return not (r.get("background") or r.get("alwaysRun"))

    for kind in ("container", "script"):
        for i, r in enumerate(runnables):
            body = r.get(kind)
            if plain(r) and body and (body.get("imageUri") or body.get("text") or body.get("path")):
                return i
    return None


def _runnables(runnables: list[dict[str, Any]], groups: dict[str, dict[str, Any]]) -> None:
    main = main_index(runnables)
    if main is None:
        raise JobSpecError(
            "no container (with imageUri) or script runnable to run; a job needs one",
            f"{_TS}.runnables",
        )
    values: dict[str, Any] = {
        "setup": [_extra(r) for r in runnables[:main]],
        "teardown": [_extra(r) for r in runnables[main + 1 :]],
    }
    values.update({k: v for k, v in _kind(runnables[main]).items() if k != "barrier"})
    groups["main"] = values


def _kind(r: dict[str, Any]) -> dict[str, Any]:
    if "container" in r and r["container"].get("imageUri"):
        c = r["container"]
        return {
            "image": c["imageUri"],
            "entrypoint": c.get("entrypoint") or None,
            "commands": c.get("commands", []),
        }
    script = r.get("script", {})
    if script.get("text"):
        return {"script": script["text"]}
    if script.get("path"):
        return {"script_path": script["path"]}
    if "barrier" in r:
        return {"barrier": r["barrier"].get("name", "")}
    return {}  # nothing typed: the whole runnable stays in batch_overrides


def _extra(r: dict[str, Any]) -> dict[str, Any]:
    out = _kind(r)
    out["display_name"] = r.get("displayName")
    out["background"] = bool(r.get("background"))
    out["ignore_exit_status"] = bool(r.get("ignoreExitStatus"))
    out["always_run"] = bool(r.get("alwaysRun"))
    out["timeout_s"] = _seconds(r.get("timeout"))
    variables = r.get("environment", {}).get("variables")
    if variables:
        out["env"] = variables
    return out


def _retries(ts: dict[str, Any], groups: dict[str, dict[str, Any]]) -> None:
    values: dict[str, Any] = {"max_retry_count": int(ts.get("maxRetryCount", 0))}
    policies = ts.get("lifecyclePolicies", [])
    codes: list[int] = []
    if policies and policies[0].get("action") == "RETRY_TASK":
        codes = list(policies[0].get("actionCondition", {}).get("exitCodes", []))
    values["retry_exit_codes"] = codes
    values["retry_on_preemption"] = PREEMPTION_EXIT_CODE in codes
    groups["retries"] = values


def _allocation(alloc: dict[str, Any], groups: dict[str, dict[str, Any]]) -> None:
    instances = alloc.get("instances") or [{}]
    instance = instances[0]
    policy = instance.get("policy", {})
    if "machineType" in policy:
        groups["machine_type"] = {"machine_type": policy["machineType"]}
    if "provisioningModel" in policy:
        groups["provisioning"] = {"provisioning": policy["provisioningModel"].lower()}
    if "reservation" in policy:
        groups["reservation"] = {"reservation": policy["reservation"]}
    accelerators = policy.get("accelerators", [])
    if len(accelerators) == 1 and "type" in accelerators[0] and "count" in accelerators[0]:
        acc = accelerators[0]
        groups["gpus"] = {
            "gpus": {
                "type": acc["type"],
                "count": int(acc["count"]),
                "driver_version": acc.get("driverVersion"),
            }
        }
    if instance.get("installGpuDrivers"):
        groups["install_gpu_drivers"] = {"install_gpu_drivers": True}
    disk = policy.get("bootDisk", {})
    boot = {
        "boot_disk_gb": int(disk["sizeGb"]) if "sizeGb" in disk else None,
        "boot_disk_image": disk.get("image"),
        "boot_disk_type": disk.get("type"),
    }
    groups["boot_disk"] = {k: v for k, v in boot.items() if v is not None}
    _location(alloc.get("location", {}).get("allowedLocations", []), groups)
    email = alloc.get("serviceAccount", {}).get("email")
    if email:
        groups["service_account_email"] = {"service_account_email": email}
    nics = alloc.get("network", {}).get("networkInterfaces", [])
    if nics:
        nic = {
            "network": nics[0].get("network"),
            "subnetwork": nics[0].get("subnetwork"),
            "no_external_ip_address": bool(nics[0].get("noExternalIpAddress", False)),
        }
        groups["network"] = {k: v for k, v in nic.items() if v not in (None, False)}


def _location(locations: list[str], groups: dict[str, dict[str, Any]]) -> None:
    if not locations:
        return
    region = locations[0].removeprefix("regions/") if locations[0].startswith("regions/") else None
    rest = locations[1:] if region else locations
    if all(loc.startswith("zones/") for loc in rest):
        groups["location"] = {
            "region": region,
            "zones": [loc.removeprefix("zones/") for loc in rest],
        }


def _seconds(duration: Any) -> int | None:
    m = _WHOLE_SECONDS.match(duration) if isinstance(duration, str) else None
    return int(m[1]) if m and int(m[1]) > 0 else None


def _storage_value(spec_field: str, value: str) -> Any:
    """The typed value when it renders back to exactly `value`; None keeps it untyped."""
    try:
        typed: Any
        if spec_field in ("files_per_task", "file_timeout_s", "batch_size"):
            typed = int(value)
        elif spec_field == "failure_budget":
            typed = float(value)
        else:
            typed = value
    except ValueError:
        return None
    rendered = repr(typed) if isinstance(typed, float) else str(typed)
    return typed if rendered == value else None
