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
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from constructs import Construct

from stacks.conditions import list_under, objects_under
from stacks.identity import project_role, sa_member, service_account
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
    ServiceAccountIamMember,
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
    WorkflowsWorkflow,
)
from stacks.settings import CLIENT_NAME_RE, ClientSettings
from stacks.workflow_source import WorkflowParams, workflow_source

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


class ClientOnboarding(Construct):
    """Everything one client needs, from one `ClientSettings`."""

    def __init__(self, platform: PlatformStack, client: ClientSettings) -> None:
        jobs = _validate(platform, client)  # before any resource exists
        super().__init__(platform, f"client-{client.name}")
        self.platform = platform
        self.client = client
        settings = platform.settings
        project = settings.project_id
        bucket = settings.data_bucket  # literal: conditions stay readable and testable
        self.labels = {**settings.all_labels(), **client.labels, "client": client.name}
        platform.clients[client.name] = self

        # --- identity and prefix-scoped object access ------------------------------------
        contact = f" (contact {client.contact})" if client.contact else ""
        self.service_account = service_account(
            self,
            "sa",
            project,
            client_sa_id(client.name),
            f"Client {client.name}{contact}: uploads inputs, reads outputs and results",
        )
        self.member = sa_member(self.service_account)
        self._bucket_grant(
            "create-inputs",
            "roles/storage.objectCreator",
            objects_under(bucket, f"{client.name}/inputs/"),
            f"{client.name} creates objects under {client.name}/inputs/",
        )
        self._bucket_grant(
            "read-outputs",
            "roles/storage.objectViewer",
            objects_under(bucket, f"{client.name}/outputs/"),
            f"{client.name} reads objects under {client.name}/outputs/",
        )
        # objectViewer carries storage.objects.list; this condition is true only for list
        # calls on the bucket whose prefix is inside the client's folder.
        self._bucket_grant(
            "list-own",
            "roles/storage.objectViewer",
            list_under(bucket, f"{client.name}/"),
            f"{client.name} lists only under {client.name}/",
        )
        if client.principal is not None:
            # The client's people act through the client account (impersonation), never with
            # bucket roles of their own; token creator on this one account only.
            ServiceAccountIamMember(
                self,
                "principal-impersonates",
                service_account_id=self.service_account.name,
                role="roles/iam.serviceAccountTokenCreator",
                member=client.principal,
            )

        # --- results ---------------------------------------------------------------------
        key_deps = list(platform.kms.grants.values()) if platform.kms else []
        self.topic = PubsubTopic(
            self,
            "results",
            project=project,
            name=results_topic_id(client.name),
            kms_key_name=platform.kms_key,
            message_retention_duration=RESULTS_RETENTION,
            labels=self.labels,
            depends_on=[*platform.apis.all(), *key_deps],
        )
        self.topic_path = f"projects/{project}/topics/{results_topic_id(client.name)}"
        self.topic_name: str = self.topic.name  # read once (a jsii round trip); used per job
        self.subscription = PubsubSubscription(
            self,
            "results-sub",
            project=project,
            name=results_subscription_id(client.name),
            topic=self.topic.id,
            labels=self.labels,
            message_retention_duration=RESULTS_RETENTION,
            ack_deadline_seconds=60,
            expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=""),  # never expires
        )
        subscribers = [self.member] + ([client.principal] if client.principal else [])
        for i, member in enumerate(subscribers):
            PubsubSubscriptionIamMember(
                self,
                f"subscriber-{i}",
                project=project,
                subscription=self.subscription.name,
                role="roles/pubsub.subscriber",
                member=member,
            )
        PubsubTopicIamMember(
            self,
            "workflow-publishes",
            project=project,
            topic=self.topic_name,
            role="roles/pubsub.publisher",
            member=sa_member(platform.workflow_sa),
        )
        # Prefix runs list the client's inputs (names only) from the workflow.
        self._bucket_grant(
            "workflow-lists-inputs",
            "roles/storage.objectViewer",
            list_under(bucket, f"{client.name}/inputs/"),
            f"job workflows list {client.name}/inputs/",
            member=sa_member(platform.workflow_sa),
        )

        # --- per job: grants, workflow, upload trigger -----------------------------------
        self.workflows: dict[str, WorkflowsWorkflow] = {}
        self.triggers: dict[str, EventarcTrigger] = {}
        for job in jobs:
            self._add_job(job)

        # --- schedules ---------------------------------------------------------------------
        self.schedules: list[CloudSchedulerJob] = []
        if client.schedules:
            self.scheduler_sa = service_account(
                self,
                "scheduler-sa",
                project,
                scheduler_sa_id(client.name),
                f"Cloud Scheduler runs of client {client.name}'s job workflows",
            )
            project_role(
                self,
                "scheduler-invoker",
                project,
                "roles/workflows.invoker",
                sa_member(self.scheduler_sa),
            )
            for i, schedule in enumerate(client.schedules):
                self._add_schedule(
                    i, schedule.job, schedule.cron, schedule.time_zone, schedule.input_prefix
                )

    # ------------------------------------------------------------------------------------
    def _bucket_grant(
        self, id_: str, role: str, expression: str, description: str, member: str | None = None
    ) -> StorageBucketIamMember:
        return StorageBucketIamMember(
            self,
            id_,
            bucket=self.platform.buckets.data_bucket_name,
            role=role,
            member=member or self.member,
            condition=StorageBucketIamMemberCondition(
                title=f"{self.client.name}-{id_}",
                description=description,
                expression=expression,
            ),
        )

    def _add_job(self, job: BatchJob) -> None:
        settings = self.platform.settings
        name = job.spec.name
        job.grant_client(self.client.name)
        # Batch publishes the failure notification as the job's service account.
        PubsubTopicIamMember(
            self,
            f"{name}-notifies",
            project=settings.project_id,
            topic=self.topic_name,
            role="roles/pubsub.publisher",
            member=job.member,
        )
        params = WorkflowParams(
            client=self.client.name,
            job=name,
            project_id=settings.project_id,
            job_region=job.spec.region or settings.region,
            bucket=settings.data_bucket,
            results_topic=self.topic_path,
            job_json=job.job_json,
            input_format=job.spec.input_format,
            files_per_task=job.spec.files_per_task,
            max_parallelism=min(job.spec.peak_parallelism, settings.guardrails.max_parallelism),
            fixed_task_count=len(job.spec.task_environments) or None,
        )
        labels = {**self.labels, "job": name}
        workflow = WorkflowsWorkflow(
            self,
            f"{name}-workflow",
            project=settings.project_id,
            region=settings.region,
            name=workflow_name(self.client.name, name),
            description=f"Runs {name} for client {self.client.name} on uploads and schedules",
            service_account=self.platform.workflow_sa_id,
            source_contents=workflow_source(params),
            call_log_level="LOG_ERRORS_ONLY",
            deletion_protection=settings.name == "prod",
            # The source embeds the job JSON; encrypt it with the environment's key when CMEK.
            crypto_key_name=self.platform.kms_key,
            labels=labels,
            depends_on=self.platform.apis.all(),
        )
        self.workflows[name] = workflow
        bucket = settings.data_bucket
        self.triggers[name] = EventarcTrigger(
            self,
            f"{name}-upload",
            project=settings.project_id,
            # Regional like the bucket and the workflow: audit-log triggers in a region see
            # that region's resources; `global` would work too, but events stay in region.
            location=settings.region,
            name=f"batch-{self.client.name}-{name}-upload",
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
                    value=upload_pattern(bucket, self.client.name, name),
                ),
            ],
            destination=EventarcTriggerDestination(workflow=workflow.id),
            service_account=self.platform.trigger_sa_email,
            labels=labels,
            depends_on=self.platform.apis.all(),
        )

    def _add_schedule(
        self, index: int, job: str, cron: str, time_zone: str, input_prefix: str
    ) -> None:
        settings = self.platform.settings
        wf = workflow_name(self.client.name, job)
        uri = (
            f"https://workflowexecutions.googleapis.com/v1/projects/{settings.project_id}"
            f"/locations/{settings.region}/workflows/{wf}/executions"
        )
        # Executions take their argument as a JSON string inside the JSON body.
        argument = json.dumps({"input_prefix": input_prefix, "trigger": "schedule"})
        body = json.dumps({"argument": argument, "callLogLevel": "LOG_ERRORS_ONLY"})
        self.schedules.append(
            CloudSchedulerJob(
                self,
                f"schedule-{index}",
                project=settings.project_id,
                region=settings.region,
                name=f"batch-{self.client.name}-{job}-{index}",
                description=f"{job} for {self.client.name} on {input_prefix or 'all inputs'}",
                schedule=cron,
                time_zone=time_zone,
                attempt_deadline="60s",
                retry_config=CloudSchedulerJobRetryConfig(retry_count=1),
                http_target=CloudSchedulerJobHttpTarget(
                    uri=uri,
                    http_method="POST",
                    body=base64.b64encode(body.encode()).decode(),
                    headers={"Content-Type": "application/json"},
                    oauth_token=CloudSchedulerJobHttpTargetOauthToken(
                        service_account_email=self.scheduler_sa.email,
                        scope="https://www.googleapis.com/auth/cloud-platform",
                    ),
                ),
                depends_on=[self.workflows[job], *self.platform.apis.all()],
            )
        )


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
