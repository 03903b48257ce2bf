"""PlatformStack: everything one environment needs, built from its EnvironmentSettings."""

from __future__ import annotations

from constructs import Construct

from jobs import JobSpec
from stacks.agents import IAM_PROPAGATION, ServiceAgents
from stacks.batch_job import BatchJob
from stacks.billing_view import BillingView
from stacks.budget import ProjectBudget
from stacks.client import ClientOnboarding, ClientProps
from stacks.client_resources import ClientResources
from stacks.client_shard import ClientHome, ClientShardStack, literal_job
from stacks.identity import project_role, service_account
from stacks.kms import DataKey
from stacks.layout import (
    OPERATOR_SA_ID,
    RUN_SA_PREFIX,
    SCHEDULER_SA_ID,
    TRIGGER_SA_ID,
    WORKFLOW_SA_ID,
)
from stacks.monitoring import Monitoring, NotificationChannels
from stacks.network import TaskNetwork
from stacks.platform_grants import (
    adhoc_grants,
    deployer_acts_as,
    intake_dead_letter,
    sa_member_ref,
    secret_container,
)
from stacks.props import (
    Billing,
    ClientResourceProps,
    Encryption,
    JobProps,
    PlatformIdentities,
    Uploads,
)
from stacks.provider import (
    DataGoogleProject,
    GcsBackend,
    GoogleProvider,
    ProjectIamAuditConfig,
    ProjectIamAuditConfigAuditLogConfig,
    PubsubTopic,
    PubsubTopicIamMember,
    SecretManagerSecret,
    ServiceAccount,
    TerraformLocal,
    TerraformStack,
    WorkflowsWorkflow,
    barrier,
    google_beta_provider,
    time_provider,
    wait_for,
)
from stacks.quotas import GpuQuotas
from stacks.registry import ImageRegistry
from stacks.services import NO_API, ProjectApis
from stacks.settings import ClientSettings, EnvironmentSettings
from stacks.shards import shard_of
from stacks.storage import PlatformBuckets

# Platform service accounts get fixed Terraform names, so the client tables (plain data
# written after synth, stacks/deferred.py) can refer to them.
WORKFLOW_SA = WORKFLOW_SA_ID
TRIGGER_SA = TRIGGER_SA_ID
SCHEDULER_SA = SCHEDULER_SA_ID
OPERATOR_SA = OPERATOR_SA_ID  # settings.operator_sa_email
# Roles every run identity needs that exist only at project level (Batch agent reporting,
# Cloud Logging). Granted once to the principal set of the project's service accounts
# (cloud.google.com/iam/docs/principal-identifiers: "All service accounts in a project"),
# not once per client: the project policy would pass 1,500 members at ~700 clients
# (cloud.google.com/iam/quotas).
RUN_PROJECT_ROLES = ("roles/batch.agentReporter", "roles/logging.logWriter")


