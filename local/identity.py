"""Who a local request is: the one way to make credentials for a principal email.

Locally a principal is named by an opaque bearer token, `gpub-local.<email>` (the emulator's
stand-in for an OAuth access token; nothing checks a signature, as nothing could offline).
Every local GCS client (submit, demo, tests, the runner through `GPUB_LOCAL_TOKEN`) builds
its credentials here, so the IAM layer (`local.iam_proxy`) always knows who is calling.
"""

from __future__ import annotations

import os
from typing import Any

from google.oauth2.credentials import Credentials

TOKEN_PREFIX = "gpub-local."
# Tasks get their token the way a VM gets one from its metadata server: from the backend.
TOKEN_ENV = "GPUB_LOCAL_TOKEN"
# Terraform's deployer: creates buckets (the local "apply") and bypasses bucket policies, as a
# project owner running `terraform apply` would not be stopped by them.
ADMIN_EMAIL = "terraform@local.iam.gserviceaccount.com"
# A job without allocationPolicy.serviceAccount runs as the Compute Engine default account;
# locally it holds no grants. https://cloud.google.com/batch/docs/create-run-job-custom-service-account
DEFAULT_COMPUTE_EMAIL = "default-compute@developer.gserviceaccount.com"


def token_for(email: str) -> str:
    if not email or "@" not in email:
        raise ValueError(f"principal: expected an email, got {email!r}")
    return TOKEN_PREFIX + email


def email_from_token(token: str) -> str | None:
    """The principal a token names, None when it is not one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    email = token[len(TOKEN_PREFIX):]
    return email if "@" in email else None


def email_from_authorization(header: str | None) -> str | None:
    """`Authorization: Bearer gpub-local.<email>` -> email; None when absent or foreign."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return email_from_token(token.strip()) if scheme.lower() == "bearer" else None


def credentials_for(email: str) -> Credentials:
    """google-auth credentials that send the principal's local token (never refreshed: the
    token does not expire)."""
    return Credentials(token=token_for(email))  # type: ignore[no-untyped-call]


# A local command acts as this principal (bin/submit: the operator; bin/demo: a client).
PRINCIPAL_ENV = "GPUB_LOCAL_PRINCIPAL"


def principal_credentials() -> Credentials | None:
    """Credentials for GPUB_LOCAL_PRINCIPAL (an email), None when it is unset."""
    email = os.environ.get(PRINCIPAL_ENV, "").strip()
    return credentials_for(email) if email else None


# ---- identities on gRPC (the local Pub/Sub and Batch servers) ------------------------------
# The same bearer token travels as the `authorization` metadata of every call.
# Google's service agents, as the local cloud's own services act: the Cloud Storage agent
# publishes bucket notifications (service-<number>@gs-project-accounts...,
# https://cloud.google.com/storage/docs/getting-service-agent), Eventarc's agent owns the
# subscription of each Pub/Sub trigger (https://cloud.google.com/eventarc/docs/roles-permissions).
GCS_AGENT_EMAIL = "service-local@gs-project-accounts.iam.gserviceaccount.com"
EVENTARC_AGENT_EMAIL = "service-local@gcp-sa-eventarc.iam.gserviceaccount.com"


def email_from_metadata(metadata: Any) -> str | None:
    """The principal of a gRPC call (its `authorization` metadata), None when absent."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            return email_from_authorization(value if isinstance(value, str) else value.decode())
    return None
