"""ClientOnboarding: one call adds a client of the platform (see docs/clients.md).

Per client: a service account scoped by IAM conditions to its own prefixes of the data bucket,
a results topic and subscription, and, per job the client uses, one Cloud Workflow and one
Eventarc upload trigger; optional Cloud Scheduler jobs with their own service account.

Design choices (the reasons are in docs/clients.md):
- Workflows are made per (client, job), not shared per job. Workflow invoker can only be granted
  project-wide, so whoever starts a workflow (trigger, scheduler, operator) could pass any
  argument to a shared one; with one workflow per client and job the bucket, prefixes and
  results topic are literals in the source and the arguments can only pick which of that
  client's inputs to run. It also gives per-client labels and execution history for free.
- Uploads map to jobs by folder: `<client>/inputs/<job>/<file>` starts `<job>` on that file.
  Files in deeper folders start nothing; they are for prefix runs (schedules, by hand).
- Triggers use the platform's trigger service account: its two roles (eventarc.eventReceiver,
  workflows.invoker) only exist project-wide, so a per-client trigger account would hold the
  same power and isolate nothing.
- Client resources are Terraform `for_each` resources with stable keys (`<client>` or
  `<client>/<job>`, Cloud Foundation Fabric style): one resource per type and role for all
  clients (`ClientResources`), its map filled by each onboarding and read at synth. The CDK
  (a jsii round trip per construct) then costs the same for 1 client or 100; what varies per
  key is in the map (`${each.value.x}`), what is the same for every client stays a literal
  attribute (CMEK key, workflow and trigger service accounts, deletion protection) where
  reviewers and the built-in checks see it. IAM conditions are literal strings in the map.
- Workflow sources: one template per job in the Terraform local `clients_workflow_sources`,
  the client's name substituted by Terraform (`replace`), so the stack does not carry one
  ~9 KB source per (client, job); see `SourceTemplate`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stacks.conditions import list_under, objects_under
from stacks.identity import project_role
from stacks.provider import (
    CloudSchedulerJob,
    CloudSchedulerJobHttpTarget,
    CloudSchedulerJobHttpTargetOauthToken,
    CloudSchedulerJobRetryConfig,
    EventarcTrigger,
    EventarcTriggerDestination,
    EventarcTriggerMatchingCriteria,
    PubsubSubscription,
    PubsubSubscriptionExpirationPolicy,
    PubsubSubscriptionIamMember,
    PubsubTopic,
    PubsubTopicIamMember,
    ServiceAccount,
    ServiceAccountIamMember,
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
    TerraformLocal,
    WorkflowsWorkflow,
    lazy_map,
)
from stacks.settings import CLIENT_NAME_RE, ClientSettings
from stacks.workflow_source import (
    CLIENT_PLACEHOLDER,
    SourceTemplate,
    WorkflowParams,
    terraform_literal,
)

if TYPE_CHECKING:
    from stacks.batch_job import BatchJob
    from stacks.platform import PlatformStack

RESULTS_RETENTION = "604800s"  # 7 days: a client that is away for a week loses nothing
SA_ID_MAX = 30


def client_sa_id(client: str) -> str:
    return f"client-{client}"


def scheduler_sa_id(client: str) -> str:
    return f"sched-{client}"


def results_topic_id(client: str) -> str:
    return f"batch-{client}-results"


def results_subscription_id(client: str) -> str:
    return f"batch-{client}-results-sub"


def workflow_name(client: str, job: str) -> str:
    return f"batch-{client}-{job}"


def upload_pattern(bucket: str, client: str, job: str) -> str:
    """The Eventarc path pattern: files directly in `<client>/inputs/<job>/`."""
    return f"/projects/_/buckets/{bucket}/objects/{client}/inputs/{job}/*"


def each(field: str) -> str:
    """The value of `field` in the current `for_each` entry."""
    return f"${{each.value.{field}}}"


# role -> (Terraform resource type, resource name (the construct id under the platform)).
# The names are part of every client resource's address: renaming one moves state.
RESOURCES: dict[str, tuple[str, str]] = {
    "sa": ("google_service_account", "clients-sa"),
    "bucket-grants": ("google_storage_bucket_iam_member", "clients-bucket-grants"),
    "impersonation": ("google_service_account_iam_member", "clients-impersonation"),
    "topic": ("google_pubsub_topic", "clients-results"),
    "subscription": ("google_pubsub_subscription", "clients-results-sub"),
    "subscribers": ("google_pubsub_subscription_iam_member", "clients-subscribers"),
    "publishers": ("google_pubsub_topic_iam_member", "clients-publishers"),
    "workflow": ("google_workflows_workflow", "clients-workflows"),
    "trigger": ("google_eventarc_trigger", "clients-upload-triggers"),
    "scheduler-sa": ("google_service_account", "clients-scheduler-sa"),
    "scheduler-invoker": ("google_project_iam_member", "clients-scheduler-invoker"),
    "schedule": ("google_cloud_scheduler_job", "clients-schedules"),
}


# The Terraform local holding the workflow source templates (one per job; see SourceTemplate).
SOURCES_LOCAL = "clients_workflow_sources"


def ref(role: str, key: str, attribute: str) -> str:
    """`${google_service_account.clients-sa["acme"].email}`: one entry's attribute."""
    rtype, name = RESOURCES[role]
    return f'${{{rtype}.{name}["{key}"].{attribute}}}'


