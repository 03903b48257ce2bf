"""Typed settings for one environment (dev, prod, ...): everything a platform stack needs.

Pure pydantic: no provider import, so the submit helper and the policy checks can read the same
settings the stacks are built from.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs import JobSpec, RenderContext
from jobs.spec import LABEL_KEY_RE, LABEL_VALUE_RE, REGION_RE

# GCP project ids: 6-30 chars, lowercase letter first, no trailing hyphen.
PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Client names become service account ids (client-<name>, 6-30 chars) and object prefixes.
CLIENT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,21}[a-z0-9]$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
BILLING_ACCOUNT_RE = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
PRINCIPAL_RE = re.compile(r"^(user|group|serviceAccount|domain):[^\s]+$")

InputFormat = Literal["csv", "parquet", "feather", "jsonl"]

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Guardrails(BaseModel):
    """Ceilings every job of the environment must stay under (checked at CI and at submit)."""

    model_config = _STRICT

    max_run_duration_s: Annotated[int, Field(gt=0)] = 24 * 3600
    allowed_regions: list[str] = Field(default_factory=lambda: ["europe-west4"])
    max_gpus_per_job: Annotated[int, Field(ge=0)] = 8
    max_parallelism: Annotated[int, Field(gt=0)] = 100
    max_cost_per_run_usd: Annotated[float, Field(gt=0)] = 500.0
    # The GPU quota the environment asks for, per GPU family; the planner stays under it.
    gpu_quota: dict[str, int] = Field(default_factory=dict)


class Schedule(BaseModel):
    """A cron schedule that starts a client's job workflow."""

    model_config = _STRICT

    job: str
    cron: str
    time_zone: str = "Etc/UTC"
    input_prefix: str = ""

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday); got {v!r}")
        return v


def _default_formats() -> list[InputFormat]:
    return ["jsonl"]


class ClientSettings(BaseModel):
    """One client of the platform: who may upload, which jobs run on their uploads."""

    model_config = _STRICT

    name: str
    jobs: list[str]
    principal: str | None = None
    contact: str | None = None
    upload_formats: list[InputFormat] = Field(default_factory=_default_formats)
    schedules: list[Schedule] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_fits_ids(cls, v: str) -> str:
        if not CLIENT_NAME_RE.match(v):
            raise ValueError(
                "client name must be 3-23 chars of lowercase letters, digits and hyphens, "
                f"starting with a letter (it becomes a service account id and a prefix); got {v!r}"
            )
        return v

    @field_validator("principal")
    @classmethod
    def _principal_form(cls, v: str | None) -> str | None:
        if v is not None and not PRINCIPAL_RE.match(v):
            raise ValueError(f"principal must look like 'group:team@example.com'; got {v!r}")
        return v


