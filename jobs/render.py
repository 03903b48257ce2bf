"""The one pure renderer: `JobSpec` (+ the environment's `RenderContext`) -> Batch job JSON.

The output is the canonical camelCase form `google.protobuf.json_format.MessageToDict` gives
for a `google.cloud.batch_v1.Job` (int64 as strings, durations as "3600s", empty values
left out), so rendering, parsing and re-serialising is the identity. No Batch client import:
the submit path uses this module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gpub_runner import contract
from pydantic import BaseModel, ConfigDict, Field

from jobs import billing_labels
from jobs.errors import JobSpecError
from jobs.parts import IMAGE_REF_RE, SECRET_ID_RE, Notification, Runnable
from jobs.retries import lifecycle_policy
from jobs.spec import GPU_MIN_BOOT_DISK_GB, STORAGE_VARIABLES, EnvKind, resolve_topic

if TYPE_CHECKING:
    from jobs.spec import JobSpec

DEFAULT_MAX_RUN_DURATION_S = 3600
# Filled by the submit helper or the workflow (docs/contracts.md, "Job JSON written at synth"):
# the names live in the run-time contract (gpub_runner.contract), re-exported here.
RUNTIME_VARIABLES = contract.RUNTIME_VARIABLES


class RenderContext(BaseModel):
    """What an environment adds when it renders a job (built by `EnvironmentSettings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    env_name: str
    env_kind: EnvKind  # what the environment's defaults follow (spot for GPU jobs in dev)
    project_id: str
    region: str
    registry_host: str  # "<region>-docker.pkg.dev/<project>/batch-images"
    job_service_account_email: str
    # The environment's task network (stacks/network.py): used when the spec names none;
    # the VMs then get no external IP. Subnetworks by region.
    network: str | None = None
    subnetworks: dict[str, str] = Field(default_factory=dict)


def resolve_image(image: str, env: RenderContext | None) -> str:
    """`images/<name>[:tag|@digest]` -> `<registry_host>/<name>:<tag>` (tag "latest")."""
    m = IMAGE_REF_RE.match(image)
    if m is None or env is None:
        return image  # a full URI, or no environment to resolve against
    ref = f"@{m['digest']}" if m["digest"] else f":{m['tag'] or 'latest'}"
    return f"{env.registry_host}/{m['name']}{ref}"


def resolve_secret(secret: str, project_id: str | None) -> str:
    """A bare secret id -> `projects/<p>/secrets/<id>/versions/latest`."""
    if project_id is None or not SECRET_ID_RE.match(secret):
        return secret
    return f"projects/{project_id}/secrets/{secret}/versions/latest"


def storage_variables(spec: JobSpec) -> dict[str, str]:
    """The static GPUB_* variables rendered from the spec's storage settings."""
    out: dict[str, str] = {}
    for field, var in STORAGE_VARIABLES.items():
        value = getattr(spec, field)
        if value is not None:
            out[var] = repr(value) if isinstance(value, float) else str(value)
    return out


def render_job(spec: JobSpec, env: RenderContext | None = None) -> dict[str, Any]:
    """Render `spec` as Batch job JSON.

    With `env` the job gets the environment's defaults: its own service account, Cloud
    Logging, a max run duration, `job`/`job-type`/`env` labels, the resolved image, secret and
    topic names, the environment's provisioning and retry rules, GPU drivers and a 100 GB boot
    disk for GPU jobs, and the runtime fields (task count, parallelism, GPUB_* runtime
    variables) present with empty defaults. Without `env` exactly what the spec says is
    rendered, which is what import round trips compare. `batch_overrides` is laid over the
    result last (objects merge by key, lists element by element).
    """
    env_name = env.env_name if env else None
    project = env.project_id if env else None
    job: dict[str, Any] = {"taskGroups": [_task_group(spec, env)]}
    alloc = _allocation_policy(spec, env)
    if alloc:
        job["allocationPolicy"] = alloc

    labels = dict(spec.labels)
    if env is not None:
        labels.update({"job-type": spec.name, "job": spec.name, "env": env_name or ""})
    if labels:
        job["labels"] = labels
    if spec.cloud_logging or env is not None:
        job["logsPolicy"] = {"destination": "CLOUD_LOGGING"}
    if spec.notifications:
        job["notifications"] = [_notification(n, project) for n in spec.notifications]
    if spec.batch_overrides:
        from jobs.batch_proto import merge  # google-cloud-batch, only for jobs that use it

        job = merge(job, spec.batch_overrides)
        for inst in job.get("allocationPolicy", {}).get("instances", []):
            if "instanceTemplate" in inst:
                # policy and instanceTemplate are a oneof: an environment's defaults (the
                # provisioning model) must not turn a template job into an invalid one.
                inst.pop("policy", None)
    if env is not None:  # an override may add labels: what Batch takes, at render time
        billing_labels.check_vm_labels(job.get("allocationPolicy", {}).get("labels", {}))
    return job


def _task_group(spec: JobSpec, env: RenderContext | None) -> dict[str, Any]:
    group: dict[str, Any] = {"taskSpec": _task_spec(spec, env)}
    task_count = spec.task_count
    if task_count is None and env is not None:
        task_count = len(spec.task_environments) or 1
    if task_count is not None:
        group["taskCount"] = str(task_count)
    parallelism = spec.parallelism
    if parallelism is None and env is not None:
        parallelism = 1
    if parallelism is not None:
        group["parallelism"] = str(parallelism)
    if spec.scheduling_policy is not None:
        group["schedulingPolicy"] = spec.scheduling_policy
    if spec.task_environments:
        group["taskEnvironments"] = [
            {"variables": dict(v)} if v else {} for v in spec.task_environments
        ]
    if spec.tasks_per_node is not None:
        group["taskCountPerNode"] = str(spec.tasks_per_node)
    return group


def _task_spec(spec: JobSpec, env: RenderContext | None) -> dict[str, Any]:
    runnables = [_extra_runnable(r, env) for r in spec.setup]
    runnables.append(_runnable(spec, env))
    runnables += [_extra_runnable(r, env) for r in spec.teardown]
    task: dict[str, Any] = {"runnables": runnables}

    resources: dict[str, Any] = {}
    if spec.cpu_milli is not None:
        resources["cpuMilli"] = str(spec.cpu_milli)
    if spec.memory_mib is not None:
        resources["memoryMib"] = str(spec.memory_mib)
    if resources:
        task["computeResource"] = resources

    run_s = spec.max_run_duration_s
    if run_s is None and env is not None:
        run_s = DEFAULT_MAX_RUN_DURATION_S
    if run_s is not None:
        task["maxRunDuration"] = f"{run_s}s"

    retries, policy = lifecycle_policy(spec, env.env_kind if env else None)
    if retries:  # 0 is proto3's default and never appears in canonical JSON
        task["maxRetryCount"] = retries
    if policy:
        task["lifecyclePolicies"] = [policy]

    environment = _task_environment(spec, env)
    if environment:
        task["environment"] = environment
    if spec.volumes:
        task["volumes"] = [
            {"gcs": {"remotePath": v.remote_path}, "mountPath": v.mount_path}
            | ({"mountOptions": list(v.mount_options)} if v.mount_options else {})
            for v in spec.volumes
        ]
    return task


def _task_environment(spec: JobSpec, env: RenderContext | None) -> dict[str, Any]:
    """The task's variables (the spec's, the storage ones, the runtime ones empty) and secrets."""
    variables = dict(spec.env)
    variables.update(storage_variables(spec))
    if env is not None:
        for var in RUNTIME_VARIABLES:
            variables.setdefault(var, "")
    environment: dict[str, Any] = {}
    if variables:
        environment["variables"] = variables
    if spec.secrets:
        environment["secretVariables"] = {
            k: resolve_secret(v, env.project_id if env else None) for k, v in spec.secrets.items()
        }
    return environment


def _runnable(spec: JobSpec, env: RenderContext | None) -> dict[str, Any]:
    if spec.script is not None:
        return {"script": {"text": spec.script}}
    if spec.script_path is not None:
        return {"script": {"path": spec.script_path}}
    assert spec.image is not None  # validated: a container job has an image
    return {"container": _container(spec.image, spec.entrypoint, spec.commands, env)}


def _container(
    image: str, entrypoint: str | None, commands: list[str], env: RenderContext | None
) -> dict[str, Any]:
    container: dict[str, Any] = {"imageUri": resolve_image(image, env)}
    if commands:
        container["commands"] = list(commands)
    if entrypoint:
        container["entrypoint"] = entrypoint
    return container


def _extra_runnable(r: Runnable, env: RenderContext | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.image is not None:
        out["container"] = _container(r.image, r.entrypoint, r.commands, env)
    elif r.script is not None:
        out["script"] = {"text": r.script}
    elif r.script_path is not None:
        out["script"] = {"path": r.script_path}
    elif r.barrier is not None:
        out["barrier"] = {"name": r.barrier} if r.barrier else {}
    if r.display_name:
        out["displayName"] = r.display_name
    for flag, key in (
        (r.background, "background"),
        (r.ignore_exit_status, "ignoreExitStatus"),
        (r.always_run, "alwaysRun"),
    ):
        if flag:
            out[key] = True
    if r.timeout_s is not None:
        out["timeout"] = f"{r.timeout_s}s"
    if r.env:
        out["environment"] = {"variables": dict(r.env)}
    return out


def _allocation_policy(spec: JobSpec, env: RenderContext | None) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if spec.machine_type:
        policy["machineType"] = spec.machine_type
    if spec.provisioning is not None or env is not None:
        policy["provisioningModel"] = spec.provisioning_for(env.env_kind if env else None).upper()
    if spec.reservation:
        policy["reservation"] = spec.reservation
    if spec.gpus is not None:
        acc: dict[str, Any] = {"type": spec.gpus.type, "count": str(spec.gpus.count)}
        if spec.gpus.driver_version:
            acc["driverVersion"] = spec.gpus.driver_version
        policy["accelerators"] = [acc]
    boot_gb = spec.boot_disk_gb
    if boot_gb is None and spec.is_gpu and env is not None:
        boot_gb = GPU_MIN_BOOT_DISK_GB  # an environment default; guardrails check the rest
    disk: dict[str, Any] = {}
    if spec.boot_disk_image:
        disk["image"] = spec.boot_disk_image
    if spec.boot_disk_type:
        disk["type"] = spec.boot_disk_type
    if boot_gb is not None:
        disk["sizeGb"] = str(boot_gb)
    if disk:
        policy["bootDisk"] = disk

    instance: dict[str, Any] = {"policy": policy} if policy else {}
    drivers = spec.install_gpu_drivers
    if drivers is None:
        drivers = spec.is_gpu and env is not None
    if drivers:
        instance["installGpuDrivers"] = True
    alloc: dict[str, Any] = {"instances": [instance]} if instance else {}

    region = spec.region or (env.region if env else None)
    locations = ([f"regions/{region}"] if region else []) + [f"zones/{z}" for z in spec.zones]
    if locations:
        alloc["location"] = {"allowedLocations": locations}
    email = env.job_service_account_email if env else spec.service_account_email
    if email:
        alloc["serviceAccount"] = {"email": email}
    nic: dict[str, Any] = {}
    if spec.network:
        nic["network"] = spec.network
    if spec.subnetwork:
        nic["subnetwork"] = spec.subnetwork
    if spec.no_external_ip_address:
        nic["noExternalIpAddress"] = True
    if not nic and env is not None and env.network and region in env.subnetworks:
        # The environment's VPC: private, no external IP (cloud.google.com/batch/docs/
        # reference/rest/v1/projects.locations.jobs#networkinterface).
        nic = {"network": env.network, "subnetwork": env.subnetworks[region],
               "noExternalIpAddress": True}
    if nic:
        alloc["network"] = {"networkInterfaces": [nic]}
    if env is not None:
        # What billing sees (jobs/billing_labels.py): env and job now, client and run when
        # the run is filled in (fill_runtime, the job workflows).
        alloc["labels"] = billing_labels.billing_labels(env=env.env_name, job=spec.name)
    return alloc


def _notification(n: Notification, project: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"pubsubTopic": resolve_topic(n.topic, project)}
    message: dict[str, Any] = {}
    if n.type:
        message["type"] = n.type
    if n.job_state:
        message["newJobState"] = n.job_state
    if n.task_state:
        message["newTaskState"] = n.task_state
    if message:
        out["message"] = message
    return out


def fill_runtime(
    job_json: Mapping[str, Any],
    *,
    task_count: int,
    parallelism: int,
    variables: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    vm_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of a rendered job with its runtime fields set (the input is not modified).

    Sets `taskGroups[0].taskCount` and `.parallelism`, merges `variables` into the task
    environment (GPUB_INPUT_PREFIX, GPUB_OUTPUT_PREFIX, GPUB_MANIFEST, GPUB_JOB_NAME, ...) and
    `labels` into the job labels (client, submitter, manifest-hash) and `vm_labels` into
    `allocationPolicy.labels` (client, run: what billing sees), checked against Batch's limits.
    """
    if task_count < 1 or parallelism < 1:
        raise JobSpecError(
            f"task_count and parallelism must be >= 1; got {task_count}, {parallelism}",
            "taskGroups[0]",
        )
    job = copy.deepcopy(dict(job_json))
    groups = job.get("taskGroups") or []
    if not groups:
        raise JobSpecError("the job has no task group", "taskGroups")
    group = groups[0]
    if group.get("taskEnvironments") and len(group["taskEnvironments"]) != task_count:
        raise JobSpecError(
            f"the job has {len(group['taskEnvironments'])} task environments; got "
            f"task_count {task_count}",
            "taskGroups[0].taskCount",
        )
    group["taskCount"] = str(task_count)
    group["parallelism"] = str(parallelism)
    if variables:
        env = group.setdefault("taskSpec", {}).setdefault("environment", {})
        env.setdefault("variables", {}).update({str(k): str(v) for k, v in variables.items()})
    if labels:
        job.setdefault("labels", {}).update({str(k): str(v) for k, v in labels.items()})
    if vm_labels:
        billing_labels.apply(job, vm_labels)
    return job