class PlatformStack(TerraformStack):
    """One environment: APIs, buckets, KMS, registry, identities, audit logs, quotas, budget.

    Jobs and clients declared in the settings are added at construction; more can be added
    with `add_job` and `onboard_client` before synth.
    """

    def __init__(self, scope: Construct, settings: EnvironmentSettings) -> None:
        super().__init__(scope, settings.stack_name)
        self.settings = settings
        self._backend_and_apis()
        self._encryption()
        self._storage()
        self._identities()
        self._uploads()
        self._quotas_and_costs()
        self._secrets: dict[str, SecretManagerSecret] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.clients: dict[str, ClientOnboarding] = {}
        self.identities = PlatformIdentities(
            workflow_sa_id=self.workflow_sa_id,
            workflow_member=self.workflow_sa_member,
            trigger_email=self.trigger_sa_email,
            scheduler_email=self.scheduler_sa_email,
            operator_member=self.operator_member,
        )
        self.uploads = Uploads(self.uploads_topic, self.uploads_topic_id, self.uploads_ready,
                               self.agents.storage_member)
        self._moved = intake_dead_letter(self, settings, self.kms_key,
                                         [*self.apis.all(), *self.encryption.after("pubsub")],
                                         self.workflow_sa_member, self.operator_member)
        for spec in settings.jobs:
            self._add_job(spec)
        self._client_homes(scope)
        for client in settings.clients:
            self._onboard(client)

    def _backend_and_apis(self) -> None:
        """The state backend, the providers, the APIs and what every resource waits for."""
        settings = self.settings
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
        # Every resource and data source waits for the APIs' enablement and its propagation.
        wait_for(self, self.apis.ready, NO_API)
        time_provider(self)

        # The google-beta provider: service identities (agents) only.
        google_beta_provider(self, settings.project_id, settings.region)
        self.agents = ServiceAgents(self, "agents", settings, depends_on=api_deps)

    def _encryption(self) -> None:
        """CMEK: the key, its agents' grants and the barrier after them (prod)."""
        settings = self.settings
        self.kms: DataKey | None = None
        if settings.cmek:
            self.kms = DataKey(self, "kms", settings, agents=self.agents.key_users(),
                               depends_on=self.apis.all(), grants_after=[self.agents.ready])
        kms_key = self.kms.key_id if self.kms else None
        self._kms_key = kms_key  # read once: property reads are jsii round trips
        key_grants = self.kms.grants if self.kms else {}
        # CMEK resources wait for their agent's key grant and its propagation.
        keys_ready = (barrier(self, "keys-ready", list(key_grants.values()), IAM_PROPAGATION)
                      if key_grants else None)
        self.encryption = Encryption(kms_key, key_grants, keys_ready)

    def _storage(self) -> None:
        """The data and log buckets, the task network and the image registry."""
        settings = self.settings
        self.buckets = PlatformBuckets(
            self, "buckets", settings, kms_key=self.kms_key,
            depends_on=[*self.apis.all(), *self.encryption.after("gcs")],
        )
        self.log_bucket_name: str = self.buckets.log_bucket_name
        self.network = TaskNetwork(self, "network", settings)
        self.registry = ImageRegistry(
            self, "registry", settings, kms_key=self.kms_key,
            depends_on=[*self.apis.all(), *self.encryption.after("artifactregistry")],
        )

    def _identities(self) -> None:
        """The platform's accounts, their project roles and the run identities' roles."""
        settings = self.settings
        self.workflow_sa = self._platform_sa(
            WORKFLOW_SA, "Runs the job workflows: creates Batch jobs and publishes results"
        )
        self.trigger_sa = self._platform_sa(
            TRIGGER_SA, "Eventarc upload triggers: receives events and starts workflows"
        )
        self.scheduler_sa = self._platform_sa(
            SCHEDULER_SA, "Cloud Scheduler: starts the job workflows of client schedules"
        )
        self.adhoc_sa = self._platform_sa(
            settings.adhoc_sa_id, "Operators' ad-hoc runs (bin/submit) on the data bucket"
        )
        # The identity operators' bin/submit acts as (settings.operator_sa_email).
        self.operator_sa = self._platform_sa(
            OPERATOR_SA, "Operators: bin/submit runs of declared jobs for clients and ad hoc"
        )
        self.operator_member: str = sa_member_ref(OPERATOR_SA)
        # Literal references (usable in the client tables written after synth).
        self.workflow_sa_id: str = f"${{google_service_account.{WORKFLOW_SA}.id}}"
        self.trigger_sa_email: str = f"${{google_service_account.{TRIGGER_SA}.email}}"
        self.scheduler_sa_email: str = f"${{google_service_account.{SCHEDULER_SA}.email}}"
        self.workflow_sa_member: str = sa_member_ref(WORKFLOW_SA)
        for role in ("roles/batch.jobsEditor", "roles/logging.logWriter"):
            project_role(
                self, f"workflow-{role.split('/')[1]}", settings.project_id, role,
                self.workflow_sa_member,
            )
        project_role(self, "operator-batchjobsEditor", settings.project_id,
                     "roles/batch.jobsEditor", self.operator_member)
        self.trigger_grants = [
            project_role(
                self, f"trigger-{role.split('/')[1]}", settings.project_id, role,
                sa_member_ref(TRIGGER_SA),
            )
            for role in ("roles/eventarc.eventReceiver", "roles/workflows.invoker")
        ]
        # Triggers wait for their account's grants and Eventarc's agent to propagate.
        self.triggers_ready = barrier(
            self, "triggers-ready", [*self.trigger_grants, self.agents.ready], IAM_PROPAGATION
        )
        self.deployer_ready = deployer_acts_as(
            self, settings, (WORKFLOW_SA, TRIGGER_SA, SCHEDULER_SA))
        self.scheduler_invoker = project_role(
            self, "scheduler-invoker", settings.project_id, "roles/workflows.invoker",
            sa_member_ref(SCHEDULER_SA),
        )
        self.run_identities = f"principalSet://cloudresourcemanager.googleapis.com/projects/{self.project.number}/type/ServiceAccount"
        for role in RUN_PROJECT_ROLES:
            project_role(
                self, f"{RUN_SA_PREFIX}{role.split('/')[1]}", settings.project_id, role,
                self.run_identities,
            )
        # Image pull for every run identity, on this repository only.
        self.registry.grant_read("run-identities", self.run_identities)
        adhoc_grants(self, settings, self.buckets, self.operator_member)

    def _uploads(self) -> None:
        """The retired uploads topic (kept for existing notifications) and the audit logs."""
        settings = self.settings
        # Every client bucket notifies this ONE topic of new objects under inputs/; one
        # Eventarc trigger per job reads it (stacks/batch_job.py).
        self.uploads_topic = PubsubTopic(
            self,
            "uploads",
            project=settings.project_id,
            name=settings.uploads_topic,
            kms_key_name=self.kms_key,
            message_retention_duration="86400s",
            labels=settings.all_labels(),
            depends_on=[*self.apis.all(), *self.encryption.after("pubsub")],
        )
        self.uploads_topic_id: str = self.uploads_topic.id
        self.uploads_publisher = PubsubTopicIamMember(
            self,
            "uploads-publisher",
            project=settings.project_id,
            topic=self.uploads_topic.name,
            role="roles/pubsub.publisher",
            member=self.agents.storage_member,
            depends_on=[self.agents.ready],
        )
        # Notifications wait for the agent's publisher grant to propagate.
        self.uploads_ready = barrier(self, "uploads-ready", [self.uploads_publisher],
                                     IAM_PROPAGATION)
        # Storage DATA_WRITE audit logs: who wrote which object (uploads, outputs).
        ProjectIamAuditConfig(
            self,
            "storage-audit",
            project=settings.project_id,
            service="storage.googleapis.com",
            audit_log_config=[ProjectIamAuditConfigAuditLogConfig(log_type="DATA_WRITE")],
        )

    def _quotas_and_costs(self) -> None:
        """GPU quotas, declared quotas, alert channels, budgets, the cost view, monitoring."""
        settings = self.settings
        self.quotas = GpuQuotas(self, "gpu-quotas", settings, depends_on=self.apis.all())
        # Quotas Cloud Quotas cannot ask for: declared here, checked by CKV_GPUB_LIM_10.
        TerraformLocal(self, "gpub_declared_quotas",
                       {"service_accounts": settings.service_account_quota,
                        "scheduler_jobs_per_region": settings.scheduler_jobs_quota})
        # Costs and alerts: channels, per-client budgets, the cost view, monitoring.
        channels = NotificationChannels(self, "channels", settings)
        self.billing: Billing | None = None
        if settings.billing_account is not None:
            budget = ProjectBudget(self, "budget", settings, self.project.number)
            self.billing = Billing(budget.provider, self.project.number, channels.env_refs)
        if settings.observability.billing_export is not None:
            BillingView(self, "billing-view", settings, self.kms_key, depends_on=self.apis.all())
        Monitoring(self, "monitoring", settings, channels.env, depends_on=self.apis.all())

    def _client_homes(self, scope: Construct) -> None:
        """Where clients go: this stack's `for_each` resources (client_shards.count 0), or the
        shard stacks, each applied after this one (stacks/shards.py)."""
        settings = self.settings
        self.shards: list[ClientShardStack] = []
        self.home: ClientHome | None = None
        if settings.client_shards.count == 0:
            self.home = ClientHome(self._client_resources(), self.identities, literal=False)
        for index in range(settings.client_shards.count):
            shard = ClientShardStack(scope, settings, index)
            shard.add_dependency(self)
            self.shards.append(shard)

    def _client_resources(self) -> ClientResources:
        """Every client's resources in this stack: for_each resources keyed by client."""
        return ClientResources(ClientResourceProps(
            scope=self,
            settings=self.settings,
            apis=self.apis.all(),
            encryption=self.encryption,
            identities=self.identities,
            log_bucket_name=self.log_bucket_name,
            notifications_after=lambda: [j.intake_publisher for j in self.jobs.values()],
            schedules_after=lambda: [*self.job_workflows(), self.scheduler_invoker],
            secrets_after=lambda: list(self._secrets.values()),
            billing=self.billing,
        ))

    def moved(self) -> list[dict[str, str]]:
        """Terraform `moved` blocks for this stack: the dead-letter resources and the clients'
        channels and budgets, once constructs of their own, now entries. `stacks.app.finish`
        writes them to `moved.tf` beside `cdk.tf.json` (checkov's JSON parser refuses a
        top-level `moved` list; Terraform reads every `.tf` and `.tf.json` of the folder)."""
        return [*self._moved, *(self.home.resources.moved if self.home else [])]

    def _platform_sa(self, account_id: str, description: str) -> ServiceAccount:
        sa = service_account(self, account_id, self.settings.project_id, account_id, description)
        sa.override_logical_id(account_id)
        return sa

    @property
    def kms_key(self) -> str | None:
        return self._kms_key

    @property
    def project_number(self) -> str:
        return self.project.number

    def job_workflows(self) -> list[WorkflowsWorkflow]:
        return [job.workflow for job in self.jobs.values()]

    def _add_job(self, spec: JobSpec) -> BatchJob:
        if spec.name in self.jobs:
            raise ValueError(f"jobs: {spec.name!r} is declared twice in {self.settings.stack_name}")
        job = BatchJob(self, spec, JobProps(
            settings=self.settings,
            apis=[*self.apis.all(), self.deployer_ready],
            encryption=self.encryption,
            identities=self.identities,
            uploads=self.uploads,
            trigger_grants=[*self.trigger_grants, self.triggers_ready],
            secrets=self,
        ))
        self.jobs[spec.name] = job
        return job

    def add_job(self, spec: JobSpec) -> BatchJob:
        """Declare one more job: also added to `settings.jobs` (one list, see onboard_client)."""
        job = self._add_job(spec)
        self.settings = self.settings.model_copy(update={"jobs": [*self.settings.jobs, spec]})
        self.quotas.update(self.settings)  # the one GPU demand, with this job
        return job

    def onboard_client(self, client: ClientSettings) -> ClientOnboarding:
        """Onboard one more client. It joins `settings.clients` too, so the stack and the
        settings file written at synth (`cdktf.out/environments/<stack>.json`, for review)
        agree; bin/submit and bin/check know the clients environments.yaml declares."""
        onboarding = self._onboard(client)
        self.settings = self.settings.model_copy(
            update={"clients": [*self.settings.clients, client]}
        )
        return onboarding

    def _onboard(self, client: ClientSettings) -> ClientOnboarding:
        settings = self.settings
        count = settings.client_shards.count
        home = (self.home if self.home is not None
                else self.shards[shard_of(client.name, client.shard, count)].home)
        links = {name: job.link() for name, job in self.jobs.items()}
        if home.literal:
            links = {name: literal_job(link, settings) for name, link in links.items()}
        props = ClientProps(settings, home.resources, home.identities, links, self.clients)
        onboarding = self.clients[client.name] = ClientOnboarding(props, client)
        return onboarding

    @property
    def secrets(self) -> dict[str, SecretManagerSecret]:
        return dict(self._secrets)

    def secret(self, secret_id: str) -> SecretManagerSecret:
        """A Secret Manager secret container (declared once per id; no value in Terraform)."""
        if secret_id not in self._secrets:
            self._secrets[secret_id] = secret_container(self, self.settings, secret_id,
                                                        self.apis.all())
        return self._secrets[secret_id]

    def service_accounts(self) -> list[ServiceAccount]:
        return [self.workflow_sa, self.trigger_sa, self.scheduler_sa, self.adhoc_sa,
                self.operator_sa]
