"""The parts a `JobSpec` is made of: GPUs, volumes, notifications, extra runnables, and the
name patterns they are checked against. Pure pydantic (the submit path imports this)."""

from __future__ import annotations

import re
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.catalog import gpu_types

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
ZONE_RE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")
IMAGE_REF_RE = re.compile(
    r"^images/(?P<name>[a-z0-9][a-z0-9._-]*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
IMAGE_URI_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
SECRET_NAME_RE = re.compile(
    r"^projects/[^/\s]+/secrets/[A-Za-z0-9_-]{1,255}/versions/[A-Za-z0-9_-]+$"
)
TOPIC_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
TOPIC_NAME_RE = re.compile(r"^projects/[^/\s]+/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")

JobState = Literal[
    "QUEUED", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED",
    "DELETION_IN_PROGRESS", "CANCELLATION_IN_PROGRESS", "CANCELLED",
]  # fmt: skip
TaskState = Literal["PENDING", "ASSIGNED", "RUNNING", "FAILED", "SUCCEEDED", "UNEXECUTED"]
NotificationType = Literal["JOB_STATE_CHANGED", "TASK_STATE_CHANGED"]

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
# Batch's provisioning models, lower case (AllocationPolicy.ProvisioningModel).
Provisioning = Literal["standard", "spot", "preemptible", "flex_start", "reservation_bound"]
# `policy.reservation`: "NO_RESERVATION", a reservation name, or its resource path
# (https://cloud.google.com/batch/docs/create-run-job-reservation).
RESERVATION_RE = re.compile(
    r"^(NO_RESERVATION|[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
    r"|projects/[^/\s]+/(zones/[a-z0-9-]+/)?reservations/[a-z]([-a-z0-9]{0,61}[a-z0-9])?)$"
)


class GpuSpec(BaseModel):
    """Accelerators per VM. On g2/a2/a3 they must match what the machine carries."""

    model_config = STRICT

    type: str
    count: Annotated[int, Field(ge=1, le=16)] = 1
    driver_version: str | None = None

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in gpu_types():
            raise ValueError(f"unknown accelerator {v!r}; known: {', '.join(gpu_types())}")
        return v


class GcsVolume(BaseModel):
    """A Cloud Storage bucket (or a folder of it) mounted into every task with gcsfuse."""

    model_config = STRICT

    remote_path: str  # "bucket" or "bucket/folder", no gs://
    mount_path: str  # absolute path inside the VM and container
    mount_options: list[str] = Field(default_factory=list)  # gcsfuse flags, e.g. "-o ro"

    @field_validator("remote_path")
    @classmethod
    def _bucket_path(cls, v: str) -> str:
        if v.startswith("gs://") or not re.match(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/.*)?$", v):
            raise ValueError(
                f"remote_path must be 'bucket' or 'bucket/folder' (no gs://); got {v!r}"
            )
        return v

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or v == "/":
            raise ValueError(f"mount_path must be an absolute path below /; got {v!r}")
        return v


class Notification(BaseModel):
    """A Pub/Sub message on job or task state changes."""

    model_config = STRICT

    topic: str  # topic id in the job's project, or "projects/<p>/topics/<t>"
    type: NotificationType | None = None
    job_state: JobState | None = None
    task_state: TaskState | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not (TOPIC_ID_RE.match(v) or TOPIC_NAME_RE.match(v)):
            raise ValueError(f"topic must be a topic id or 'projects/<p>/topics/<t>'; got {v!r}")
        return v

    @model_validator(mode="after")
    def _state_matches_type(self) -> Notification:
        if self.job_state and self.type != "JOB_STATE_CHANGED":
            raise ValueError("job_state: needs type='JOB_STATE_CHANGED'")
        if self.task_state and self.type != "TASK_STATE_CHANGED":
            raise ValueError("task_state: needs type='TASK_STATE_CHANGED'")
        return self


class Runnable(BaseModel):
    """A runnable other than the job's main one: setup or teardown, a barrier, a background
    agent. One of image, script, script_path or barrier says what it runs (an imported kind
    the model does not type stays in the job's `batch_overrides`)."""

    model_config = STRICT

    display_name: str | None = None
    image: str | None = None  # full image URI (or "images/<name>[:tag]")
    entrypoint: str | None = None
    commands: list[str] = Field(default_factory=list)
    script: str | None = None
    script_path: str | None = None
    barrier: str | None = None  # a barrier: its name ("" for an unnamed one)
    background: bool = False
    ignore_exit_status: bool = False
    always_run: bool = False
    timeout_s: Annotated[int, Field(ge=1)] | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> Runnable:
        kinds = [
            k for k in ("image", "script", "script_path", "barrier") if getattr(self, k) is not None
        ]
        if len(kinds) > 1:  # none: what it runs is in the job's batch_overrides
            raise ValueError(
                "a runnable runs at most one of image, script, script_path or barrier; "
                f"got {', '.join(kinds)}"
            )
        if (self.entrypoint or self.commands) and self.image is None:
            raise ValueError("entrypoint: entrypoint and commands belong to an image runnable")
        return self


class Rung(BaseModel):
    """One rung of a provisioning ladder: how to ask for capacity, and how long to wait.

    `bin/submit` tries the rungs in order and moves on when a rung shows no VM after its
    `deadline_s` or fails for capacity (docs/capacity.md);
    the last rung may wait without a deadline.
    """

    model_config = STRICT

    provisioning: Provisioning
    reservation: str | None = None  # a reservation to consume ("r-l4"), or "NO_RESERVATION"
    deadline_s: Annotated[int, Field(ge=60)] | None = None

    @field_validator("reservation")
    @classmethod
    def _reservation(cls, v: str | None) -> str | None:
        if v is not None and not RESERVATION_RE.match(v):
            raise ValueError(
                "must be 'NO_RESERVATION', a reservation name, or "
                f"'projects/<p>/reservations/<name>'; got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _bound_needs_a_reservation(self) -> Rung:
        if self.provisioning == "reservation_bound" and self.reservation in (
            None,
            "NO_RESERVATION",
        ):
            raise ValueError("reservation: a reservation_bound rung names its reservation")
        return self


class GpuDemand(NamedTuple):
    """GPUs of one quota family held at once: a job's peak (`JobSpec.peak_gpu_demand`, no
    region: the job does not know where it runs), or, with the region added by the stack
    (`in_region`), what one Cloud Quotas preference must cover (`stacks/quotas.py`). The one
    model of GPU demand (docs/contracts.md)."""

    family: str  # quota family, "L4"
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose
    spot: bool  # preemptible quota (SPOT and FLEX_START draw on it)
    region: str | None = None

    def in_region(self, region: str) -> GpuDemand:
        return self._replace(region=region)


GpuPeak = GpuDemand  # the first wave's name, still importable
