"""`JobSpec`: one Google Batch job, declared once, validated against the machine catalog.

Pure pydantic, no provider or Batch client import: the submit path imports this module. The
model imports neither the renderer nor the importer: `jobs.to_batch_json(spec)` and
`jobs.from_batch_json(text)` are package-level functions (`jobs.render`, `jobs.importer`).

The model refuses only what Batch itself would refuse or what cannot be rendered; opinions
about what is wise (a GPU job's boot disk, Spot retries, Cloud Logging) are guardrail findings
(`policies.guardrails`), and environment defaults are applied by the renderer.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from jobs.catalog import (
    MachineShape,
    MachineType,
    get_machine,
    gpu_family,
    gpu_fit_problem,
    machine_shape,
)
from jobs.errors import JobSpecError
from jobs.parts import (
    ENV_NAME_RE,
    IMAGE_REF_RE,
    IMAGE_URI_RE,
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    REGION_RE,
    RESERVATION_RE,
    SECRET_ID_RE,
    SECRET_NAME_RE,
    STRICT,
    TOPIC_ID_RE,
    ZONE_RE,
    GcsVolume,
    GpuDemand,
    GpuSpec,
    JobState,
    Notification,
    NotificationType,
    Provisioning,
    Rung,
    Runnable,
    TaskState,
)

__all__ = [
    "LABEL_KEY_RE", "LABEL_VALUE_RE", "REGION_RE", "GcsVolume", "GpuDemand", "GpuSpec",
    "JobSpec", "JobState", "Notification", "NotificationType", "Provisioning", "Rung",
    "Runnable", "TaskState",
]  # fmt: skip

# Batch job ids are `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`; submit appends
# "-yyyymmdd-hhmmss-xxxx" (21 chars), so the declared name keeps to 63 - 21 = 42.
JOB_ID_SUFFIX_LEN = 21
NAME_MAX = 63 - JOB_ID_SUFFIX_LEN
NAME_RE = re.compile(rf"^[a-z]([a-z0-9-]{{0,{NAME_MAX - 2}}}[a-z0-9])?$")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
DISK_TYPE_RE = re.compile(r"^(pd|hyperdisk)-[a-z-]+$")
# Predefined ("g2-standard-8") and custom ("e2-custom-32-98304", "custom-8-30720") types.
MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")

PREEMPTION_EXIT_CODE = 50001  # Batch's reserved exit code for a Spot VM preemption
DEFAULT_RETRIES = 3  # retry budget when retries are implied (spot) but not given
GPU_MIN_BOOT_DISK_GB = 100  # CUDA images are large (Robotoff: 100 GB for a ~24 GB image)
DEV_ENVIRONMENTS = ("dev",)  # environments (and "dev-*" names) where GPU jobs default to spot

InputFormat = Literal["csv", "parquet", "feather", "jsonl"]
# Models that draw on preemptible GPU quota and can lose their VM (FLEX_START: DWS).
PREEMPTIBLE_QUOTA_MODELS = ("spot", "preemptible", "flex_start")
SchedulingPolicy = Literal["AS_SOON_AS_POSSIBLE", "IN_ORDER"]

# Storage-execution settings become these static task variables (see docs/contracts.md).
STORAGE_VARIABLES: dict[str, str] = {
    "input_format": "GPUB_INPUT_FORMAT",
    "files_per_task": "GPUB_FILES_PER_TASK",
    "file_timeout_s": "GPUB_FILE_TIMEOUT_S",
    "failure_budget": "GPUB_FAILURE_BUDGET",
    "batch_size": "GPUB_BATCH_SIZE",
    "handler": "GPUB_HANDLER",
}

PosInt = Annotated[int, Field(ge=1)]


def is_dev_environment(env_name: str) -> bool:
    return env_name in DEV_ENVIRONMENTS or env_name.startswith("dev")


def resolve_topic(topic: str, project_id: str | None) -> str:
    """A bare topic id -> `projects/<p>/topics/<id>`."""
    if project_id is None or not TOPIC_ID_RE.match(topic) or topic.startswith("projects/"):
        return topic
    return f"projects/{project_id}/topics/{topic}"


class JobSpec(BaseModel):
    """One Batch job. Fields left None take the environment's defaults at render time."""

    model_config = STRICT

    # Identity. `name` is the Batch job-id prefix and the `job` label.
    name: str
    # The main runnable (the runner contract applies to it): a container or a bash script.
    image: str | None = None  # "images/<name>[:tag|@sha256:..]" or a full image URI
    entrypoint: str | None = None
    commands: list[str] = Field(default_factory=list)
    script: str | None = None
    script_path: str | None = None  # a script file already on the VM
    # Runnables before and after the main one (setup, barriers, background agents, teardown).
    setup: list[Runnable] = Field(default_factory=list)
    teardown: list[Runnable] = Field(default_factory=list)
    # Where it runs. No machine type: Batch picks one from computeResource.
    machine_type: str | None = None
    gpus: GpuSpec | None = None  # None on g2/a2/a3: the machine's own GPUs, no accelerators
    install_gpu_drivers: bool | None = None  # None: true for GPU jobs rendered for an env
    cpu_milli: PosInt | None = None  # per task
    memory_mib: PosInt | None = None  # per task
    boot_disk_gb: Annotated[int, Field(ge=10, le=65536)] | None = None
    boot_disk_image: str | None = None
    boot_disk_type: str | None = None
    provisioning: Provisioning | None = None  # None: spot for GPU jobs in dev, else standard
    reservation: str | None = None  # a reservation name, or "NO_RESERVATION"; None: any
    region: str | None = None  # None: the environment's region
    zones: list[str] = Field(default_factory=list)
    # Capacity (issue 15): rungs tried in order, and regions in order (Batch's allowedLocations
    # holds one region per job, so trying several is the submit side's job). Not rendered.
    ladder: list[Rung] = Field(default_factory=list)  # []: the environment's default ladder
    candidate_regions: list[str] = Field(default_factory=list)
    network: str | None = None
    subnetwork: str | None = None
    no_external_ip_address: bool = False
    # Retries and limits.
    max_retry_count: Annotated[int, Field(ge=0, le=10)] | None = None  # Batch: [0, 10]
    retry_on_preemption: bool | None = None  # None: on exactly when the job runs on spot
    retry_exit_codes: list[int] = Field(default_factory=list)  # RETRY_TASK codes, in order
    max_run_duration_s: PosInt | None = None  # None: 3600 s when rendered for an environment
    # Task shape. task_count/parallelism are usually filled in at submit time.
    task_count: PosInt | None = None
    parallelism: PosInt | None = None
    max_parallelism: PosInt | None = None  # ceiling for runtime parallelism; sizes GPU quota
    tasks_per_node: PosInt | None = None
    scheduling_policy: SchedulingPolicy | None = None
    task_environments: list[dict[str, str]] = Field(default_factory=list)
    # Task environment.
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)  # VAR -> secret id or version name
    volumes: list[GcsVolume] = Field(default_factory=list)
    # Job-level.
    notifications: list[Notification] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    service_account_email: str | None = None  # imported JSON only; environments set their own
    cloud_logging: bool = False  # imported JSON only; environments always log to Cloud Logging
    # Storage-based execution (read by gpub_runner through GPUB_* variables).
    input_format: InputFormat | None = None
    files_per_task: PosInt | None = None
    file_timeout_s: PosInt | None = None
    failure_budget: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    batch_size: PosInt | None = None
    handler: str | None = None  # "module:function"
    # Every other Batch field, as Batch job JSON (camelCase) laid over the rendering: lists
    # merge element by element. Checked against the Batch Job proto. See docs/jobs.md.
    batch_overrides: dict[str, Any] = Field(default_factory=dict)

    # ---- field checks (messages name the field through pydantic's location) ----

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"must be 1-{NAME_MAX} chars of lowercase letters, digits and hyphens, starting "
                f"with a letter and not ending with a hyphen (Batch job ids are 63 chars and "
                f"submit appends a {JOB_ID_SUFFIX_LEN}-char timestamp); got {v!r}"
            )
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith("images/"):
            if not IMAGE_REF_RE.match(v):
                raise ValueError(
                    f"must be 'images/<name>', 'images/<name>:<tag>' or "
                    f"'images/<name>@sha256:<64 hex>'; got {v!r}"
                )
        elif not IMAGE_URI_RE.match(v):
            raise ValueError(f"must be 'images/<name>[:tag]' or a full image URI; got {v!r}")
        return v

    @field_validator("machine_type")
    @classmethod
    def _machine(cls, v: str | None) -> str | None:
        # Unknown types are allowed (Batch knows more than our catalog); guardrails warn.
        if v is not None and not MACHINE_TYPE_RE.match(v):
            raise ValueError(f"must be a machine type like 'n2-standard-8'; got {v!r}")
        return v

    @field_validator("gpus")
    @classmethod
    def _gpus_fit_machine(cls, v: GpuSpec | None, info: ValidationInfo) -> GpuSpec | None:
        machine = _machine_of(info)
        problem = gpu_fit_problem(machine, v.type, v.count) if v and machine else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("cpu_milli")
    @classmethod
    def _cpu_fits(cls, v: int | None, info: ValidationInfo) -> int | None:
        machine = _machine_of(info)
        if v is not None and machine is not None and v > machine.vcpus * 1000:
            raise ValueError(f"cpuMilli {v} exceeds {machine.name} ({machine.vcpus * 1000})")
        return v

    @field_validator("memory_mib")
    @classmethod
    def _memory_fits(cls, v: int | None, info: ValidationInfo) -> int | None:
        machine = _machine_of(info)
        if v is not None and machine is not None and v > machine.memory_mib:
            raise ValueError(f"memoryMib {v} exceeds {machine.name} ({machine.memory_mib})")
        return v

    @field_validator("boot_disk_type")
    @classmethod
    def _disk_type(cls, v: str | None) -> str | None:
        if v is not None and not DISK_TYPE_RE.match(v):
            raise ValueError(f"must be a disk type like 'pd-balanced' or 'pd-ssd'; got {v!r}")
        return v

    @field_validator("reservation")
    @classmethod
    def _reservation(cls, v: str | None) -> str | None:
        if v is not None and not RESERVATION_RE.match(v):
            raise ValueError(
                "must be 'NO_RESERVATION', a reservation name, or "
                f"'projects/<p>/reservations/<name>'; got {v!r}"
            )
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not REGION_RE.match(v):
            raise ValueError(f"must be a region like 'europe-west4'; got {v!r}")
        return v

    @field_validator("zones")
    @classmethod
    def _zones(cls, v: list[str], info: ValidationInfo) -> list[str]:
        region = info.data.get("region")
        for zone in v:
            m = ZONE_RE.match(zone)
            if not m:
                raise ValueError(f"must be zones like 'europe-west4-a'; got {zone!r}")
            if region and m.group(1) != region:
                raise ValueError(f"zone {zone!r} is not in region {region!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a zone; got {v}")
        return v

    @field_validator("ladder")
    @classmethod
    def _ladder(cls, v: list[Rung]) -> list[Rung]:
        for i, rung in enumerate(v[:-1]):
            if rung.deadline_s is None:
                raise ValueError(
                    f"rung {i} ({rung.provisioning}) needs a deadline_s: a later rung follows"
                )
        keys = [(r.provisioning, r.reservation) for r in v]
        if len(set(keys)) != len(keys):
            raise ValueError("must not repeat a rung")
        return v

    @field_validator("candidate_regions")
    @classmethod
    def _candidate_regions(cls, v: list[str], info: ValidationInfo) -> list[str]:
        for region in v:
            if not REGION_RE.match(region):
                raise ValueError(f"must be regions like 'europe-west4'; got {region!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a region; got {v}")
        home = info.data.get("region")
        if v and home and v[0] != home:
            raise ValueError(f"the first candidate is the job's region {home!r}; got {v[0]!r}")
        return v

    @field_validator("retry_exit_codes")
    @classmethod
    def _exit_codes(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat an exit code; got {v}")
        return v

    @field_validator("env", "task_environments")
    @classmethod
    def _env_names(cls, v: Any) -> Any:
        envs = v if isinstance(v, list) else [v]
        for env in envs:
            for key in env:
                if not ENV_NAME_RE.match(key):
                    raise ValueError(f"{key!r} is not a valid environment variable name")
                if key in STORAGE_VARIABLES.values():
                    field = next(f for f, var in STORAGE_VARIABLES.items() if var == key)
                    raise ValueError(f"{key} is rendered from the {field} field; set that instead")
        return v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: dict[str, str]) -> dict[str, str]:
        for key, secret in v.items():
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if not (SECRET_ID_RE.match(secret) or SECRET_NAME_RE.match(secret)):
                raise ValueError(
                    f"{key}: must be a Secret Manager secret id or "
                    f"'projects/<p>/secrets/<id>/versions/<v>'; got {secret!r}"
                )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(value):
                raise ValueError(
                    f"{key}={value!r} is not a valid label (keys start with a lowercase letter; "
                    "lowercase letters, digits, '_' and '-', at most 63 chars)"
                )
        return v

    @field_validator("handler")
    @classmethod
    def _handler(cls, v: str | None) -> str | None:
        if v is not None and not HANDLER_RE.match(v):
            raise ValueError(f"must be 'module:function'; got {v!r}")
        return v

    @field_validator("batch_overrides")
    @classmethod
    def _overrides_are_batch_json(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            return v
        from jobs.batch_proto import problems  # google-cloud-batch, only when used

        found = problems(v)
        if found:
            path, why = found[0]
            raise ValueError(f"{path}: {why} (batch_overrides is Batch job JSON)")
        return v

    # ---- cross-field checks (messages start with the field they blame) ----

    @model_validator(mode="after")
    def _cross_checks(self) -> JobSpec:
        self._check_runnable()
        self._check_retries()
        self._check_task_shape()
        dup = set(self.env) & set(self.secrets)
        if dup:
            raise ValueError(f"secrets: {sorted(dup)} also set in env; a variable comes from one")
        return self

    def _check_runnable(self) -> None:
        scripts = [k for k in ("script", "script_path") if getattr(self, k) is not None]
        if scripts:
            if self.image is not None or self.entrypoint is not None or self.commands:
                raise ValueError(
                    f"{scripts[0]}: a job runs either a script or a container (image, "
                    "entrypoint, commands), not both"
                )
            if len(scripts) > 1:
                raise ValueError("script_path: a script is either text or a path, not both")
            if self.script is not None and not self.script.strip():
                raise ValueError("script: must not be empty")
        elif self.image is None:
            raise ValueError("image: required unless the job runs a script")

    def _check_retries(self) -> None:
        if self.retry_on_preemption is False and PREEMPTION_EXIT_CODE in self.retry_exit_codes:
            raise ValueError(
                "retry_on_preemption: False contradicts exit code 50001 in retry_exit_codes"
            )

    def _check_task_shape(self) -> None:
        if self.task_environments and self.task_count not in (None, len(self.task_environments)):
            raise ValueError(
                f"task_count: {self.task_count} differs from the {len(self.task_environments)} "
                "task_environments (Batch runs one task per task environment)"
            )
        if self.parallelism and self.max_parallelism and self.parallelism > self.max_parallelism:
            raise ValueError(
                f"parallelism: {self.parallelism} exceeds max_parallelism {self.max_parallelism}"
            )
        machine = self.catalog_machine
        if self.tasks_per_node and self.cpu_milli and machine:
            need = self.tasks_per_node * self.cpu_milli
            if need > machine.vcpus * 1000:
                raise ValueError(
                    f"tasks_per_node: {self.tasks_per_node} tasks x cpuMilli {self.cpu_milli} "
                    f"exceed {machine.name} ({machine.vcpus * 1000})"
                )

    # ---- derived facts ----

    @property
    def catalog_machine(self) -> MachineShape | None:
        """The machine type's shape, None when unset or unknown (a custom or new type)."""
        return machine_shape(self.machine_type) if self.machine_type else None

    @property
    def machine(self) -> MachineType:
        """The priced catalog entry of the machine type; JobSpecError without one (cost)."""
        machine = get_machine(self.machine_type) if self.machine_type else None
        if machine is None:
            raise JobSpecError(
                f"{self.machine_type or 'no machine type'} has no price in the machine catalog "
                "(jobs/machines.yaml); set a priced machine type to estimate cost",
                "machine_type",
            )
        return machine

    @property
    def gpu_type(self) -> str | None:
        """The accelerator type each VM carries (given or built into the machine)."""
        if self.gpus:
            return self.gpus.type
        machine = self.catalog_machine
        return machine.gpu_type if machine else None

    @property
    def gpus_per_vm(self) -> int:
        if self.gpus:
            return self.gpus.count
        machine = self.catalog_machine
        return machine.gpu_count if machine else 0

    @property
    def is_gpu(self) -> bool:
        return self.gpus_per_vm > 0

    @property
    def peak_parallelism(self) -> int:
        """Most tasks at once: max_parallelism, else parallelism, else task_count, else 1."""
        return self.max_parallelism or self.parallelism or self.task_count or 1

    def provisioning_for(self, env_name: str | None) -> Provisioning:
        """The provisioning model in `env_name`: explicit, else spot for GPU jobs in dev."""
        if self.provisioning is not None:
            return self.provisioning
        if env_name is not None and self.is_gpu and is_dev_environment(env_name):
            return "spot"
        return "standard"

    def rungs_for(self, env_name: str | None) -> list[Rung]:
        """The ladder to climb in `env_name`: the declared one, else one rung of the
        environment's provisioning rule (and the declared reservation)."""
        if self.ladder:
            return list(self.ladder)
        return [Rung(provisioning=self.provisioning_for(env_name), reservation=self.reservation)]

    def on_rung(self, rung: Rung, region: str | None = None) -> JobSpec:
        """This job as submitted on `rung` (and in `region`): what gets rendered for it."""
        update: dict[str, Any] = {
            "provisioning": rung.provisioning,
            "reservation": rung.reservation,
        }
        if region is not None:
            zones = [z for z in self.zones if z.startswith(f"{region}-")]
            rest = [r for r in self.candidate_regions if r != region]
            update |= {"region": region, "zones": zones, "candidate_regions": [region, *rest]}
        return JobSpec.model_validate(self.model_dump() | update)

    def retry_policy_for(self, env_name: str | None) -> tuple[int | None, list[int]]:
        """(maxRetryCount, RETRY_TASK exit codes in order) in `env_name`.

        With an environment, Spot implies retrying on preemption (50001) with a default budget.
        Without one (an import round trip) only what the spec says is rendered.
        """
        codes = list(self.retry_exit_codes)
        if env_name is None:
            preempt = bool(self.retry_on_preemption)
        else:
            spot = self.provisioning_for(env_name) in ("spot", "preemptible")
            preempt = self.retry_on_preemption if self.retry_on_preemption is not None else spot
        if preempt and PREEMPTION_EXIT_CODE not in codes:
            codes.insert(0, PREEMPTION_EXIT_CODE)
        count = self.max_retry_count
        if count is None and codes and env_name is not None:
            count = DEFAULT_RETRIES
        return count, codes

    def peak_gpu_demand(self, env_name: str | None = None) -> GpuDemand | None:
        """GPUs held at peak: VMs at peak parallelism x GPUs per VM; None for CPU jobs.

        Peak parallelism is `peak_parallelism` (max_parallelism, else parallelism, else
        task_count, else 1); `tasks_per_node` tasks share a VM. `spot` (preemptible quota)
        follows `provisioning_for(env_name)`: SPOT, PREEMPTIBLE and FLEX_START draw on it.
        """
        gpu = self.gpu_type
        if gpu is None or not self.is_gpu:
            return None
        vms = math.ceil(self.peak_parallelism / (self.tasks_per_node or 1))
        spot = self.provisioning_for(env_name) in PREEMPTIBLE_QUOTA_MODELS
        return GpuDemand(gpu_family(gpu), vms * self.gpus_per_vm, spot)

    def secret_ids(self) -> list[str]:
        """Bare secret ids this job reads from its own project (for declaring and IAM)."""
        return [s for s in self.secrets.values() if SECRET_ID_RE.match(s)]

    def topic_names(self, project_id: str) -> list[str]:
        """Full Pub/Sub topic names this job publishes to (for `pubsub.publisher` grants)."""
        return list(dict.fromkeys(resolve_topic(n.topic, project_id) for n in self.notifications))


def _machine_of(info: ValidationInfo) -> MachineShape | None:
    name = info.data.get("machine_type")
    return machine_shape(name) if isinstance(name, str) else None
