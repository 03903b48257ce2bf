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
from typing import Annotated, Any, Literal

from gpub_runner import contract
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from jobs.catalog import (
    MachineShape,
    MachineType,
    get_machine,
    gpu_family,
    machine_shape,
)
from jobs.errors import JobSpecError
from jobs.parts import (
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    REGION_RE,
    SECRET_ID_RE,
    STRICT,
    TOPIC_ID_RE,
    GcsVolume,
    GpuDemand,
    GpuPeak,
    GpuSpec,
    JobState,
    Notification,
    NotificationType,
    Provisioning,
    Rung,
    Runnable,
    TaskState,
)
from jobs.spec_checks import (
    FIELD_CHECKS,
    JOB_ID_SUFFIX_LEN,
    NAME_MAX,
    NAME_RE,
    STORAGE_VARIABLES,
)

__all__ = [
    "JOB_ID_SUFFIX_LEN", "LABEL_KEY_RE", "LABEL_VALUE_RE", "NAME_MAX", "NAME_RE", "REGION_RE",
    "STORAGE_VARIABLES", "GcsVolume", "GpuDemand", "GpuPeak", "GpuSpec", "JobSpec", "JobState",
    "Notification", "NotificationType", "Provisioning", "Rung", "Runnable", "TaskState",
]  # fmt: skip

PREEMPTION_EXIT_CODE = contract.PREEMPTION_EXIT_CODE  # Batch's code for a Spot VM preemption
DEFAULT_RETRIES = 3  # retry budget when retries are implied (spot) but not given
GPU_MIN_BOOT_DISK_GB = 100  # CUDA images are large (Robotoff: 100 GB for a ~24 GB image)
# An environment's kind (`EnvironmentSettings.kind`, stated in environments.yaml): in `dev`, GPU
# jobs without an explicit provisioning model default to Spot.
EnvKind = Literal["dev", "prod"]

InputFormat = Literal["csv", "parquet", "feather", "jsonl"]
# Models that draw on preemptible GPU quota and can lose their VM (FLEX_START: DWS).
PREEMPTIBLE_QUOTA_MODELS = ("spot", "preemptible", "flex_start")
SchedulingPolicy = Literal["AS_SOON_AS_POSSIBLE", "IN_ORDER"]

PosInt = Annotated[int, Field(ge=1)]


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
    # Capacity (docs/capacity.md): rungs in order, and regions in order (Batch's allowedLocations
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

    @field_validator(*FIELD_CHECKS)
    @classmethod
    def _field_checks(cls, v: Any, info: ValidationInfo) -> Any:
        return FIELD_CHECKS[str(info.field_name)](v, info.data)  # jobs/spec_checks.py

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

    def provisioning_for(self, kind: EnvKind | None) -> Provisioning:
        """The provisioning model in an environment of `kind`: explicit, else spot for GPU
        jobs in dev, else standard (also without an environment)."""
        if self.provisioning is not None:
            return self.provisioning
        if kind == "dev" and self.is_gpu:
            return "spot"
        return "standard"

    def rungs_for(self, kind: EnvKind | None) -> list[Rung]:
        """The ladder to climb in an environment of `kind`: the declared one, else one rung of the
        environment's provisioning rule (and the declared reservation)."""
        if self.ladder:
            return list(self.ladder)
        return [Rung(provisioning=self.provisioning_for(kind), reservation=self.reservation)]

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

    def retry_policy_for(self, kind: EnvKind | None) -> tuple[int | None, list[int]]:
        """(maxRetryCount, RETRY_TASK exit codes in order) in an environment of `kind`.

        With an environment, Spot implies retrying on preemption (50001) with a default budget.
        Without one (an import round trip) only what the spec says is rendered.
        """
        codes = list(self.retry_exit_codes)
        if kind is None:
            preempt = bool(self.retry_on_preemption)
        else:
            spot = self.provisioning_for(kind) in ("spot", "preemptible")
            preempt = self.retry_on_preemption if self.retry_on_preemption is not None else spot
        if preempt and PREEMPTION_EXIT_CODE not in codes:
            codes.insert(0, PREEMPTION_EXIT_CODE)
        count = self.max_retry_count
        if count is None and codes and kind is not None:
            count = DEFAULT_RETRIES
        return count, codes

    def peak_gpu_demand(self, kind: EnvKind | None = None) -> GpuDemand | None:
        """GPUs held at peak: VMs at peak parallelism x GPUs per VM; None for CPU jobs.

        Peak parallelism is `peak_parallelism` (max_parallelism, else parallelism, else
        task_count, else 1); `tasks_per_node` tasks share a VM. `spot` (preemptible quota)
        follows `provisioning_for(kind)`: SPOT, PREEMPTIBLE and FLEX_START draw on it.
        """
        gpu = self.gpu_type
        if gpu is None or not self.is_gpu:
            return None
        vms = math.ceil(self.peak_parallelism / (self.tasks_per_node or 1))
        spot = self.provisioning_for(kind) in PREEMPTIBLE_QUOTA_MODELS
        return GpuDemand(gpu_family(gpu), vms * self.gpus_per_vm, spot)

    def secret_ids(self) -> list[str]:
        """Bare secret ids this job reads from its own project (for declaring and IAM)."""
        return [s for s in self.secrets.values() if SECRET_ID_RE.match(s)]