class ClientResources:
    """The `for_each` resources of every client of one platform, keyed by stable keys.

    `add(role, key, value)` is plain Python; the resource of a role is made (one jsii
    construct) the first time the role gets an entry, with `for_each` read from the entries
    when the app synthesizes.
    """

    def __init__(self, platform: PlatformStack) -> None:
        self.platform = platform
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}
        self.resources: dict[str, Any] = {}
        self._templates: dict[str, SourceTemplate] = {}
        # template key (job, or `<client>/<job>` for a full render) -> source, escaped
        self.sources: dict[str, str] = {}
        self._sources_local: Any = None
        self._builders: dict[str, Callable[[], Any]] = {
            "sa": lambda: self._service_account("sa"),
            "bucket-grants": self._bucket_grants,
            "impersonation": self._impersonation,
            "topic": self._topic,
            "subscription": self._subscription,
            "subscribers": self._subscribers,
            "publishers": self._publishers,
            "workflow": self._workflow,
            "trigger": self._trigger,
            "scheduler-sa": lambda: self._service_account("scheduler-sa"),
            "scheduler-invoker": self._scheduler_invoker,
            "schedule": self._schedule,
        }

    def add(self, role: str, key: str, value: dict[str, Any]) -> None:
        entries = self.entries.get(role)
        if entries is None:
            entries = self.entries[role] = {}
            resource = self._builders[role]()
            resource.add_override("for_each", lazy_map(entries))
            self.resources[role] = resource
        if key in entries:
            raise ValueError(f"{RESOURCES[role][1]}: key {key!r} is declared twice")
        entries[key] = value

    def template(self, job: BatchJob, topic_for: Callable[[str], str]) -> SourceTemplate:
        """The job's workflow source template, rendered once per platform."""
        name = job.spec.name
        if name not in self._templates:
            settings = self.platform.settings
            params = WorkflowParams(
                client="",
                job=name,
                project_id=settings.project_id,
                job_region=job.spec.region or settings.region,
                bucket=settings.data_bucket,
                results_topic="",
                job_json=job.job_json,
                input_format=job.spec.input_format,
                files_per_task=job.spec.files_per_task,
                max_parallelism=min(
                    job.spec.peak_parallelism, settings.guardrails.max_parallelism
                ),
                fixed_task_count=len(job.spec.task_environments) or None,
            )
            self._templates[name] = SourceTemplate(params, topic_for)
        return self._templates[name]

    def workflow_source(
        self, job: BatchJob, client: str, topic_for: Callable[[str], str]
    ) -> dict[str, str]:
        """The workflow map fields that make the client's source from a template."""
        template = self.template(job, topic_for)
        own, substitute = template.for_client(client)
        key = job.spec.name if own is None else f"{client}/{job.spec.name}"
        if key not in self.sources:
            # Workflows syntax (`${...}`) escaped: a local's strings are Terraform templates.
            self.sources[key] = terraform_literal(own if own is not None else template.text)
        if self._sources_local is None:
            self._sources_local = TerraformLocal(
                self.platform, SOURCES_LOCAL, lazy_map(self.sources)
            )
        return {"source_template": key, "source_client": substitute}

    # ---- one builder per role: literal where every client is the same ----------------------
    def _id(self, role: str) -> str:
        return RESOURCES[role][1]

    def _service_account(self, role: str) -> ServiceAccount:
        return ServiceAccount(
            self.platform,
            self._id(role),
            project=self.platform.settings.project_id,
            account_id=each("account_id"),
            display_name=each("display_name"),
            description=each("description"),
        )

    def _bucket_grants(self) -> StorageBucketIamMember:
        return StorageBucketIamMember(
            self.platform,
            self._id("bucket-grants"),
            bucket=self.platform.buckets.data_bucket_name,
            role=each("role"),
            member=each("member"),
            condition=StorageBucketIamMemberCondition(
                title=each("title"), description=each("description"), expression=each("expression")
            ),
        )

    def _impersonation(self) -> ServiceAccountIamMember:
        # The client's people act through the client account (impersonation), never with
        # bucket roles of their own; token creator on this one account only.
        return ServiceAccountIamMember(
            self.platform,
            self._id("impersonation"),
            service_account_id=each("service_account"),
            role="roles/iam.serviceAccountTokenCreator",
            member=each("member"),
        )

    def _deps(self, *, key_grants: bool = False) -> list[Any]:
        platform = self.platform
        deps: list[Any] = list(platform.apis.all())
        if key_grants and platform.kms:
            deps += list(platform.kms.grants.values())
        return deps

    def _topic(self) -> PubsubTopic:
        topic = PubsubTopic(
            self.platform,
            self._id("topic"),
            project=self.platform.settings.project_id,
            name=each("name"),
            kms_key_name=self.platform.kms_key,
            message_retention_duration=RESULTS_RETENTION,
            depends_on=self._deps(key_grants=True),
        )
        topic.add_override("labels", each("labels"))
        return topic

    def _subscription(self) -> PubsubSubscription:
        sub = PubsubSubscription(
            self.platform,
            self._id("subscription"),
            project=self.platform.settings.project_id,
            name=each("name"),
            topic=each("topic"),
            message_retention_duration=RESULTS_RETENTION,
            ack_deadline_seconds=60,
            expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=""),  # never expires
        )
        sub.add_override("labels", each("labels"))
        return sub

    def _subscribers(self) -> PubsubSubscriptionIamMember:
        return PubsubSubscriptionIamMember(
            self.platform,
            self._id("subscribers"),
            project=self.platform.settings.project_id,
            subscription=each("subscription"),
            role="roles/pubsub.subscriber",
            member=each("member"),
        )

    def _publishers(self) -> PubsubTopicIamMember:
        return PubsubTopicIamMember(
            self.platform,
            self._id("publishers"),
            project=self.platform.settings.project_id,
            topic=each("topic"),
            role="roles/pubsub.publisher",
            member=each("member"),
        )

    def _workflow(self) -> WorkflowsWorkflow:
        settings = self.platform.settings
        workflow = WorkflowsWorkflow(
            self.platform,
            self._id("workflow"),
            project=settings.project_id,
            region=settings.region,
            name=each("name"),
            description=each("description"),
            service_account=self.platform.workflow_sa_id,
            # The job's template with the client's name for the placeholder (one template per
            # job in the stack, not one source per (client, job)).
            source_contents=(
                f"${{replace(local.{SOURCES_LOCAL}[each.value.source_template], "
                f'"{CLIENT_PLACEHOLDER}", each.value.source_client)}}'
            ),
            call_log_level="LOG_ERRORS_ONLY",
            deletion_protection=settings.name == "prod",
            # The source embeds the job JSON; encrypt it with the environment's key when CMEK.
            crypto_key_name=self.platform.kms_key,
            depends_on=self._deps(),
        )
        workflow.add_override("labels", each("labels"))
        return workflow

    def _trigger(self) -> EventarcTrigger:
        settings = self.platform.settings
        rtype, name = RESOURCES["workflow"]
        trigger = EventarcTrigger(
            self.platform,
            self._id("trigger"),
            project=settings.project_id,
            # Regional like the bucket and the workflow: audit-log triggers in a region see
            # that region's resources; `global` would work too, but events stay in region.
            location=settings.region,
            name=each("name"),
            matching_criteria=[
                EventarcTriggerMatchingCriteria(
                    attribute="type", value="google.cloud.audit.log.v1.written"
                ),
                EventarcTriggerMatchingCriteria(
                    attribute="serviceName", value="storage.googleapis.com"
                ),
                EventarcTriggerMatchingCriteria(
                    attribute="methodName", value="storage.objects.create"
                ),
                EventarcTriggerMatchingCriteria(
                    attribute="resourceName",
                    operator="match-path-pattern",
                    value=each("path_pattern"),
                ),
            ],
            # Same key as the trigger: the (client, job) workflow.
            destination=EventarcTriggerDestination(workflow=f"${{{rtype}.{name}[each.key].id}}"),
            service_account=self.platform.trigger_sa_email,
            depends_on=self._deps(),
        )
        trigger.add_override("labels", each("labels"))
        return trigger

    def _scheduler_invoker(self) -> Any:
        return project_role(
            self.platform,
            self._id("scheduler-invoker"),
            self.platform.settings.project_id,
            "roles/workflows.invoker",
            each("member"),
        )

    def _schedule(self) -> CloudSchedulerJob:
        settings = self.platform.settings
        return CloudSchedulerJob(
            self.platform,
            self._id("schedule"),
            project=settings.project_id,
            region=settings.region,
            name=each("name"),
            description=each("description"),
            schedule=each("schedule"),
            time_zone=each("time_zone"),
            attempt_deadline="60s",
            retry_config=CloudSchedulerJobRetryConfig(retry_count=1),
            http_target=CloudSchedulerJobHttpTarget(
                uri=each("uri"),
                http_method="POST",
                body=each("body"),
                headers={"Content-Type": "application/json"},
                oauth_token=CloudSchedulerJobHttpTargetOauthToken(
                    service_account_email=each("service_account_email"),
                    scope="https://www.googleapis.com/auth/cloud-platform",
                ),
            ),
            depends_on=[self.resources["workflow"], *self._deps()],
        )


