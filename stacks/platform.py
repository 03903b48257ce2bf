"""PlatformStack: everything one environment needs, built from its EnvironmentSettings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from constructs import Construct

from stacks.budget import ProjectBudget
from stacks.client import ClientOnboarding, ClientResources
from stacks.identity import project_role, sa_member, service_account
from stacks.kms import DataKey, service_agent
from stacks.provider import (
    DataGoogleProject,
    DataGoogleStorageProjectServiceAccount,
    GcsBackend,
    GoogleProvider,
    ProjectIamAuditConfig,
    ProjectIamAuditConfigAuditLogConfig,
    SecretManagerSecret,
    SecretManagerSecretReplication,
    SecretManagerSecretReplicationUserManaged,
    SecretManagerSecretReplicationUserManagedReplicas,
    ServiceAccount,
    TerraformStack,
)
from stacks.quotas import GpuQuotas
from stacks.registry import ImageRegistry
from stacks.services import ProjectApis
from stacks.settings import ClientSettings, EnvironmentSettings
from stacks.storage import PlatformBuckets

if TYPE_CHECKING:
    from jobs import JobSpec
    from stacks.batch_job import BatchJob


class PlatformStack(TerraformStack):
    """One environment: APIs, buckets, KMS, registry, identities, audit logs, quotas, budget.

    Jobs and clients declared in the settings are added at construction; more can be added
    with `add_job` and `onboard_client` before synth.
    """

    def __init__(self, scope: Construct, settings: EnvironmentSettings) -> None:
        super().__init__(scope, settings.stack_name)
        self.settings = settings
        GcsBackend(self, bucket=settings.state_bucket, prefix=settings.state_prefix)
        provider = GoogleProvider(
            self, "google", project=settings.project_id, region=settings.region
        )
        # Set through an override: the provider binding rewrites map keys of default_labels
        # to snake_case ("cost-center" -> "cost_center"); an override keeps them verbatim.
        provider.add_override("default_labels", settings.all_labels())
        self.project = DataGoogleProject(self, "project", project_id=settings.project_id)
        self.apis = ProjectApis(self, "apis", settings)
        api_deps = self.apis.all()

        self.kms: DataKey | None = None
        if settings.cmek:
            gcs_agent = DataGoogleStorageProjectServiceAccount(
                self, "gcs-agent", project=settings.project_id
            )
            number = self.project.number
            self.kms = DataKey(
                self,
                "kms",
                settings,
                agents={
                    "gcs": gcs_agent.email_address,
                    "artifactregistry": service_agent("artifactregistry", number),
                    "pubsub": service_agent("pubsub", number),
                    "workflows": service_agent("workflows", number),
                },
                depends_on=api_deps,
            )
        kms_key = self.kms.key_id if self.kms else None
        self._kms_key = kms_key  # read once: property reads are jsii round trips
        key_grants = list(self.kms.grants.values()) if self.kms else []

        self.buckets = PlatformBuckets(
            self, "buckets", settings, kms_key=kms_key, depends_on=[*api_deps, *key_grants]
        )
        self.registry = ImageRegistry(
            self, "registry", settings, kms_key=kms_key, depends_on=[*api_deps, *key_grants]
        )
        self.workflow_sa = service_account(
            self,
            "workflow-sa",
            settings.project_id,
            "batch-workflows",
            "Runs the job workflows: creates Batch jobs and publishes results",
        )
        self.trigger_sa = service_account(
            self,
            "trigger-sa",
            settings.project_id,
            "batch-trigger",
            "Eventarc upload triggers: receives events and starts workflows",
        )
        # Read once (jsii round trips): every client workflow and trigger names them.
        self.workflow_sa_id: str = self.workflow_sa.id
        self.trigger_sa_email: str = self.trigger_sa.email
        self.workflow_sa_member: str = sa_member(self.workflow_sa)
        for role in ("roles/batch.jobsEditor", "roles/logging.logWriter"):
            project_role(
                self,
                f"workflow-{role.split('/')[1]}",
                settings.project_id,
                role,
                sa_member(self.workflow_sa),
            )
        for role in ("roles/eventarc.eventReceiver", "roles/workflows.invoker"):
            project_role(
                self,
                f"trigger-{role.split('/')[1]}",
                settings.project_id,
                role,
                sa_member(self.trigger_sa),
            )
        # Prefix-filtered upload triggers read storage DATA_WRITE audit logs.
        ProjectIamAuditConfig(
            self,
            "storage-audit",
            project=settings.project_id,
            service="storage.googleapis.com",
            audit_log_config=[ProjectIamAuditConfigAuditLogConfig(log_type="DATA_WRITE")],
        )
        self.quotas = GpuQuotas(self, "gpu-quotas", settings, depends_on=api_deps)
        if settings.billing_account is not None:
            ProjectBudget(self, "budget", settings, self.project.number)

        self._secrets: dict[str, SecretManagerSecret] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.clients: dict[str, ClientOnboarding] = {}
        # Every client's resources: for_each resources keyed by client (see stacks/client.py).
        self.client_resources = ClientResources(self)
        for spec in settings.jobs:
            self.add_job(spec)
        for client in settings.clients:
            self.onboard_client(client)

    @property
    def kms_key(self) -> str | None:
        return self._kms_key

    @property
    def project_number(self) -> str:
        return self.project.number

    def add_job(self, spec: JobSpec) -> BatchJob:
        from stacks.batch_job import BatchJob

        if spec.name in self.jobs:
            raise ValueError(f"jobs: {spec.name!r} is declared twice in {self.settings.stack_name}")
        job = BatchJob(self, spec)
        self.jobs[spec.name] = job
        return job

    def onboard_client(self, client: ClientSettings) -> ClientOnboarding:
        return ClientOnboarding(self, client)

    def secret(self, secret_id: str) -> SecretManagerSecret:
        """A Secret Manager secret container (declared once per id; no value in Terraform)."""
        if secret_id not in self._secrets:
            self._secrets[secret_id] = SecretManagerSecret(
                self,
                f"secret-{secret_id}",
                project=self.settings.project_id,
                secret_id=secret_id,
                replication=SecretManagerSecretReplication(
                    user_managed=SecretManagerSecretReplicationUserManaged(
                        replicas=[
                            SecretManagerSecretReplicationUserManagedReplicas(
                                location=self.settings.region
                            )
                        ]
                    )
                ),
                labels=self.settings.all_labels(),
                depends_on=self.apis.all(),
            )
        return self._secrets[secret_id]

    def service_accounts(self) -> list[ServiceAccount]:
        return [self.workflow_sa, self.trigger_sa]
