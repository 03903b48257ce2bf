"""The narrow, typed props the platform hands its per-job and per-client constructs.

As AWS CDK's aws-batch constructs take what they need as props (a compute environment takes a
VPC, a job definition takes a role), never the stack that holds them, `BatchJob` and
`ClientResources` get these small frozen values from `PlatformStack`, so no construct imports
the stack and the stack is the only module that knows them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from constructs import Construct

from jobs import JobSpec
from stacks.provider import (
    GoogleProvider,
    KmsCryptoKeyIamMember,
    PubsubTopic,
    SecretManagerSecret,
    TerraformResource,
)
from stacks.settings import EnvironmentSettings


class SecretStore(Protocol):
    """Where a job's secret containers are declared (once per id, whoever asks first)."""

    def secret(self, secret_id: str) -> SecretManagerSecret: ...

    @property
    def secrets(self) -> dict[str, SecretManagerSecret]: ...


@dataclass(frozen=True)
class Encryption:
    """The environment's CMEK key, and the key grant each service agent holds (empty: no CMEK)."""

    key: str | None = None
    grants: Mapping[str, KmsCryptoKeyIamMember] = field(default_factory=dict)
    ready: TerraformResource | None = None  # the barrier after the grants (stacks/agents.py)

    def after(self, service: str) -> list[TerraformResource]:
        """What a resource of `service` encrypted with the key must wait for ([] without CMEK):
        the agent's grant and its propagation barrier, or the first write is refused."""
        if service not in self.grants:
            return []
        return [self.grants[service], *([self.ready] if self.ready is not None else [])]


@dataclass(frozen=True)
class PlatformIdentities:
    """The platform's own service accounts, as Terraform references."""

    workflow_sa_id: str  # the job workflows run as this account
    workflow_member: str
    trigger_email: str  # Eventarc upload triggers
    scheduler_email: str  # Cloud Scheduler (client schedules)
    operator_member: str  # bin/submit


@dataclass(frozen=True)
class Uploads:
    """The ONE topic every client bucket notifies of new inputs, and its publisher grant."""

    topic: PubsubTopic
    topic_id: str
    # What notifications wait for: the barrier after the storage agent's publisher grant.
    publisher: TerraformResource
    agent_member: str  # the Cloud Storage service agent, which publishes notifications


@dataclass(frozen=True)
class JobProps:
    """What one declared job's dispatcher (stacks/batch_job.py) needs."""

    settings: EnvironmentSettings
    # The APIs and what a workflow must wait for (the deployer's act-as barrier).
    apis: Sequence[TerraformResource]
    encryption: Encryption
    identities: PlatformIdentities
    uploads: Uploads
    # The trigger account's roles and the barrier after them: triggers wait for all.
    trigger_grants: Sequence[TerraformResource]
    secrets: SecretStore


@dataclass(frozen=True)
class ClientResourceProps:
    """What the shared `for_each` client resources (stacks/client_resources.py) need.

    In the platform stack the dependencies are the platform's own resources; in a client shard
    stack (stacks/client_shard.py) they are empty, because the platform stack, applied first
    (a stack dependency), already holds every API, grant and barrier, and the identities and
    the key are literal names.
    """

    scope: Construct  # the stack: the resources' construct ids are their state addresses
    settings: EnvironmentSettings
    apis: Sequence[TerraformResource]
    encryption: Encryption
    identities: PlatformIdentities
    log_bucket_name: str
    # What the notifications wait for: the barriers after the storage agent's publisher
    # grants on the intake topics.
    # Each is read when the role's resource is made (its first entry).
    notifications_after: Callable[[], list[TerraformResource]]
    # What schedules wait for: the job workflows, the scheduler's invoker grant.
    schedules_after: Callable[[], list[TerraformResource]]
    secrets_after: Callable[[], list[TerraformResource]]  # the job secrets' containers
    billing: Billing | None = None  # the client budgets' (None: no billing account)


@dataclass(frozen=True)
class Billing:
    """What the client budgets need: the budgets' provider, the project they filter on, and
    the environment's alert channels (Terraform references) each budget also notifies."""

    provider: GoogleProvider
    project_number: str
    env_channels: Sequence[str]


@dataclass(frozen=True)
class JobLink:
    """What a client's entries need of one job (stacks/client.py): Terraform references in
    the platform stack, literal names in a client shard stack."""

    spec: JobSpec
    intake_topic: str  # the topic the client's marker notifications publish to
    secrets: tuple[str, ...]  # secret ids the job's tasks read
    notification_topics: tuple[str, ...]  # topics of this project the job's tasks publish to

