"""Service accounts of the platform and the one helper that grants project-level roles.

Grants go on the narrowest resource GCP offers; `project_role` exists for the few roles that
have no narrower home (batch.jobsEditor, logging.logWriter, eventarc.eventReceiver,
workflows.invoker, batch.agentReporter) and refuses the roles that must never be project-wide.
"""

from __future__ import annotations

from constructs import Construct

from stacks.provider import ProjectIamMember, ServiceAccount
from stacks.settings import check_service_account_id

BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
NEVER_PROJECT_WIDE = frozenset(
    {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"}
)
# Roles that only exist at project level for what we need them for.
PROJECT_LEVEL_ONLY = frozenset(
    {
        "roles/batch.jobsEditor",
        "roles/batch.agentReporter",
        "roles/logging.logWriter",
        "roles/eventarc.eventReceiver",
        "roles/workflows.invoker",
    }
)


def project_role(
    scope: Construct, id_: str, project: str, role: str, member: str
) -> ProjectIamMember:
    """A project-level grant, allowed only for roles with no narrower resource."""
    if role in BASIC_ROLES or role in NEVER_PROJECT_WIDE or role not in PROJECT_LEVEL_ONLY:
        raise ValueError(
            f"role {role!r} may not be granted at project level; grant it on the resource "
            f"(allowed project-level roles: {', '.join(sorted(PROJECT_LEVEL_ONLY))})"
        )
    return ProjectIamMember(scope, id_, project=project, role=role, member=member)


def service_account(
    scope: Construct, id_: str, project: str, account_id: str, description: str
) -> ServiceAccount:
    check_service_account_id(account_id)
    return ServiceAccount(
        scope,
        id_,
        project=project,
        account_id=account_id,
        display_name=description[:100],
        description=description,
    )
