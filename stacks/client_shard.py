"""ClientShardStack: the clients of one shard of an environment, in a stack and state of their
own (stacks/shards.py, docs/clients.md "Shards").

The platform's values cross as literal names that stacks/layout.py derives from the settings
(identities, intake topics, the key, the log bucket, secret ids), not as Terraform
references: a shard never reads the platform's state for them, and the platform never lists a
shard's clients (the job workflows read the client from the bucket name). The one exception is
the environment's alert channels, whose ids Cloud Monitoring assigns: the shard reads them with
a `google_monitoring_notification_channel` data source each, found by display name.

Order: the shard depends on the platform stack (`cdktn deploy` applies the platform first), so
every API enablement, service agent, key grant and propagation barrier the shard's resources
need exists before its apply starts; `policies/fresh_project.py` checks a shard with its
platform stack's graph as an earlier apply. Pure CDK: built by `PlatformStack`.
"""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from stacks.budget import billing_provider
from stacks.client_resources import ClientResources
from stacks.kms import key_path
from stacks.monitoring import env_channel_name
from stacks.props import (
    Billing,
    ClientResourceProps,
    Encryption,
    JobLink,
    PlatformIdentities,
)
from stacks.provider import (
    DataGoogleMonitoringNotificationChannel,
    DataGoogleProject,
    GcsBackend,
    GoogleProvider,
    TerraformLocal,
    TerraformStack,
)
from stacks.settings import EnvironmentSettings
from stacks.shards import shard_stack_name, shard_state_prefix

# A local every shard stack declares: which platform stack it follows and its index. The
# checks (fresh project, limits) read it to join a shard to its platform.
SHARD_LOCAL = "gpub_client_shard"


@dataclass(frozen=True)
class ClientHome:
    """Where a client's resources go: the platform stack's or a shard stack's."""

    resources: ClientResources
    identities: PlatformIdentities
    literal: bool  # a shard: the platform's values by name (`literal_job`)


def literal_identities(settings: EnvironmentSettings) -> PlatformIdentities:
    """The platform's accounts by name (emails follow from the account ids)."""
    lay = settings.layout
    workflow = lay.workflow_sa_email
    return PlatformIdentities(
        workflow_sa_id=f"projects/{settings.project_id}/serviceAccounts/{workflow}",
        workflow_member=f"serviceAccount:{workflow}",
        trigger_email="",  # triggers live in the platform stack
        scheduler_email=lay.scheduler_sa_email,
        operator_member=f"serviceAccount:{lay.operator_sa_email}",
    )


def literal_job(link: JobLink, settings: EnvironmentSettings) -> JobLink:
    """A job as a shard names it: its intake topic's full name instead of a reference."""
    lay = settings.layout
    return JobLink(spec=link.spec, intake_topic=lay.topic_path(lay.intake_topic(link.spec.name)),
                   secrets=link.secrets, notification_topics=link.notification_topics)


class ClientShardStack(TerraformStack):
    """Shard `index` of an environment: the `for_each` resources, channels and budgets of the
    clients assigned to it (`home`, which `PlatformStack` onboards them into)."""

    def __init__(self, scope: Construct, settings: EnvironmentSettings, index: int) -> None:
        super().__init__(scope, shard_stack_name(settings.stack_name, index))
        self.settings = settings
        self.index = index
        GcsBackend(self, bucket=settings.state_bucket,
                   prefix=shard_state_prefix(settings.state_prefix, index))
        provider = GoogleProvider(self, "google", project=settings.project_id,
                                  region=settings.region)
        provider.add_override("default_labels", settings.all_labels())
        TerraformLocal(self, SHARD_LOCAL, {"platform": settings.stack_name, "index": index})
        identities = literal_identities(settings)
        resources = ClientResources(ClientResourceProps(
            scope=self,
            settings=settings,
            apis=[],
            encryption=Encryption(key_path(settings) if settings.cmek else None),
            identities=identities,
            log_bucket_name=settings.log_bucket,
            notifications_after=list,
            schedules_after=list,
            secrets_after=list,
            billing=self._billing(),
        ))
        self.home = ClientHome(resources, identities, literal=True)

    def _billing(self) -> Billing | None:
        """The budgets' provider and project, and the platform's alert channels found by
        their display names (the platform stack, applied first, made them). Cloud Monitoring
        does not enforce unique display names ("It is recommended that you specify a non-empty
        and unique name ... though this is not enforced", cloud.google.com/monitoring/api/
        ref_v3/rest/v3/projects.notificationChannels), and the provider's data source needs
        exactly one match (registry.terraform.io/providers/hashicorp/google/latest/docs/
        data-sources/monitoring_notification_channel): ours name the environment and the
        email, so a channel made by hand with the same name would stop a shard's apply."""
        settings = self.settings
        if settings.billing_account is None:
            return None
        project = DataGoogleProject(self, "project", project_id=settings.project_id)
        refs = []
        for i, email in enumerate(settings.observability.alert_emails):
            channel = DataGoogleMonitoringNotificationChannel(
                self, f"env-channel-{i}", project=settings.project_id, type="email",
                display_name=env_channel_name(settings, email))
            refs.append(f"${{data.{channel.terraform_resource_type}."
                        f"{channel.friendly_unique_id}.name}}")
        return Billing(billing_provider(self, settings), project.number, refs)