class ClientOnboarding:
    """Everything one client needs, from one `ClientSettings`: entries in the platform's
    `ClientResources` under the keys `<client>`, `<client>/<grant>` and `<client>/<job>`."""

    def __init__(self, platform: PlatformStack, client: ClientSettings) -> None:
        jobs = _validate(platform, client)  # before any entry exists
        self.platform = platform
        self.client = client
        settings = platform.settings
        project = settings.project_id
        name = client.name
        self.labels = {**settings.all_labels(), **client.labels, "client": name}
        self.topic_path = f"projects/{project}/topics/{results_topic_id(name)}"
        # Every source first: a too-big workflow fails the call before any entry is added.
        sources = {
            job.spec.name: platform.client_resources.workflow_source(
                job, name, self._topic_path_for
            )
            for job in jobs
        }
        res = platform.client_resources
        platform.clients[name] = self

        # --- identity and prefix-scoped object access ------------------------------------
        contact = f" (contact {client.contact})" if client.contact else ""
        description = f"Client {name}{contact}: uploads inputs, reads outputs and results"
        res.add("sa", name, {
            "account_id": client_sa_id(name),
            "display_name": description[:100],
            "description": description,
        })
        self.service_account_email = ref("sa", name, "email")
        self.member = f"serviceAccount:{self.service_account_email}"
        self._bucket_grant(
            "create-inputs",
            "roles/storage.objectCreator",
            objects_under(settings.data_bucket, f"{name}/inputs/"),
            f"{name} creates objects under {name}/inputs/",
        )
        self._bucket_grant(
            "read-outputs",
            "roles/storage.objectViewer",
            objects_under(settings.data_bucket, f"{name}/outputs/"),
            f"{name} reads objects under {name}/outputs/",
        )
        # objectViewer carries storage.objects.list; this condition is true only for list
        # calls on the bucket whose prefix is inside the client's folder.
        self._bucket_grant(
            "list-own",
            "roles/storage.objectViewer",
            list_under(settings.data_bucket, f"{name}/"),
            f"{name} lists only under {name}/",
        )
        if client.principal is not None:
            res.add("impersonation", name, {
                "service_account": ref("sa", name, "name"),
                "member": client.principal,
            })

        # --- results ---------------------------------------------------------------------
        res.add("topic", name, {"name": results_topic_id(name), "labels": self.labels})
        self.topic_name = ref("topic", name, "name")
        res.add("subscription", name, {
            "name": results_subscription_id(name),
            "topic": ref("topic", name, "id"),
            "labels": self.labels,
        })
        subscription = ref("subscription", name, "name")
        res.add("subscribers", f"{name}/client", {
            "subscription": subscription, "member": self.member,
        })
        if client.principal is not None:
            res.add("subscribers", f"{name}/principal", {
                "subscription": subscription, "member": client.principal,
            })
        workflow_member = platform.workflow_sa_member
        res.add("publishers", f"{name}/workflow", {
            "topic": self.topic_name, "member": workflow_member,
        })
        # Prefix runs list the client's inputs (names only) from the workflow.
        self._bucket_grant(
            "workflow-lists-inputs",
            "roles/storage.objectViewer",
            list_under(settings.data_bucket, f"{name}/inputs/"),
            f"job workflows list {name}/inputs/",
            member=workflow_member,
        )

        # --- per job: grants, workflow, upload trigger -----------------------------------
        self.workflow_names: dict[str, str] = {}
        for job in jobs:
            self._add_job(job, sources[job.spec.name])

        # --- schedules ---------------------------------------------------------------------
        if client.schedules:
            res.add("scheduler-sa", name, {
                "account_id": scheduler_sa_id(name),
                "display_name": f"Cloud Scheduler runs of client {name}'s job workflows",
                "description": f"Cloud Scheduler runs of client {name}'s job workflows",
            })
            self.scheduler_sa_email = ref("scheduler-sa", name, "email")
            res.add("scheduler-invoker", name, {
                "member": f"serviceAccount:{self.scheduler_sa_email}",
            })
            for i, schedule in enumerate(client.schedules):
                self._add_schedule(
                    i, schedule.job, schedule.cron, schedule.time_zone, schedule.input_prefix
                )

    def _topic_path_for(self, client: str) -> str:
        return f"projects/{self.platform.settings.project_id}/topics/{results_topic_id(client)}"

    # ------------------------------------------------------------------------------------
    def _bucket_grant(
        self, id_: str, role: str, expression: str, description: str, member: str | None = None
    ) -> None:
        name = self.client.name
        self.platform.client_resources.add("bucket-grants", f"{name}/{id_}", {
            "role": role,
            "member": member or self.member,
            "title": f"{name}-{id_}",
            "description": description,
            "expression": expression,
        })

    def _add_job(self, job: BatchJob, source: dict[str, str]) -> None:
        settings = self.platform.settings
        res = self.platform.client_resources
        name = job.spec.name
        client = self.client.name
        key = f"{client}/{name}"
        job.grant_client(client)
        # Batch publishes the failure notification as the job's service account.
        res.add("publishers", f"{key}/job", {"topic": self.topic_name, "member": job.member})
        labels = {**self.labels, "job": name}
        self.workflow_names[name] = workflow_name(client, name)
        res.add("workflow", key, {
            "name": workflow_name(client, name),
            "description": f"Runs {name} for client {client} on uploads and schedules",
            **source,
            "labels": labels,
        })
        res.add("trigger", key, {
            "name": f"batch-{client}-{name}-upload",
            "path_pattern": upload_pattern(settings.data_bucket, client, name),
            "labels": labels,
        })

    def _add_schedule(
        self, index: int, job: str, cron: str, time_zone: str, input_prefix: str
    ) -> None:
        settings = self.platform.settings
        client = self.client.name
        wf = workflow_name(client, job)
        uri = (
            f"https://workflowexecutions.googleapis.com/v1/projects/{settings.project_id}"
            f"/locations/{settings.region}/workflows/{wf}/executions"
        )
        # Executions take their argument as a JSON string inside the JSON body.
        argument = json.dumps({"input_prefix": input_prefix, "trigger": "schedule"})
        body = json.dumps({"argument": argument, "callLogLevel": "LOG_ERRORS_ONLY"})
        self.platform.client_resources.add("schedule", f"{client}/schedule-{index}", {
            "name": f"batch-{client}-{job}-{index}",
            "description": f"{job} for {client} on {input_prefix or 'all inputs'}",
            "schedule": cron,
            "time_zone": time_zone,
            "uri": uri,
            "body": base64.b64encode(body.encode()).decode(),
            "service_account_email": self.scheduler_sa_email,
        })


