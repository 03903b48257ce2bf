"""The client's storage and identities, as typed `for_each` entries (stacks/client_resources.py):
its bucket, the marker notifications, `client-<c>` and `run-<c>`, the bucket grants and the
act-as and impersonation grants."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.client_resources import ClientResources, Entry, each, role
from stacks.provider import (
    ServiceAccount,
    ServiceAccountIamMember,
    StorageBucket,
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
    StorageNotification,
)
from stacks.storage import client_bucket_settings


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
    # client-<c> lives outside the platform project (docs/clients.md).
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
