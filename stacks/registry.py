"""Artifact Registry Docker repository for the job images."""

from __future__ import annotations

from constructs import Construct

from stacks.provider import (
    ArtifactRegistryRepository,
    ArtifactRegistryRepositoryCleanupPolicies,
    ArtifactRegistryRepositoryCleanupPoliciesCondition,
    ArtifactRegistryRepositoryCleanupPoliciesMostRecentVersions,
    ArtifactRegistryRepositoryDockerConfig,
    ArtifactRegistryRepositoryIamMember,
)
from stacks.settings import EnvironmentSettings
from stacks.storage import DAY_S


class ImageRegistry(Construct):
    """Immutable tags (a tag always means the same image) and cleanup of old versions."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        settings: EnvironmentSettings,
        *,
        kms_key: str | None,
        depends_on: list,
    ) -> None:
        super().__init__(scope, id_)
        self.settings = settings
        self.repository = ArtifactRegistryRepository(
            self,
            "repo",
            project=settings.project_id,
            location=settings.region,
            repository_id=settings.registry_repo,
            format="DOCKER",
            description="GPU batch job images",
            docker_config=ArtifactRegistryRepositoryDockerConfig(immutable_tags=True),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                ArtifactRegistryRepositoryCleanupPolicies(
                    id="keep-recent-tagged",
                    action="KEEP",
                    most_recent_versions=ArtifactRegistryRepositoryCleanupPoliciesMostRecentVersions(
                        keep_count=settings.registry_keep_versions
                    ),
                ),
                ArtifactRegistryRepositoryCleanupPolicies(
                    id="delete-untagged",
                    action="DELETE",
                    condition=ArtifactRegistryRepositoryCleanupPoliciesCondition(
                        tag_state="UNTAGGED",
                        older_than=f"{settings.registry_untagged_days * DAY_S}s",
                    ),
                ),
            ],
            kms_key_name=kms_key,
            labels=settings.all_labels(),
            depends_on=depends_on,
        )

    def grant_read(self, id_: str, member: str) -> ArtifactRegistryRepositoryIamMember:
        """Image pull on this repository only (never project-wide)."""
        return ArtifactRegistryRepositoryIamMember(
            self,
            f"reader-{id_}",
            project=self.settings.project_id,
            location=self.settings.region,
            repository=self.repository.name,
            role="roles/artifactregistry.reader",
            member=member,
        )
