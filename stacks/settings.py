"""Typed settings for one environment (dev, prod, ...): everything a platform stack needs.

Pure pydantic: no provider import, so the submit helper and the policy checks can read the same
settings the stacks are built from.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs import JobSpec, RenderContext
from jobs.spec import REGION_RE, EnvKind
from stacks.client_settings import (  # noqa: F401  (re-exported)
    RESERVED_LABEL_KEYS,
    ClientSettings,
    InputFormat,
    Schedule,
)
from stacks.layout import (
    ADHOC_SA_ID,
    CLIENTS_PROJECT_SUFFIX,
    UPLOADS_TOPIC,
    TenancyLayout,
)
from stacks.names import (  # noqa: F401  (re-exported: callers import them from here)
    CLIENT_NAME_MAX,
    CLIENT_NAME_RE,
    RESERVED_CLIENT_NAMES,
    RESERVED_CLIENT_PREFIXES,
    SA_ID_MAX,
    SA_ID_MIN,
    SA_ID_RE,
    check_client_name,
    check_service_account_id,
)
from stacks.observability_settings import Observability
from stacks.shards import ClientShards, check_shards
from stacks.validation import (
    EMAIL_RE,  # noqa: F401  (re-exported: the one address pattern)
    check_email,
    check_labels,
)

# GCP project ids: 6-30 chars, lowercase letter first, no trailing hyphen.
PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
BILLING_ACCOUNT_RE = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")


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
    # Job-rule warnings (policies/job_rules.py) fail `bin/check` for this environment, as
    # `bin/check --strict` does for all; errors always fail, warnings always print.
    warnings_fail_check: bool = False


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
    # Costs, budgets, alerts and the dashboard (stacks/observability_settings.py).
    observability: Observability = Field(default_factory=Observability)
    # Cloud Scheduler jobs per region: 1,000 by default, 5,000 at most on request
    # (cloud.google.com/scheduler/quotas); CKV_GPUB_DEP_4 counts the stack's schedules.
    scheduler_jobs_quota: Annotated[int, Field(gt=0, le=5000)] = 1000
    # The project of the client identities (docs/clients.md "Client identities outside the
    # platform project"); None: `<project_id>-clients`. Made by `bin/bootstrap`.
    client_identity_project: str | None = None
    # Cloud NAT for the task VMs (they never have external IPs): drivers and images from
    # outside Google need it; Google APIs are reached through Private Google Access.
    task_nat: bool = True
    # Clients over several stacks and states (stacks/shards.py, docs/clients.md "Shards").
    client_shards: ClientShards = Field(default_factory=ClientShards)

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
        check_email("quota_contact_email", v)
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
        check_labels("labels", v, reserved=("env", "managed-by"))
        return v

    @model_validator(mode="after")
    def _client_labels_fit(self) -> EnvironmentSettings:
        for client in self.clients:
            merged = {**self.all_labels(), **client.labels, "client": client.name}
            check_labels(f"clients.{client.name}.labels", merged)
        return self

    @model_validator(mode="after")
    def _clients_project(self) -> EnvironmentSettings:
        if not PROJECT_ID_RE.match(self.clients_project) or self.clients_project == (
                self.project_id):
            raise ValueError(
                f"client_identity_project: {self.clients_project!r} must be a project id "
                "(6-30 chars) other than project_id; set it when the default "
                f"'<project_id>{CLIENTS_PROJECT_SUFFIX}' does not fit")
        return self

    @model_validator(mode="after")
    def _shards_fit(self) -> EnvironmentSettings:
        check_shards([(c.name, c.shard) for c in self.clients], self.client_shards)
        return self

    @model_validator(mode="after")
    def _zones_in_region(self) -> EnvironmentSettings:
        for zone in self.zones:
            if not zone.startswith(self.region + "-"):
                raise ValueError(f"zones: {zone!r} is not in region {self.region!r}")
        return self

    # Derived names: stacks/layout.py is their one home; these delegate to it.
    @property
    def layout(self) -> TenancyLayout:
        return TenancyLayout(self.project_id, self.clients_project)

    @property
    def clients_project(self) -> str:
        """Where the client identities live: never the platform project."""
        return self.client_identity_project or f"{self.project_id}{CLIENTS_PROJECT_SUFFIX}"

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

    # GPU demand: ONE computation (stacks/gpu_demand.py, ladders included), read by the quota
    # preferences, the submit planner (`gpu_limit`) and the project-wide total.
    def gpu_demand(self) -> dict[tuple[str, str, bool], int]:
        """(region, GPU family, spot) -> GPUs the environment holds quota for."""
        from stacks.gpu_demand import environment_demand

        return environment_demand(self)

    def gpu_limit(self, family: str) -> int | None:
        """GPUs of `family` one run may hold at once (the planner's cap); None: no demand."""
        values = [n for (_, fam, _), n in self.gpu_demand().items() if fam == family]
        if not values:
            return self.guardrails.gpu_quota.get(family)
        return max(values)

    def gpus_all_regions(self) -> int:
        """The project-wide `GPUS-ALL-REGIONS-per-project` demand: every GPU VM counts."""
        from stacks.gpu_demand import environment_demand

        return sum(environment_demand(self, ladders=False).values())

    @property
    def task_regions(self) -> list[str]:
        """Regions with a task subnet (stacks/network.py): the home region and the allowed."""
        return list(dict.fromkeys([self.region, *self.guardrails.allowed_regions]))

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
            network=self.layout.task_network,
            subnetworks={r: self.layout.task_subnetwork(r) for r in self.task_regions},
        )
