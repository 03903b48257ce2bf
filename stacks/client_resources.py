"""The `for_each` resources every client shares (Cloud Foundation Fabric style), typed.

One Terraform resource per role for all clients of a stack, keyed by stable keys (`<client>`
or `<client>/<what>`). Each role is ONE typed entry class below: its fields are the map's
values, `@role(...)` registers its Terraform type, its resource name (part of every
instance's state address: renaming one moves state) and the builder of its one resource.
`ClientResources.add(key, entry)` is plain Python; the resource of a role is made (one jsii
construct) the first time the role gets an entry, its `for_each` a token that
`stacks.deferred` replaces by the entries after synth, so the cost stays one construct per
role whatever the number of clients. What is the same for every client stays literal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from jobs import billing_labels
from stacks.deferred import deferred
from stacks.props import ClientResourceProps
from stacks.provider import (
    BillingBudget,
    BillingBudgetAllUpdatesRule,
    BillingBudgetAmount,
    BillingBudgetAmountSpecifiedAmount,
    BillingBudgetBudgetFilter,
    BillingBudgetThresholdRules,
    CloudSchedulerJob,
    CloudSchedulerJobHttpTarget,
    CloudSchedulerJobHttpTargetOauthToken,
    CloudSchedulerJobRetryConfig,
    MonitoringNotificationChannel,
    PubsubSubscription,
    PubsubSubscriptionExpirationPolicy,
    PubsubSubscriptionIamMember,
    PubsubTopic,
    PubsubTopicIamMember,
    SecretManagerSecretIamMember,
    ServiceAccount,
    ServiceAccountIamMember,
    StorageBucket,
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
    StorageNotification,
    TerraformResource,
)
from stacks.storage import client_bucket_settings

RESULTS_RETENTION = "604800s"  # 7 days: a client that is away for a week loses nothing

Builder = Callable[["ClientResources"], TerraformResource]


@dataclass(frozen=True)
class Role:
    """A resource role: its Terraform type, its resource name and how its resource is built."""

    tf_type: str
    name: str
    build: Builder


class Entry:
    """One `for_each` entry; subclasses are frozen dataclasses registered with `@role`."""

    ROLE: ClassVar[Role]

    @classmethod
    def ref(cls, key: str, attribute: str) -> str:
        """`${google_service_account.clients-sa["acme"].email}`: one entry's attribute."""
        return f'${{{cls.ROLE.tf_type}.{cls.ROLE.name}["{key}"].{attribute}}}'

    def value(self) -> dict[str, Any]:
        """The map value Terraform reads as `each.value` (field order kept)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


E = TypeVar("E", bound=type[Entry])
ROLES: dict[type[Entry], Role] = {}


def role(tf_type: str, name: str, build: Builder) -> Callable[[E], E]:
    """Register an entry class as the one definition of its resource role."""

    def register(cls: E) -> E:
        if any(r.name == name for r in ROLES.values()):
            raise ValueError(f"client resource name {name!r} is registered twice")
        cls.ROLE = ROLES[cls] = Role(tf_type, name, build)
        return cls

    return register


def each(field: str) -> str:
    """The value of `field` in the current `for_each` entry."""
    return f"${{each.value.{field}}}"


class ClientResources:
    """The `for_each` resources of the clients of one stack, keyed by stable keys."""

    def __init__(self, props: ClientResourceProps) -> None:
        self.props = props
        self.scope = props.scope
        self.entries: dict[type[Entry], dict[str, Entry]] = {}
        self.resources: dict[type[Entry], TerraformResource] = {}
        # `moved` blocks from addresses entries had before they were entries (the platform
        # stack writes them; a shard's clients are new to its state).
        self.moved: list[dict[str, str]] = []

    def moved_from(self, old_address: str, kind: type[Entry], key: str) -> None:
        self.moved.append({"from": old_address,
                           "to": f'{kind.ROLE.tf_type}.{kind.ROLE.name}["{key}"]'})

    def add(self, key: str, entry: Entry) -> None:
        kind = type(entry)
        entries = self.entries.get(kind)
        if entries is None:
            entries = self.entries[kind] = {}
            resource = kind.ROLE.build(self)
            resource.add_override("for_each", deferred(lambda: _values(entries)))
            self.resources[kind] = resource
        if key in entries:
            raise ValueError(f"{kind.ROLE.name}: key {key!r} is declared twice")
        entries[key] = entry

    def has(self, kind: type[Entry], key: str) -> bool:
        return key in self.entries.get(kind, {})

    def deps(self, *, key_grant: str | None = None) -> list[Any]:
        grant = self.props.encryption.after(key_grant) if key_grant else []
        return [*self.props.apis, *grant]


def _values(entries: dict[str, Entry]) -> dict[str, dict[str, Any]]:
    return {key: entry.value() for key, entry in entries.items()}


# ---- one entry class per role: the map's fields, and the resource literal where every client
# is the same --------------------------------------------------------------------------------
def _bucket(res: ClientResources) -> StorageBucket:
    props = res.props
    bucket = StorageBucket(
        res.scope,
        ClientBucket.ROLE.name,
        name=each("name"),
        depends_on=res.deps(key_grant="gcs"),
        **client_bucket_settings(props.settings, props.encryption.key, props.log_bucket_name),
    )
    bucket.add_override("labels", each("labels"))
    bucket.add_override("logging.log_object_prefix", each("name"))
    return bucket


@role("google_storage_bucket", "clients-bucket", _bucket)
@dataclass(frozen=True)
class ClientBucket(Entry):
    """The client's bucket: its data, policy, CMEK, retention and labels."""

    name: str
    labels: dict[str, str]


