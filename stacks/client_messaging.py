"""The client's results topic and subscription with their authoritative IAM policies, its
grants on the jobs' notification topics and secrets, and its schedules, as typed `for_each`
entries (stacks/client_resources.py)."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.client_resources import ClientResources, Entry, each, role
from stacks.provider import (
    CloudSchedulerJob,
    CloudSchedulerJobHttpTarget,
    CloudSchedulerJobHttpTargetOauthToken,
    CloudSchedulerJobRetryConfig,
    PubsubSubscription,
    PubsubSubscriptionExpirationPolicy,
    PubsubSubscriptionIamPolicy,
    PubsubTopic,
    PubsubTopicIamMember,
    PubsubTopicIamPolicy,
    SecretManagerSecretIamMember,
)

RESULTS_RETENTION = "604800s"  # 7 days: a client that is away for a week loses nothing


def _topic(res: ClientResources) -> PubsubTopic:
    topic = PubsubTopic(
        res.scope,
        ResultsTopic.ROLE.name,
        project=res.props.settings.project_id,
        name=each("name"),
        kms_key_name=res.props.encryption.key,
        message_retention_duration=RESULTS_RETENTION,
        depends_on=res.deps(key_grant="pubsub"),
    )
    topic.add_override("labels", each("labels"))
    return topic


@role("google_pubsub_topic", "clients-results", _topic)
@dataclass(frozen=True)
class ResultsTopic(Entry):
    name: str
    labels: dict[str, str]


def _subscription(res: ClientResources) -> PubsubSubscription:
    sub = PubsubSubscription(
        res.scope,
        ResultsSubscription.ROLE.name,
        project=res.props.settings.project_id,
        name=each("name"),
        topic=each("topic"),
        message_retention_duration=RESULTS_RETENTION,
        ack_deadline_seconds=60,
        expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=""),  # never expires
    )
    sub.add_override("labels", each("labels"))
    return sub


@role("google_pubsub_subscription", "clients-results-sub", _subscription)
@dataclass(frozen=True)
class ResultsSubscription(Entry):
    name: str
    topic: str
    labels: dict[str, str]


def _subscription_policy(res: ClientResources) -> PubsubSubscriptionIamPolicy:
    return PubsubSubscriptionIamPolicy(
        res.scope, ResultsSubscriptionPolicy.ROLE.name, project=res.props.settings.project_id,
        subscription=each("subscription"), policy_data=each("policy_data"))


@role("google_pubsub_subscription_iam_policy", "clients-results-sub-policy",
      _subscription_policy,
      replaces=("google_pubsub_subscription_iam_member.clients-subscribers",))
@dataclass(frozen=True)
class ResultsSubscriptionPolicy(Entry):
    """The subscription's policy: subscriber for the client (and its principal)."""

    subscription: str
    policy_data: str


def _topic_policy(res: ClientResources) -> PubsubTopicIamPolicy:
    return PubsubTopicIamPolicy(
        res.scope, ResultsTopicPolicy.ROLE.name, project=res.props.settings.project_id,
        topic=each("topic"), policy_data=each("policy_data"))


# `clients-publishers` held both the results topics' publishers (now this policy) and the
# grants on the jobs' notification topics (now `clients-notify-publishers`): forgotten whole.
@role("google_pubsub_topic_iam_policy", "clients-results-policy", _topic_policy,
      replaces=("google_pubsub_topic_iam_member.clients-publishers",))
@dataclass(frozen=True)
class ResultsTopicPolicy(Entry):
    """The results topic's policy: publisher for the workflows (outcomes) and `run-<c>`."""

    topic: str
    policy_data: str


def _publisher(res: ClientResources) -> PubsubTopicIamMember:
    # A job's notification topic is shared by its clients: one member grant each.
    return PubsubTopicIamMember(
        res.scope, Publisher.ROLE.name,
        project=res.props.settings.project_id, topic=each("topic"),
        role="roles/pubsub.publisher", member=each("member"),
    )


@role("google_pubsub_topic_iam_member", "clients-notify-publishers", _publisher)
@dataclass(frozen=True)
class Publisher(Entry):
    topic: str
    member: str


def _secret_access(res: ClientResources) -> SecretManagerSecretIamMember:
    # Map values name secrets by id (a literal): the secrets are declared with the jobs, before
    # any client, and the grant waits for them.
    return SecretManagerSecretIamMember(
        res.scope, SecretAccess.ROLE.name,
        project=res.props.settings.project_id, secret_id=each("secret"),
        role="roles/secretmanager.secretAccessor", member=each("member"),
        depends_on=res.props.secrets_after(),
    )


@role("google_secret_manager_secret_iam_member", "clients-secret-access", _secret_access)
@dataclass(frozen=True)
class SecretAccess(Entry):
    secret: str
    member: str


def _schedule(res: ClientResources) -> CloudSchedulerJob:
    props = res.props
    settings = props.settings
    return CloudSchedulerJob(
        res.scope,
        Schedule.ROLE.name,
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
                service_account_email=props.identities.scheduler_email,
                scope="https://www.googleapis.com/auth/cloud-platform",
            ),
        ),
        depends_on=[*props.schedules_after(), *res.deps()],
    )


@role("google_cloud_scheduler_job", "clients-schedules", _schedule)
@dataclass(frozen=True)
class Schedule(Entry):
    name: str
    description: str
    schedule: str
    time_zone: str
    uri: str
    body: str
