"""BatchJob: a declared job's dispatcher workflow, upload trigger, secrets and rendered JSON.

Tenancy v2: a job has no identity of its own. Each client's runs execute as that client's
`run-<client>` (granted by `ClientOnboarding`); the job brings ONE workflow and ONE Eventarc
trigger for all its clients (the trigger count does not grow with clients: Eventarc allows 500
triggers per project and location, cloud.google.com/eventarc/docs/quotas).

Two-phase validation: pydantic validates the JobSpec at declaration; this construct checks the
rules that span objects (region allowed, the workflow's size) when it is added to a stack and
when the stack synthesizes.
"""

from __future__ import annotations

from typing import Any

from constructs import Construct

from jobs import JobSpec
from jobs.render import render_job
from stacks.agents import IAM_PROPAGATION
from stacks.deferred import deferred
from stacks.props import JobLink, JobProps
from stacks.provider import (
    EventarcTrigger,
    EventarcTriggerDestination,
    PubsubTopic,
    PubsubTopicIamMember,
    Sleep,
    WorkflowsWorkflow,
    barrier,
)
from stacks.provider import EventarcTriggerMatchingCriteria as Criteria
from stacks.settings import EnvironmentSettings
from stacks.workflow_source import WorkflowParams, terraform_literal, workflow_source

# Eventarc: a Pub/Sub trigger on an existing topic (cloud.google.com/eventarc/docs/reference/
# rest/v1/projects.locations.triggers#Pubsub: "You can set an existing topic for triggers of
# the type google.cloud.pubsub.topic.v1.messagePublished").
PUBSUB_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"
# A workflow id "Must be between 1-64 characters" (cloud.google.com/python/docs/reference/
# workflows/latest/google.cloud.workflows_v1.types.CreateWorkflowRequest). JobSpec's NAME_MAX
# keeps `batch-<job>` within it; tests/test_name_limits.py checks the two agree.
WORKFLOW_ID_MAX = 64
# The Terraform name of a job's intake topic: `google_pubsub_topic.intake-<job>`.
INTAKE_TOPIC_ID_PREFIX = "intake-"


