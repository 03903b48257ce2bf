"""Parts of the platform stack declared by plain functions on the stack (their construct ids,
hence their state addresses, stay those of the stack): the deployer's act-as grants, the ad-hoc
grants, the job secrets' containers and the intake dead-letter topic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stacks import layout
from stacks.agents import IAM_PROPAGATION
from stacks.client_messaging import RESULTS_RETENTION, ResultsSubscription, ResultsTopic
from stacks.layout import TenancyLayout
from stacks.provider import (
    PubsubSubscription,
    PubsubSubscriptionExpirationPolicy,
    PubsubSubscriptionIamMember,
    PubsubTopic,
    PubsubTopicIamMember,
    SecretManagerSecret,
    SecretManagerSecretReplication,
    SecretManagerSecretReplicationUserManaged,
    SecretManagerSecretReplicationUserManagedReplicas,
    ServiceAccountIamMember,
    Sleep,
    TerraformStack,
    barrier,
)
from stacks.settings import EnvironmentSettings
from stacks.storage import PlatformBuckets

# The for_each key the intake dead-letter topic and subscription had among the clients' results
# resources before they moved to their own resources (the `moved` blocks name it).
OLD_DEAD_LETTER_KEY = "_intake-dead-letter"


def sa_member_ref(logical_id: str) -> str:
    return f"serviceAccount:${{google_service_account.{logical_id}.email}}"


def deployer_acts_as(stack: TerraformStack, settings: EnvironmentSettings,
                     accounts: Sequence[str]) -> Sleep:
    """The deployer may act as the accounts the workflows, triggers and schedules run as
    (creating them asks iam.serviceAccounts.actAs on that account,
    cloud.google.com/iam/docs/service-accounts-actas), on those accounts only. The stack grants
    it (the deployer's serviceAccountAdmin includes setIamPolicy on accounts), because a
    project-level grant conditioned on the accounts' names cannot work: IAM Conditions'
    resource attributes do not cover iam.googleapis.com
    (cloud.google.com/iam/docs/conditions-resource-attributes). Workflows (and through them
    triggers and schedules) wait behind the barrier after these grants."""
    grants = [
        ServiceAccountIamMember(
            stack, f"deployer-act-as-{account}",
            service_account_id=f"${{google_service_account.{account}.name}}",
            role="roles/iam.serviceAccountUser",
            member=f"serviceAccount:{settings.layout.deployer_sa_email}",
        )
        for account in accounts
    ]
    return barrier(stack, "deployer-ready", grants, IAM_PROPAGATION)


def adhoc_grants(stack: TerraformStack, settings: EnvironmentSettings, buckets: PlatformBuckets,
                 operator_member: str) -> None:
    """Ad-hoc runs (and the operators who start them) list, read, write and delete under
    `jobs/` of the data bucket only; operators may act as the ad-hoc identity."""
    for who, member in (("adhoc", sa_member_ref(settings.adhoc_sa_id)),
                        ("operator", operator_member)):
        buckets.grant_objects(who, member, "jobs/")
    ServiceAccountIamMember(
        stack,
        "operator-act-as-adhoc",
        service_account_id=f"${{google_service_account.{settings.adhoc_sa_id}.name}}",
        role="roles/iam.serviceAccountUser",
        member=operator_member,
    )


def intake_dead_letter(stack: TerraformStack, settings: EnvironmentSettings,
                       kms_key: str | None, depends_on: Sequence[Any], workflow_member: str,
                       operator_member: str) -> list[dict[str, str]]:
    """The intake dead-letter topic and its operators' subscription: events whose run could not
    publish an outcome land there (`bin/submit intake dead-letters [--replay]`,
    docs/clients.md "Intake"). Once entries of the clients' results resources, moved here so
    that no client shard declares them too: returns the `moved` blocks."""
    labels = {"purpose": "intake-dead-letter"}
    topic = PubsubTopic(
        stack, "intake-dead-letter", project=settings.project_id,
        name=layout.INTAKE_DEAD_LETTER_TOPIC, kms_key_name=kms_key,
        message_retention_duration=RESULTS_RETENTION, labels=labels,
        depends_on=list(depends_on))
    sub = PubsubSubscription(
        stack, "intake-dead-letter-sub", project=settings.project_id,
        name=TenancyLayout.dead_letter_subscription(), topic=topic.id,
        message_retention_duration=RESULTS_RETENTION, ack_deadline_seconds=60,
        expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=""), labels=labels)
    PubsubTopicIamMember(
        stack, "intake-dead-letter-workflow", project=settings.project_id,
        topic=topic.name, role="roles/pubsub.publisher", member=workflow_member)
    PubsubSubscriptionIamMember(
        stack, "intake-dead-letter-operator", project=settings.project_id,
        subscription=sub.name, role="roles/pubsub.subscriber", member=operator_member)
    for resource in (topic, sub):
        resource.override_logical_id(resource.node.id)
    # The member grants' resources of then (`clients-publishers`, `clients-subscribers`) are
    # forgotten since (`removed` blocks); Terraform applies the moves first.
    old = [(f'{ResultsTopic.ROLE.tf_type}.{ResultsTopic.ROLE.name}["{OLD_DEAD_LETTER_KEY}"]',
            "google_pubsub_topic.intake-dead-letter"),
           (f'{ResultsSubscription.ROLE.tf_type}.{ResultsSubscription.ROLE.name}'
            f'["{OLD_DEAD_LETTER_KEY}"]', "google_pubsub_subscription.intake-dead-letter-sub"),
           (f'google_pubsub_topic_iam_member.clients-publishers["{OLD_DEAD_LETTER_KEY}/workflow"]',
            "google_pubsub_topic_iam_member.intake-dead-letter-workflow"),
           ("google_pubsub_subscription_iam_member.clients-subscribers"
            f'["{OLD_DEAD_LETTER_KEY}/operator"]',
            "google_pubsub_subscription_iam_member.intake-dead-letter-operator")]
    return [{"from": frm, "to": to} for frm, to in old]


def secret_container(stack: TerraformStack, settings: EnvironmentSettings, secret_id: str,
                     depends_on: Sequence[Any]) -> SecretManagerSecret:
    """A Secret Manager secret container (no value in Terraform), replicated in the region."""
    return SecretManagerSecret(
        stack,
        f"secret-{secret_id}",
        project=settings.project_id,
        secret_id=secret_id,
        replication=SecretManagerSecretReplication(
            user_managed=SecretManagerSecretReplicationUserManaged(
                replicas=[SecretManagerSecretReplicationUserManagedReplicas(
                    location=settings.region)]
            )
        ),
        labels=settings.all_labels(),
        depends_on=list(depends_on),
    )
