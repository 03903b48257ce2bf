"""BatchJob: a declared job's identity, grants, secrets, quota demand and rendered JSON.

Two-phase validation: pydantic validates the JobSpec at declaration; this construct checks the
rules that span objects (service account id length, region allowed, secrets declared once) when
it is added to a stack, before anything is synthesized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constructs import Construct

from jobs import JobSpec
from jobs.render import render_job
from stacks.conditions import objects_under
from stacks.identity import allow_act_as, project_role, sa_member, service_account
from stacks.provider import (
    PubsubTopicIamMember,
    SecretManagerSecret,
    SecretManagerSecretIamMember,
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
)
from stacks.quotas import GpuDemand

if TYPE_CHECKING:
    from stacks.platform import PlatformStack

def _object_grants(
    read: list[str], write: list[str]
) -> tuple[tuple[str, str, list[str], str], ...]:
    """(kind, role, prefixes, verb) of a job's object grants: viewer to read, creator to write
    (outputs are create-once; the job never needs to overwrite or delete)."""
    return (
        ("read", "roles/storage.objectViewer", read, "reads"),
        ("write", "roles/storage.objectCreator", write, "writes"),
    )


JOB_PROJECT_ROLES = ("roles/batch.agentReporter", "roles/logging.logWriter")


class BatchJob(Construct):
    """Everything one declared job needs in one environment."""

    def __init__(self, platform: PlatformStack, spec: JobSpec) -> None:
        super().__init__(platform, f"job-{spec.name}")
        self.platform = platform
        self.spec = spec
        settings = platform.settings
        self._validate(platform)
        self.service_account = service_account(
            self,
            "sa",
            settings.project_id,
            settings.job_sa_id(spec.name),
            f"Runtime identity of the {spec.name} batch job",
        )
        self.member = sa_member(self.service_account)
        for role in JOB_PROJECT_ROLES:
            project_role(self, role.split("/")[1], settings.project_id, role, self.member)
        platform.registry.grant_read(f"job-{spec.name}", self.member)
        # The workflow creates Batch jobs that run as this account, and may act as it only.
        allow_act_as(self, "workflow-act-as", self.service_account, sa_member(platform.workflow_sa))
        # Ad-hoc runs (bin/submit) read and write under jobs/<job>/.
        self.grant_prefixes("adhoc", read=[f"jobs/{spec.name}/"], write=[f"jobs/{spec.name}/"])
        self.secrets = self._declare_secrets()
        for i, topic in enumerate(self._notification_topics()):
            PubsubTopicIamMember(
                self,
                f"notify-{i}",
                project=settings.project_id,
                topic=topic,
                role="roles/pubsub.publisher",
                member=self.member,
            )
        self._add_quota_demand()
        self.job_json: dict[str, Any] = render_job(spec, settings.render_context(spec.name))

    def _validate(self, platform: PlatformStack) -> None:
        settings = platform.settings
        sa_id = settings.job_sa_id(self.spec.name)
        if len(sa_id) > 30:
            raise ValueError(
                f"jobs: {self.spec.name!r} is too long for its service account id {sa_id!r} "
                f"(at most 26 characters in a name)"
            )
        region = self.spec.region or settings.region
        if region not in settings.guardrails.allowed_regions:
            raise ValueError(
                f"jobs.{self.spec.name}.region: {region!r} is not an allowed region of "
                f"{settings.name} ({', '.join(settings.guardrails.allowed_regions)})"
            )

    def grant_prefixes(self, key: str, *, read: list[str], write: list[str]) -> None:
        """Object read on `read` prefixes and create on `write` prefixes of the data bucket."""
        bucket = self.platform.settings.data_bucket
        for kind, role, prefixes, verb in _object_grants(read, write):
            if not prefixes:
                continue
            StorageBucketIamMember(
                self,
                f"{kind}-{key}",
                bucket=self.platform.buckets.data_bucket_name,
                role=role,
                member=self.member,
                condition=StorageBucketIamMemberCondition(
                    title=f"{self.spec.name}-{kind}-{key}",
                    description=f"{self.spec.name} {verb} {', '.join(prefixes)}",
                    expression=objects_under(bucket, *prefixes),
                ),
            )

    def grant_client(self, client: str) -> None:
        """Read a client's inputs (and outputs, for done markers); write its outputs.

        Entries of the clients' `for_each` bucket grants (keys `<client>/<job>/job-reads`,
        `.../job-writes`), not resources of this job: one onboarding costs no construct.
        """
        bucket = self.platform.settings.data_bucket
        name = self.spec.name
        read = [f"{client}/inputs/", f"{client}/outputs/"]
        write = [f"{client}/outputs/"]
        grants = self.platform.client_resources
        for kind, role, prefixes, verb in _object_grants(read, write):
            grants.add("bucket-grants", f"{client}/{name}/job-{kind}s", {
                "role": role,
                "member": self.member,
                "title": f"{name}-{kind}-client-{client}",
                "description": f"{name} {verb} {', '.join(prefixes)}",
                "expression": objects_under(bucket, *prefixes),
            })

    def _declare_secrets(self) -> dict[str, SecretManagerSecret]:
        """Access to the job's own secrets; the containers are the platform's (shared ids)."""
        settings = self.platform.settings
        secrets: dict[str, SecretManagerSecret] = {}
        for secret_id in sorted(set(self.spec.secret_ids())):
            secret = self.platform.secret(secret_id)
            SecretManagerSecretIamMember(
                self,
                f"secret-{secret_id}-access",
                project=settings.project_id,
                secret_id=secret.secret_id,
                role="roles/secretmanager.secretAccessor",
                member=self.member,
            )
            secrets[secret_id] = secret
        return secrets

    def _notification_topics(self) -> list[str]:
        # Full topic names (another project's topic) are granted by their owners.
        return sorted({n.topic for n in self.spec.notifications if "/" not in n.topic})

    def _add_quota_demand(self) -> None:
        demand = self.spec.peak_gpu_demand(self.platform.settings.name)
        if demand is None:
            return
        family, count, spot = demand
        region = self.spec.region or self.platform.settings.region
        self.platform.quotas.add_demand(
            GpuDemand(region=region, family=family, spot=spot, count=count),
            reason=f"{self.spec.name} {count}",
        )