class BatchJob(Construct):
    """Everything one declared job needs in one environment."""

    def __init__(self, scope: Construct, spec: JobSpec, props: JobProps) -> None:
        super().__init__(scope, f"job-{spec.name}")
        self.props = props
        self.spec = spec
        settings = props.settings
        self._validate(settings)
        self.secrets: list[str] = sorted(set(spec.secret_ids()))
        for secret_id in self.secrets:
            props.secrets.secret(secret_id)
        self.job_json: dict[str, Any] = render_job(spec, settings.render_context(spec.name))
        self.workflow = self._workflow()
        self.intake_topic, self.intake_publisher = self._intake()
        self.trigger = self._trigger()

    def _validate(self, settings: EnvironmentSettings) -> None:
        if len(settings.job_workflow(self.spec.name)) > WORKFLOW_ID_MAX:
            raise ValueError(
                f"jobs: {self.spec.name!r} is too long for its workflow name "
                f"{settings.job_workflow(self.spec.name)!r} (at most {WORKFLOW_ID_MAX} characters)"
            )
        region = self.spec.region or settings.region
        if region not in settings.guardrails.allowed_regions:
            raise ValueError(
                f"jobs.{self.spec.name}.region: {region!r} is not an allowed region of "
                f"{settings.name} ({', '.join(settings.guardrails.allowed_regions)})"
            )

    def link(self) -> JobLink:
        """What a client's entries need of this job (stacks/client.py)."""
        return JobLink(spec=self.spec, intake_topic=self.intake_topic_ref(),
                       secrets=tuple(self.secrets),
                       notification_topics=tuple(self.notification_topics()))

    def notification_topics(self) -> list[str]:
        # Full topic names (another project's topic) are granted by their owners.
        return sorted({n.topic for n in self.spec.notifications if "/" not in n.topic})

    def params(self) -> WorkflowParams:
        settings = self.props.settings
        return WorkflowParams(
            job=self.spec.name,
            env=settings.name,
            project_id=settings.project_id,
            job_region=self.spec.region or settings.region,
            job_json=self.job_json,
            files_per_task=self.spec.files_per_task,
            max_parallelism=min(self.spec.peak_parallelism, settings.guardrails.max_parallelism),
            fixed_task_count=len(self.spec.task_environments) or None,
        )

    def source(self) -> str:
        """The workflow YAML with every client onboarded so far (size checked)."""
        return workflow_source(self.params())

    def _workflow(self) -> WorkflowsWorkflow:
        props = self.props
        settings = props.settings
        name = self.spec.name
        # CMEK: the Workflows agent must hold the key before a workflow is encrypted.
        deps: list[Any] = [*props.apis, *props.encryption.after("workflows")]
        return WorkflowsWorkflow(
            self,
            "workflow",
            project=settings.project_id,
            region=settings.region,
            name=settings.job_workflow(name),
            description=(f"Runs {name} once for each client batch marker "
                         f"({settings.layout.job_markers(name)})"),
            service_account=props.identities.workflow_sa_id,
            # Written after synth: the source lists every client onboarded until then.
            source_contents=deferred(lambda: terraform_literal(self.source())),
            call_log_level="LOG_ERRORS_ONLY",
            deletion_protection=settings.name == "prod",
            # The source embeds the job JSON; encrypt it with the environment's key when CMEK.
            crypto_key_name=props.encryption.key,
            labels={**settings.all_labels(), "job": name},
            depends_on=deps,
        )

    def intake_topic_ref(self) -> str:
        """`${google_pubsub_topic.<id>.id}`: for the clients' notification entries."""
        return f"${{google_pubsub_topic.{INTAKE_TOPIC_ID_PREFIX}{self.spec.name}.id}}"

    def _intake(self) -> tuple[PubsubTopic, Sleep]:
        """The job's intake topic: its markers' notifications from every client bucket it
        serves (the Cloud Storage service agent publishes; cloud.google.com/storage/docs/
        reporting-changes), and the workflow's sweep re-publishes unclaimed markers."""
        props = self.props
        settings = props.settings
        topic = PubsubTopic(
            self,
            "intake",
            project=settings.project_id,
            name=settings.layout.intake_topic(self.spec.name),
            kms_key_name=props.encryption.key,
            # 7 days (the most a topic's subscriptions may keep unacked messages is 7 days:
            # cloud.google.com/pubsub/docs/subscription-properties#retention_duration).
            message_retention_duration="604800s",
            labels={**settings.all_labels(), "job": self.spec.name},
            depends_on=[*props.apis, *props.encryption.after("pubsub")],
        )
        topic.override_logical_id(f"{INTAKE_TOPIC_ID_PREFIX}{self.spec.name}")
        publisher = PubsubTopicIamMember(
            self,
            "intake-gcs",
            project=settings.project_id,
            topic=topic.name,
            role="roles/pubsub.publisher",
            member=props.uploads.agent_member,
            depends_on=[props.uploads.publisher],  # the agent exists and may publish
        )
        PubsubTopicIamMember(
            self,
            "intake-sweep",
            project=settings.project_id,
            topic=topic.name,
            role="roles/pubsub.publisher",
            member=props.identities.workflow_member,
        )
        # Notifications are checked at creation: wait for the grant to propagate
        # (cloud.google.com/iam/docs/access-change-propagation).
        return topic, barrier(self, "intake-ready", [publisher], IAM_PROPAGATION)

    def _trigger(self) -> EventarcTrigger:
        props = self.props
        settings = props.settings
        trigger = EventarcTrigger(
            self,
            "uploads",
            project=settings.project_id,
            location=settings.region,
            name=f"{settings.job_workflow(self.spec.name)}-uploads",
            matching_criteria=[Criteria(attribute="type", value=PUBSUB_EVENT)],
            destination=EventarcTriggerDestination(workflow=self.workflow.id),
            service_account=props.identities.trigger_email,
            labels={**settings.all_labels(), "job": self.spec.name},
            # Terraform cannot see that the trigger needs its account's roles: on a fresh
            # project the trigger is refused (PERMISSION_DENIED) unless they exist first.
            depends_on=[*props.apis, *props.trigger_grants, self.intake_topic],
        )
        # One trigger per job on its own intake topic: one execution per marker. Its
        # subscription is Eventarc's (output only: it cannot have a dead-letter topic,
        # docs/clients.md "Intake").
        trigger.add_override("transport", {"pubsub": {"topic": self.intake_topic.id}})
        return trigger