def _validate(platform: PlatformStack, client: ClientSettings) -> list[BatchJob]:
    """Synth-time checks that span the client and the platform; errors name the field."""
    where = f"clients.{client.name}"
    stack = platform.settings.stack_name
    if not CLIENT_NAME_RE.match(client.name) or len(client_sa_id(client.name)) > SA_ID_MAX:
        raise ValueError(
            f"clients.name: {client.name!r} must be 3-23 lowercase letters, digits or hyphens "
            f"starting with a letter (it becomes the service account id "
            f"{client_sa_id(client.name)!r}, at most {SA_ID_MAX} chars, and the object prefix "
            f"'{client.name}/')"
        )
    if client.name in platform.clients:
        raise ValueError(f"clients: {client.name!r} is onboarded twice in {stack}")
    if not client.jobs:
        raise ValueError(f"{where}.jobs: a client needs at least one job")
    if len(set(client.jobs)) != len(client.jobs):
        raise ValueError(f"{where}.jobs: {client.jobs} names a job twice")
    known = ", ".join(sorted(platform.jobs)) or "none"
    jobs: list[BatchJob] = []
    for name in client.jobs:
        if name not in platform.jobs:
            raise ValueError(f"{where}.jobs: {name!r} is not a job of {stack} (known: {known})")
        job = platform.jobs[name]
        fmt = job.spec.input_format
        if fmt is not None and fmt not in client.upload_formats:
            raise ValueError(
                f"{where}.upload_formats: job {name!r} reads {fmt!r} inputs but "
                f"{client.name} uploads only {', '.join(client.upload_formats)}"
            )
        jobs.append(job)
    for i, schedule in enumerate(client.schedules):
        if schedule.job not in client.jobs:
            raise ValueError(
                f"{where}.schedules[{i}].job: {schedule.job!r} is not one of the client's jobs "
                f"({', '.join(client.jobs)})"
            )
        if schedule.input_prefix.startswith("/") or ".." in schedule.input_prefix.split("/"):
            raise ValueError(
                f"{where}.schedules[{i}].input_prefix: {schedule.input_prefix!r} must be "
                f"relative to {client.name}/inputs/{schedule.job}/"
            )
    return jobs