def _notification(res: ClientResources) -> StorageNotification:
    # One configuration per (client bucket, job): new objects under the job's marker prefix
    # `inputs/_ready/<job>/` go to the job's intake topic; data objects notify nothing
    # (notifications filter by object-name prefix only, at most 10 configurations per event
    # type per bucket: cloud.google.com/storage/docs/pubsub-notifications). The Cloud Storage
    # service agent must be a publisher there first (cloud.google.com/storage/docs/
    # reporting-changes): the notifications wait behind the barriers after those grants (in a
    # shard stack, the platform stack applied them before).
    return StorageNotification(
        res.scope,
        Notification.ROLE.name,
        bucket=each("bucket"),
        topic=each("topic"),
        payload_format="JSON_API_V1",
        event_types=["OBJECT_FINALIZE"],
        object_name_prefix=each("prefix"),
        depends_on=res.props.notifications_after(),
    )


@role("google_storage_notification", "clients-intake", _notification)
@dataclass(frozen=True)
class Notification(Entry):
    bucket: str
    topic: str
    prefix: str


@dataclass(frozen=True)
class Account(Entry):
    account_id: str
    display_name: str
    description: str


def _account(res: ClientResources, kind: type[Account], project: str) -> ServiceAccount:
    return ServiceAccount(
        res.scope, kind.ROLE.name, project=project, account_id=each("account_id"),
        display_name=each("display_name"), description=each("description"),
    )


def _client_account(res: ClientResources) -> ServiceAccount:
    # client-<c> lives outside the platform project (issue 22, docs/clients.md).
    return _account(res, ClientAccount, res.props.settings.clients_project)


def _run_account(res: ClientResources) -> ServiceAccount:
    return _account(res, RunAccount, res.props.settings.project_id)


@role("google_service_account", "clients-sa", _client_account)
@dataclass(frozen=True)
class ClientAccount(Account):
    """`client-<c>`: uploads inputs, reads outputs (the client's people impersonate it)."""


@role("google_service_account", "clients-run-sa", _run_account)
@dataclass(frozen=True)
class RunAccount(Account):
    """`run-<c>`: every task of the client's jobs runs as it."""


def _grant(res: ClientResources) -> StorageBucketIamMember:
    return StorageBucketIamMember(
        res.scope,
        BucketGrant.ROLE.name,
        bucket=each("bucket"),
        role=each("role"),
        member=each("member"),
        condition=StorageBucketIamMemberCondition(
            title=each("title"), description=each("description"), expression=each("expression")
        ),
    )


@role("google_storage_bucket_iam_member", "clients-bucket-grants", _grant)
@dataclass(frozen=True)
class BucketGrant(Entry):
    """A role on the client's bucket under an IAM condition (object-name prefix)."""

    bucket: str
    role: str
    member: str
    title: str
    description: str
    expression: str


def _bucket_role(res: ClientResources) -> StorageBucketIamMember:
    # Unconditional roles on the client's own bucket (the bucket is the boundary).
    return StorageBucketIamMember(
        res.scope, BucketRole.ROLE.name,
        bucket=each("bucket"), role=each("role"), member=each("member"),
    )


@role("google_storage_bucket_iam_member", "clients-bucket-roles", _bucket_role)
@dataclass(frozen=True)
class BucketRole(Entry):
    bucket: str
    role: str
    member: str


