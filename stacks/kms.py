"""Customer-managed encryption: one key ring and key per environment, granted to service agents."""

from __future__ import annotations

from constructs import Construct

from stacks.provider import KmsCryptoKey, KmsCryptoKeyIamMember, KmsKeyRing
from stacks.settings import EnvironmentSettings

ENCRYPTER_DECRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
KEY_ROTATION = "7776000s"  # 90 days


# Services whose agent encrypts with our key; each agent is made to exist by
# `google_project_service_identity` before it is granted (a new project may not have it yet).
AGENT_SERVICES = {
    "artifactregistry": "artifactregistry.googleapis.com",
    "pubsub": "pubsub.googleapis.com",
    "workflows": "workflows.googleapis.com",
}


KEY_NAME = "batch-data"


def ring_name(settings: EnvironmentSettings) -> str:
    return f"batch-{settings.name}"


def key_path(settings: EnvironmentSettings) -> str:
    """The key's id as a literal (a client shard stack names it; the platform stack makes it)."""
    return (f"projects/{settings.project_id}/locations/{settings.region}/keyRings/"
            f"{ring_name(settings)}/cryptoKeys/{KEY_NAME}")


class DataKey(Construct):
    """Key ring + key; encrypter/decrypter only for the service agents given."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        settings: EnvironmentSettings,
        *,
        agents: dict[str, str],
        depends_on: list,
        grants_after: list | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.ring = KmsKeyRing(
            self,
            "ring",
            name=ring_name(settings),
            location=settings.region,
            project=settings.project_id,
            depends_on=depends_on,
        )
        self.key = KmsCryptoKey(
            self,
            "key",
            name=KEY_NAME,
            key_ring=self.ring.id,
            rotation_period=KEY_ROTATION,
            purpose="ENCRYPT_DECRYPT",
            labels=settings.all_labels(),
            lifecycle={"prevent_destroy": True},
        )
        self.grants: dict[str, KmsCryptoKeyIamMember] = {}
        for name, email in agents.items():
            self.grants[name] = KmsCryptoKeyIamMember(
                self,
                f"agent-{name}",
                crypto_key_id=self.key.id,
                role=ENCRYPTER_DECRYPTER,
                member=f"serviceAccount:{email}",
                # A grant to a just-made agent waits for the agent to propagate.
                depends_on=grants_after,
            )

    @property
    def key_id(self) -> str:
        return self.key.id