class EnvironmentSettings(BaseModel):
    """Everything that differs between environments; one PlatformStack is built from one."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True
    )

    name: str
    project_id: str
    region: str
    zones: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    state_bucket: str
    state_prefix: str
    cmek: bool = False
    billing_account: str | None = None
    monthly_budget_usd: Annotated[float, Field(gt=0)] = 1000.0
    quota_contact_email: str
    clients: list[ClientSettings] = Field(default_factory=list)
    jobs: list[JobSpec] = Field(default_factory=list)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    # Noncurrent object versions are kept this long; outputs move to colder storage after.
    noncurrent_version_days: Annotated[int, Field(gt=0)] = 30
    coldline_after_days: Annotated[int, Field(gt=0)] = 90
    soft_delete_days: Annotated[int, Field(ge=7, le=90)] = 7
    registry_keep_versions: Annotated[int, Field(gt=0)] = 10
    registry_untagged_days: Annotated[int, Field(gt=0)] = 14

    @field_validator("name")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.match(r"^[a-z][a-z0-9]{1,9}$", v):
            raise ValueError(f"name must be 2-10 lowercase letters/digits; got {v!r}")
        return v

    @field_validator("project_id")
    @classmethod
    def _project_id(cls, v: str) -> str:
        if not PROJECT_ID_RE.match(v):
            raise ValueError(
                "project_id must be 6-30 chars: lowercase letters, digits, hyphens, "
                f"starting with a letter and not ending with a hyphen; got {v!r}"
            )
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not REGION_RE.match(v):
            raise ValueError(f"region must look like 'europe-west4'; got {v!r}")
        return v

    @field_validator("quota_contact_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL_RE.match(v):
            raise ValueError(f"quota_contact_email must be an email address; got {v!r}")
        return v

    @field_validator("billing_account")
    @classmethod
    def _billing(cls, v: str | None) -> str | None:
        if v is not None and not BILLING_ACCOUNT_RE.match(v):
            raise ValueError(f"billing_account must look like '012345-6789AB-CDEF01'; got {v!r}")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(value):
                raise ValueError(
                    f"labels: {key}={value!r} is not a valid GCP label "
                    "(lowercase letters, digits, '_' and '-', at most 63 chars)"
                )
        return v

    @model_validator(mode="after")
    def _zones_in_region(self) -> EnvironmentSettings:
        for zone in self.zones:
            if not zone.startswith(self.region + "-"):
                raise ValueError(f"zones: {zone!r} is not in region {self.region!r}")
        return self

    # Derived names: one place, so stacks, jobs, checks and the submit helper agree.
    @property
    def stack_name(self) -> str:
        return f"platform-{self.name}"

    @property
    def data_bucket(self) -> str:
        return f"{self.project_id}-batch-data"

    @property
    def log_bucket(self) -> str:
        return f"{self.project_id}-batch-logs"

    @property
    def registry_repo(self) -> str:
        return "batch-images"

    @property
    def registry_host(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project_id}/{self.registry_repo}"

    # Tenancy v2 (docs/contracts.md "Tenancy v2"): one bucket and one run-time identity per
    # client. Every module that needs a client's bucket, prefixes or identities asks here.
    def client_bucket(self, client: str) -> str:
        return f"{self.project_id}-{client}"

    def client_sa_id(self, client: str) -> str:
        """The identity a client uploads inputs and reads outputs with."""
        return f"client-{client}"

    def client_sa_email(self, client: str) -> str:
        return f"{self.client_sa_id(client)}@{self.project_id}.iam.gserviceaccount.com"

    def run_sa_id(self, client: str) -> str:
        """The identity every task of every job of this client runs as."""
        return f"run-{client}"

    def run_sa_email(self, client: str) -> str:
        return f"{self.run_sa_id(client)}@{self.project_id}.iam.gserviceaccount.com"

    @property
    def operator_sa_email(self) -> str:
        """The identity `bin/submit` acts as locally (operators' grants come from the stack)."""
        return f"operator@{self.project_id}.iam.gserviceaccount.com"

    def job_sa_id(self, job: str) -> str:
        # Service account ids are 6-30 chars; BatchJob validates that "job-<name>" fits.
        return f"job-{job}"

    def job_sa_email(self, job: str) -> str:
        return f"{self.job_sa_id(job)}@{self.project_id}.iam.gserviceaccount.com"

    def all_labels(self) -> dict[str, str]:
        return {"env": self.name, "managed-by": "gpu-batch-platform", **self.labels}

    def job(self, name: str) -> JobSpec:
        for spec in self.jobs:
            if spec.name == name:
                return spec
        known = ", ".join(sorted(j.name for j in self.jobs)) or "none"
        raise KeyError(
            f"job {name!r} is not declared in environment {self.name!r} (known: {known})"
        )

    def render_context(self, job: str) -> RenderContext:
        return RenderContext(
            env_name=self.name,
            project_id=self.project_id,
            region=self.region,
            registry_host=self.registry_host,
            job_service_account_email=self.job_sa_email(job),
        )