def _account_role(res: ClientResources, kind: type[Entry], role_name: str
                  ) -> ServiceAccountIamMember:
    return ServiceAccountIamMember(
        res.scope, kind.ROLE.name,
        service_account_id=each("service_account"), role=role_name, member=each("member"),
    )


def _act_as(res: ClientResources) -> ServiceAccountIamMember:
    # Whoever creates Batch jobs that run as `run-<c>` (the job workflows, operators'
    # bin/submit) may act as that account only.
    return _account_role(res, ActAs, "roles/iam.serviceAccountUser")


def _impersonation(res: ClientResources) -> ServiceAccountIamMember:
    # The client's people act through the client account (impersonation), never with bucket
    # roles of their own; token creator on this one account only.
    return _account_role(res, Impersonation, "roles/iam.serviceAccountTokenCreator")


@role("google_service_account_iam_member", "clients-run-act-as", _act_as)
@dataclass(frozen=True)
class ActAs(Entry):
    service_account: str
    member: str


@role("google_service_account_iam_member", "clients-impersonation", _impersonation)
@dataclass(frozen=True)
class Impersonation(Entry):
    service_account: str
    member: str


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


def _subscriber(res: ClientResources) -> PubsubSubscriptionIamMember:
    return PubsubSubscriptionIamMember(
        res.scope, Subscriber.ROLE.name,
        project=res.props.settings.project_id, subscription=each("subscription"),
        role="roles/pubsub.subscriber", member=each("member"),
    )


@role("google_pubsub_subscription_iam_member", "clients-subscribers", _subscriber)
@dataclass(frozen=True)
class Subscriber(Entry):
    subscription: str
    member: str


def _publisher(res: ClientResources) -> PubsubTopicIamMember:
    return PubsubTopicIamMember(
        res.scope, Publisher.ROLE.name,
        project=res.props.settings.project_id, topic=each("topic"),
        role="roles/pubsub.publisher", member=each("member"),
    )


@role("google_pubsub_topic_iam_member", "clients-publishers", _publisher)
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


def _channel(res: ClientResources) -> MonitoringNotificationChannel:
    settings = res.props.settings
    return MonitoringNotificationChannel(
        res.scope, ClientChannel.ROLE.name, project=settings.project_id, type="email",
        display_name=each("display_name"), labels={"email_address": each("email")},
        user_labels=settings.all_labels(),
    )


@role("google_monitoring_notification_channel", "clients-channels", _channel)
@dataclass(frozen=True)
class ClientChannel(Entry):
    """The client's email channel (its `contact`): its budget's mails go there."""

    display_name: str
    email: str


def _budget(res: ClientResources) -> BillingBudget:
    """One budget per client, filtered on the `client` label that Batch puts on the client's
    VMs, GPUs and disks (jobs/billing_labels.py) and the platform on its bucket and topics.
    `budget_filter.labels` takes ONE label key/value ("A single label and value pair
    specifying that usage from only this set of labeled resources should be included in the
    budget", registry.terraform.io/providers/hashicorp/google/latest/docs/resources/
    billing_budget#labels). Notifications go to the client's channel and the environment's
    (`monitoring_notification_channels`, "A maximum of 5 channels are allowed", same page)."""
    props = res.props
    settings = props.settings
    billing = props.billing
    assert billing is not None and settings.billing_account is not None
    budget = BillingBudget(
        res.scope,
        ClientBudget.ROLE.name,
        provider=billing.provider,
        billing_account=settings.billing_account,
        display_name=each("display_name"),
        budget_filter=BillingBudgetBudgetFilter(
            projects=[f"projects/{billing.project_number}"],
            labels={billing_labels.CLIENT: each("client")},
        ),
        amount=BillingBudgetAmount(specified_amount=BillingBudgetAmountSpecifiedAmount(
            currency_code="USD", units=each("units"))),
        threshold_rules=[
            BillingBudgetThresholdRules(threshold_percent=t)
            for t in settings.observability.budget_thresholds
        ] + [BillingBudgetThresholdRules(threshold_percent=1.0, spend_basis="FORECASTED_SPEND")],
        all_updates_rule=BillingBudgetAllUpdatesRule(monitoring_notification_channels=[]),
    )
    budget.add_override("all_updates_rule.monitoring_notification_channels", each("channels"))
    return budget


@role("google_billing_budget", "clients-budgets", _budget)
@dataclass(frozen=True)
class ClientBudget(Entry):
    display_name: str
    client: str  # the `client` label value the budget filters on
    units: str  # whole USD per month
    channels: list[str]  # the client's channel, then the environment's (at most 5)
