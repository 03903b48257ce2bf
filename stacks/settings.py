"""Typed settings for one environment (dev, prod, ...): everything a platform stack needs.

Pure pydantic: no provider import, so the submit helper and the policy checks can read the same
settings the stacks are built from.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs import JobSpec, RenderContext
from jobs.spec import LABEL_KEY_RE, LABEL_VALUE_RE, REGION_RE, EnvKind
from stacks.layout import ADHOC_SA_ID, CLIENT_SA_PREFIX, RUN_SA_PREFIX, UPLOADS_TOPIC, TenancyLayout

# GCP project ids: 6-30 chars, lowercase letter first, no trailing hyphen.
PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Service account ids: "6-30 characters long, and match the regular expression
# [a-z]([-a-z0-9]*[a-z0-9])" (cloud.google.com/iam/reference/rest/v1/projects.serviceAccounts/
# create). The one home of this limit: stacks/identity.py and the client checks use it.
SA_ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SA_ID_MIN, SA_ID_MAX = 6, 30
# Client names become service account ids (client-<name>, run-<name>) and bucket names
# (<project>-<name>). No "--": names built as `<client>--<job>` then split one way only.
CLIENT_NAME_MAX = SA_ID_MAX - len(CLIENT_SA_PREFIX)
CLIENT_NAME_RE = re.compile(rf"^[a-z](?!.*--)[a-z0-9-]{{1,{CLIENT_NAME_MAX - 2}}}[a-z0-9]$")
# Names the platform itself uses next to client names: its own buckets (`<project>-batch-data`,
# `<project>-batch-logs`), its service accounts (`batch-*`), the data bucket's ad-hoc prefix
# (`jobs/`) and the folders of a client bucket. A client may not take them.
RESERVED_CLIENT_NAMES = frozenset(
    {"jobs", "inputs", "outputs", "batch", "operator", "adhoc", "platform", "uploads", "run"}
)
RESERVED_CLIENT_PREFIXES = ("batch-", "goog", "gcp-", RUN_SA_PREFIX, CLIENT_SA_PREFIX)
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


def check_service_account_id(account_id: str) -> None:
    """Raise ValueError (one line) for an id IAM would refuse."""
    if not SA_ID_MIN <= len(account_id) <= SA_ID_MAX or not SA_ID_RE.match(account_id):
        raise ValueError(
            f"service account id {account_id!r} must be {SA_ID_MIN}-{SA_ID_MAX} characters of "
            f"lowercase letters, digits and '-', starting with a letter and not ending with "
            f"'-' (got {len(account_id)})"
        )


def check_client_name(name: str) -> None:
    """Raise ValueError (one line naming what is allowed) for a name no client may have."""
    if not CLIENT_NAME_RE.match(name):
        raise ValueError(
            f"client name must be 3-{CLIENT_NAME_MAX} chars of lowercase letters, digits and "
            "single hyphens, "
            "starting with a letter and ending with a letter or digit (it becomes service "
            f"account ids and a bucket name); got {name!r}"
        )
    # Bucket names may not contain "google" (cloud.google.com/storage/docs/buckets#naming).
    if (
        name in RESERVED_CLIENT_NAMES
        or name.startswith(RESERVED_CLIENT_PREFIXES)
        or "google" in name
    ):
        raise ValueError(
            f"client name {name!r} is reserved by the platform (reserved: "
            f"{', '.join(sorted(RESERVED_CLIENT_NAMES))}; prefixes "
            f"{', '.join(RESERVED_CLIENT_PREFIXES)}; anything containing 'google')"
        )


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
        check_client_name(v)
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
    # `dev` or `prod`, stated by the user (environments.yaml), never read from the name: GPU
    # jobs default to Spot in dev; prod-only policy rules apply in prod.
    kind: EnvKind
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
    # Service accounts the project may hold: 100 by default, raised on request (console or
    # support; cloud.google.com/iam/docs/service-accounts-create). The stack needs 2 per
    # client + 4; `bin/check` (CKV_GPUB_LIM_10) names the number to ask for.
    service_account_quota: Annotated[int, Field(gt=0)] = 100

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

    # Derived names: stacks/layout.py is their one home; these delegate to it.
    @property
    def layout(self) -> TenancyLayout:
        return TenancyLayout(self.project_id)

    @property
    def stack_name(self) -> str:
        return f"platform-{self.name}"

    @property
    def data_bucket(self) -> str:
        return self.layout.data_bucket

    @property
    def log_bucket(self) -> str:
        return self.layout.log_bucket

    @property
    def registry_repo(self) -> str:
        return "batch-images"

    @property
    def registry_host(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project_id}/{self.registry_repo}"

    # Tenancy v2 (docs/contracts.md "Tenancy v2"): one bucket and one run-time identity per
    # client. Every module that needs a client's bucket, prefixes or identities asks here.
    def client_bucket(self, client: str) -> str:
        return self.layout.client_bucket(client)

    def client_sa_id(self, client: str) -> str:
        """The identity a client uploads inputs and reads outputs with."""
        return self.layout.client_sa_id(client)

    def client_sa_email(self, client: str) -> str:
        return self.layout.client_sa_email(client)

    def run_sa_id(self, client: str) -> str:
        """The identity every task of every job of this client runs as."""
        return self.layout.run_sa_id(client)

    def run_sa_email(self, client: str) -> str:
        return self.layout.run_sa_email(client)

    @property
    def operator_sa_email(self) -> str:
        """The identity `bin/submit` acts as locally (operators' grants come from the stack)."""
        return self.layout.operator_sa_email

    def results_topic(self, client: str) -> str:
        """The client's results topic id (outcomes of every run of the client's jobs)."""
        return self.layout.results_topic(client)

    @property
    def uploads_topic(self) -> str:
        """The one topic every client bucket notifies of new objects under `inputs/`."""
        return UPLOADS_TOPIC

    def job_workflow(self, job: str) -> str:
        """The job's dispatcher workflow (one per job, all clients)."""
        return self.layout.job_workflow(job)

    def schedule_name(self, client: str, job: str, index: int) -> str:
        return self.layout.schedule_name(client, job, index)

    @property
    def adhoc_sa_id(self) -> str:
        """Operators' ad-hoc runs on the data bucket (`jobs/<job>/`) run as this identity."""
        return ADHOC_SA_ID

    @property
    def adhoc_sa_email(self) -> str:
        return self.layout.adhoc_sa_email

    # GPU demand: ONE computation, read by the quota preferences, the guardrails and the
    # submit planner, so the three never disagree.
    def gpu_demand(self) -> dict[tuple[str, str, bool], int]:
        """(region, GPU family, spot) -> GPUs the environment holds quota for: the sum of its
        jobs' peak demand, raised to the guardrail's `gpu_quota` for that family."""
        totals: dict[tuple[str, str, bool], int] = {}
        for spec in self.jobs:
            demand = spec.peak_gpu_demand(self.kind)
            if demand is None:
                continue
            family, count, spot = demand.family, demand.count, demand.spot
            key = (spec.region or self.region, family, spot)
            totals[key] = totals.get(key, 0) + count
        return {
            key: max(count, self.guardrails.gpu_quota.get(key[1], 0))
            for key, count in totals.items()
        }

    def gpu_limit(self, family: str) -> int | None:
        """GPUs of `family` one run may hold at once (the planner's cap); None: no demand."""
        values = [n for (_, fam, _), n in self.gpu_demand().items() if fam == family]
        if not values:
            return self.guardrails.gpu_quota.get(family)
        return max(values)

    def gpus_all_regions(self) -> int:
        """The project-wide `GPUS-ALL-REGIONS-per-project` demand: every GPU VM counts."""
        return sum(self.gpu_demand().values())

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

    def render_context(self, job: str, client: str | None = None) -> RenderContext:
        """Rendered for `client` the job runs as `run-<client>`; else as the ad-hoc identity
        (the job workflows replace it with the client's run identity at run time)."""
        return RenderContext(
            env_name=self.name,
            env_kind=self.kind,
            project_id=self.project_id,
            region=self.region,
            registry_host=self.registry_host,
            job_service_account_email=(
                self.run_sa_email(client) if client is not None else self.adhoc_sa_email
            ),
        )
