"""Service agents (Google-managed identities of the services) and the first-apply barriers.

A new project has no service agents: `google_project_service_identity` (google-beta) makes one
exist and returns its email; the storage agent is made by reading
`data.google_storage_project_service_account`. A new agent is then given its service-agent role
by Google, and every grant propagates in 2-7 minutes (cloud.google.com/iam/docs/
access-change-propagation), while the provider retries only 429 and 5xx. Known first-apply
failures this prevents: Eventarc's "Permission denied while using the Eventarc Service Agent"
(hashicorp/terraform-provider-google#14584), CMEK resources refused right after their key
grant, and the storage notification refused right after the agent's publisher grant.
So each of those waits behind a `time_sleep` (stacks/provider.py `barrier`).
"""

from __future__ import annotations

from typing import Any

from constructs import Construct

from stacks.kms import AGENT_SERVICES
from stacks.provider import (
    DataGoogleStorageProjectServiceAccount,
    Sleep,
    barrier,
    project_service_identity,
)
from stacks.settings import EnvironmentSettings

# Propagation of a grant (or of a new agent's role): "typically 2 minutes", up to 7 or more
# (cloud.google.com/iam/docs/access-change-propagation). A barrier runs once, at creation.
IAM_PROPAGATION = "120s"
EVENTARC = "eventarc.googleapis.com"


class ServiceAgents(Construct):
    """The agents the stack grants to or relies on; `emails[name]`; `ready`: a barrier after
    all of them (grants to an agent wait for it)."""

    def __init__(
        self, scope: Construct, id_: str, settings: EnvironmentSettings, depends_on: list[Any]
    ) -> None:
        super().__init__(scope, id_)
        self.storage = DataGoogleStorageProjectServiceAccount(
            scope, "gcs-agent", project=settings.project_id
        )
        self.emails: dict[str, str] = {"gcs": self.storage.email_address}
        # Eventarc's agent validates every trigger: made to exist always.
        services = {"eventarc": EVENTARC, **(AGENT_SERVICES if settings.cmek else {})}
        identities = []
        for name, service in services.items():
            identity = project_service_identity(
                scope, f"agent-{name}", settings.project_id, service, depends_on=depends_on
            )
            identities.append(identity)
            self.emails[name] = identity.get_string_attribute("email")
        self.storage_member: str = self.storage.member
        self.ready: Sleep = barrier(
            self, "ready", [self.storage, *identities], IAM_PROPAGATION
        )
        self.ready.override_logical_id("agents-ready")

    def key_users(self) -> dict[str, str]:
        """The agents that encrypt with the environment's key (CMEK): storage and
        AGENT_SERVICES, not Eventarc."""
        return {k: v for k, v in self.emails.items() if k == "gcs" or k in AGENT_SERVICES}
