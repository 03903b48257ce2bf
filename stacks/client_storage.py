"""The client's storage and identities, as typed `for_each` entries (stacks/client_resources.py):
its bucket, the marker notifications, `client-<c>` and `run-<c>`, and the authoritative IAM
policies of the bucket (its grants) and of the two accounts (act-as, impersonation)."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.client_resources import ClientResources, Entry, each, role
from stacks.provider import (
    ServiceAccount,
    ServiceAccountIamPolicy,
    StorageBucket,
    StorageBucketIamPolicy,
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


def _bucket_policy(res: ClientResources) -> StorageBucketIamPolicy:
    # Authoritative: the bucket's whole policy (client_grants, conditions included). It
    # replaces the bucket's default bindings too (docs/clients.md "What one call creates").
    return StorageBucketIamPolicy(res.scope, BucketPolicy.ROLE.name, bucket=each("bucket"),
                                  policy_data=each("policy_data"))


@role("google_storage_bucket_iam_policy", "clients-bucket-policy", _bucket_policy,
      replaces=("google_storage_bucket_iam_member.clients-bucket-grants",
                "google_storage_bucket_iam_member.clients-bucket-roles"))
@dataclass(frozen=True)
class BucketPolicy(Entry):
    """The client's bucket policy: plain roles, and roles under an IAM condition (an
    object-name prefix); `policy_data` a template of tfjson.iam."""

    bucket: str
    policy_data: str


def _account_policy(res: ClientResources, kind: type[AccountPolicy]
                    ) -> ServiceAccountIamPolicy:
    return ServiceAccountIamPolicy(res.scope, kind.ROLE.name,
                                   service_account_id=each("service_account"),
                                   policy_data=each("policy_data"))


def _run_policy(res: ClientResources) -> ServiceAccountIamPolicy:
    # Whoever creates Batch jobs that run as `run-<c>` (the job workflows, operators'
    # bin/submit) may act as that account only.
    return _account_policy(res, RunAccountPolicy)


def _client_policy(res: ClientResources) -> ServiceAccountIamPolicy:
    # The client's people act through the client account (impersonation), never with bucket
    # roles of their own; token creator on this one account only.
    return _account_policy(res, ClientAccountPolicy)


@dataclass(frozen=True)
class AccountPolicy(Entry):
    """A service account's whole IAM policy (`policy_data` a template of tfjson.iam)."""

    service_account: str
    policy_data: str


@role("google_service_account_iam_policy", "clients-run-sa-policy", _run_policy,
      replaces=("google_service_account_iam_member.clients-run-act-as",))
@dataclass(frozen=True)
class RunAccountPolicy(AccountPolicy):
    """`run-<c>`'s policy: serviceAccountUser (act-as) for the workflows and operators."""


@role("google_service_account_iam_policy", "clients-sa-policy", _client_policy,
      replaces=("google_service_account_iam_member.clients-impersonation",))
@dataclass(frozen=True)
class ClientAccountPolicy(AccountPolicy):
    """`client-<c>`'s policy (a client with a principal): serviceAccountTokenCreator."""
