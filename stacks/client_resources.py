"""The `for_each` resources every client shares (Cloud Foundation Fabric style).

One Terraform resource per type and role for all clients of a platform, keyed by stable keys
(`<client>` or `<client>/<what>`). Their maps are plain Python dicts written into
`cdk.tf.json` after the CDK synthesizes (`stacks/deferred.py`): one jsii construct per role,
whatever the number of clients. What is the same for every client stays a literal attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stacks.deferred import deferred_map
from stacks.props import ClientResourceProps
from stacks.provider import (
    CloudSchedulerJob,
    CloudSchedulerJobHttpTarget,
    CloudSchedulerJobHttpTargetOauthToken,
    CloudSchedulerJobRetryConfig,
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
)
from stacks.storage import client_bucket_settings

RESULTS_RETENTION = "604800s"  # 7 days: a client that is away for a week loses nothing


def each(field: str) -> str:
    """The value of `field` in the current `for_each` entry."""
    return f"${{each.value.{field}}}"


# role -> (Terraform resource type, resource name (the construct id under the platform)).
# The names are part of every client resource's address: renaming one moves state.
RESOURCES: dict[str, tuple[str, str]] = {
    "bucket": ("google_storage_bucket", "clients-bucket"),
    "notification": ("google_storage_notification", "clients-intake"),
    "sa": ("google_service_account", "clients-sa"),
    "run-sa": ("google_service_account", "clients-run-sa"),
    "bucket-grants": ("google_storage_bucket_iam_member", "clients-bucket-grants"),
    "bucket-roles": ("google_storage_bucket_iam_member", "clients-bucket-roles"),
    "act-as": ("google_service_account_iam_member", "clients-run-act-as"),
    "impersonation": ("google_service_account_iam_member", "clients-impersonation"),
    "topic": ("google_pubsub_topic", "clients-results"),
    "subscription": ("google_pubsub_subscription", "clients-results-sub"),
    "subscribers": ("google_pubsub_subscription_iam_member", "clients-subscribers"),
    "publishers": ("google_pubsub_topic_iam_member", "clients-publishers"),
    "secret-access": ("google_secret_manager_secret_iam_member", "clients-secret-access"),
    "schedule": ("google_cloud_scheduler_job", "clients-schedules"),
}


def ref(role: str, key: str, attribute: str) -> str:
    """`${google_service_account.clients-sa["acme"].email}`: one entry's attribute."""
    rtype, name = RESOURCES[role]
    return f'${{{rtype}.{name}["{key}"].{attribute}}}'


class ClientResources:
    """The `for_each` resources of every client of one platform, keyed by stable keys.

    `add(role, key, value)` is plain Python; the resource of a role is made (one jsii
    construct) the first time the role gets an entry, its `for_each` a token that
    `stacks.deferred` replaces by the entries after synth.
    """

    def __init__(self, props: ClientResourceProps) -> None:
        self.props = props
        self.scope = props.scope
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}
        self.resources: dict[str, Any] = {}
        self._builders: dict[str, Callable[[], Any]] = {
            "bucket": self._bucket,
            "notification": self._notification,
            "sa": lambda: self._service_account("sa"),
            "run-sa": lambda: self._service_account("run-sa"),
            "bucket-grants": self._bucket_grants,
            "bucket-roles": self._bucket_roles,
            "act-as": self._act_as,
            "impersonation": self._impersonation,
            "topic": self._topic,
            "subscription": self._subscription,
            "subscribers": self._subscribers,
            "publishers": self._publishers,
            "secret-access": self._secret_access,
            "schedule": self._schedule,
        }

    def add(self, role: str, key: str, value: dict[str, Any]) -> None:
        entries = self.entries.get(role)
        if entries is None:
            entries = self.entries[role] = {}
            resource = self._builders[role]()
            resource.add_override("for_each", deferred_map(entries))
            self.resources[role] = resource
        if key in entries:
            raise ValueError(f"{RESOURCES[role][1]}: key {key!r} is declared twice")
        entries[key] = value

    # ---- one builder per role: literal where every client is the same ----------------------
    def _id(self, role: str) -> str:
        return RESOURCES[role][1]

    def _deps(self, *, key_grant: str | None = None) -> list[Any]:
        grant = self.props.encryption.after(key_grant) if key_grant else []
        return [*self.props.apis, *grant]

    def _bucket(self) -> StorageBucket:
        props = self.props
        bucket = StorageBucket(
            self.scope,
            self._id("bucket"),
            name=each("name"),
            depends_on=self._deps(key_grant="gcs"),
            **client_bucket_settings(props.settings, props.encryption.key, props.log_bucket_name),
        )
        bucket.add_override("labels", each("labels"))
        bucket.add_override("logging.log_object_prefix", each("name"))
        return bucket

    def _notification(self) -> StorageNotification:
        uploads = self.props.uploads
        # One configuration per (client bucket, job): new objects under the job's marker
        # prefix `inputs/_ready/<job>/` go to the job's intake topic; data objects notify
        # nothing (notifications filter by object-name prefix only, at most 10 configurations
        # per event type per bucket: cloud.google.com/storage/docs/pubsub-notifications).
        # The Cloud Storage service agent must be a publisher there first
        # (cloud.google.com/storage/docs/reporting-changes): `after_publishers`.
        return StorageNotification(
            self.scope,
            self._id("notification"),
            bucket=each("bucket"),
            topic=each("topic"),
            payload_format="JSON_API_V1",
            event_types=["OBJECT_FINALIZE"],
            object_name_prefix=each("prefix"),
            depends_on=[uploads.publisher],
        )

    def after_publishers(self, grants: list[Any]) -> None:
        """The notifications wait for the storage agent's grants on the intake topics."""
        notification = self.resources.get("notification")
        if notification is not None:
            notification.add_override("depends_on", [
                f"{g.terraform_resource_type}.{g.friendly_unique_id}"
                for g in grants])

    def _service_account(self, role: str) -> ServiceAccount:
        return ServiceAccount(
            self.scope,
            self._id(role),
            # client-<c> lives outside the platform project (issue 22, docs/clients.md).
            project=(self.props.settings.clients_project if role == "sa"
                     else self.props.settings.project_id),
            account_id=each("account_id"),
            display_name=each("display_name"),
            description=each("description"),
        )

    def _bucket_grants(self) -> StorageBucketIamMember:
        return StorageBucketIamMember(
            self.scope,
            self._id("bucket-grants"),
            bucket=each("bucket"),
            role=each("role"),
            member=each("member"),
            condition=StorageBucketIamMemberCondition(
                title=each("title"), description=each("description"), expression=each("expression")
            ),
        )

    def _bucket_roles(self) -> StorageBucketIamMember:
        # Unconditional roles on the client's own bucket (the bucket is the boundary).
        return StorageBucketIamMember(
            self.scope,
            self._id("bucket-roles"),
            bucket=each("bucket"),
            role=each("role"),
            member=each("member"),
        )

    def _act_as(self) -> ServiceAccountIamMember:
        # Whoever creates Batch jobs that run as `run-<c>` (the job workflows, operators'
        # bin/submit) may act as that account only.
        return ServiceAccountIamMember(
            self.scope,
            self._id("act-as"),
            service_account_id=each("service_account"),
            role="roles/iam.serviceAccountUser",
            member=each("member"),
        )

    def _impersonation(self) -> ServiceAccountIamMember:
        # The client's people act through the client account (impersonation), never with
        # bucket roles of their own; token creator on this one account only.
        return ServiceAccountIamMember(
            self.scope,
            self._id("impersonation"),
            service_account_id=each("service_account"),
            role="roles/iam.serviceAccountTokenCreator",
            member=each("member"),
        )

    def _topic(self) -> PubsubTopic:
        topic = PubsubTopic(
            self.scope,
            self._id("topic"),
            project=self.props.settings.project_id,
            name=each("name"),
            kms_key_name=self.props.encryption.key,
            message_retention_duration=RESULTS_RETENTION,
            depends_on=self._deps(key_grant="pubsub"),
        )
        topic.add_override("labels", each("labels"))
        return topic

    def _subscription(self) -> PubsubSubscription:
        sub = PubsubSubscription(
            self.scope,
            self._id("subscription"),
            project=self.props.settings.project_id,
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
            self.scope,
            self._id("subscribers"),
            project=self.props.settings.project_id,
            subscription=each("subscription"),
            role="roles/pubsub.subscriber",
            member=each("member"),
        )

    def _publishers(self) -> PubsubTopicIamMember:
        return PubsubTopicIamMember(
            self.scope,
            self._id("publishers"),
            project=self.props.settings.project_id,
            topic=each("topic"),
            role="roles/pubsub.publisher",
            member=each("member"),
        )

    def _secret_access(self) -> SecretManagerSecretIamMember:
        # Map values name secrets by id (a literal): the secrets are declared with the jobs,
        # before any client, and the grant waits for them.
        return SecretManagerSecretIamMember(
            self.scope,
            self._id("secret-access"),
            project=self.props.settings.project_id,
            secret_id=each("secret"),
            role="roles/secretmanager.secretAccessor",
            member=each("member"),
            depends_on=list(self.props.secrets.secrets.values()),
        )

    def _schedule(self) -> CloudSchedulerJob:
        props = self.props
        settings = props.settings
        return CloudSchedulerJob(
            self.scope,
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
                    service_account_email=props.identities.scheduler_email,
                    scope="https://www.googleapis.com/auth/cloud-platform",
                ),
            ),
            depends_on=[*props.workflows(), props.scheduler_invoker, *self._deps()],
        )
