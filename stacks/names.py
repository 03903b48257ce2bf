"""Names clients and service accounts may have (pure; re-exported by stacks.settings)."""

from __future__ import annotations

import re

from stacks.layout import CLIENT_SA_PREFIX, RUN_SA_PREFIX

# Service account ids: "6-30 characters long, and match the regular expression
# [a-z]([-a-z0-9]*[a-z0-9])" (cloud.google.com/iam/reference/rest/v1/projects.serviceAccounts/
# create). The one home of this limit: stacks/identity.py and the client checks use it.
SA_ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SA_ID_MIN, SA_ID_MAX = 6, 30
# Client names become service account ids (client-<name>, run-<name>) and bucket names
# (<project>-<name>). No "--": names built as `<client>--<job>` then split one way only.
CLIENT_NAME_MAX = SA_ID_MAX - len(CLIENT_SA_PREFIX)
CLIENT_NAME_RE = re.compile(rf"^[a-z](?!.*--)[a-z0-9-]{{1,{CLIENT_NAME_MAX - 2}}}[a-z0-9]$")
# The same shape for RE2 (Workflows' `text.match_regex`, cloud.google.com/workflows/docs/
# reference/stdlib/text/match_regex: RE2 has no lookaround), without `{m,n}` (a brace ends a
# `${...}` expression in some parsers): the job workflows check it with the length bounds.
CLIENT_NAME_RE2 = r"^[a-z][a-z0-9-]*[a-z0-9]$"
CLIENT_NAME_MIN = 3
# Names the platform itself uses next to client names: its own buckets (`<project>-batch-data`,
# `<project>-batch-logs`), its service accounts (`batch-*`), the data bucket's ad-hoc prefix
# (`jobs/`) and the folders of a client bucket. A client may not take them.
RESERVED_CLIENT_NAMES = frozenset(
    {"jobs", "inputs", "outputs", "batch", "operator", "adhoc", "platform", "uploads", "run"}
)
RESERVED_CLIENT_PREFIXES = ("batch-", "goog", "gcp-", RUN_SA_PREFIX, CLIENT_SA_PREFIX)


def check_service_account_id(account_id: str) -> None:
    """Raise ValueError (one line) for an id IAM would refuse."""
    if not SA_ID_MIN <= len(account_id) <= SA_ID_MAX or not SA_ID_RE.match(account_id):
        raise ValueError(
            f"service account id {account_id!r} must be {SA_ID_MIN}-{SA_ID_MAX} characters of "
            f"lowercase letters, digits and '-', starting with a letter and not ending with "
            f"'-' (got {len(account_id)})"
        )


def check_client_name(name: str) -> None:
    """Raise ValueError (one line naming what is allowed) for a name no client may have."""
    if not CLIENT_NAME_RE.match(name):
        raise ValueError(
            f"client name must be 3-{CLIENT_NAME_MAX} chars of lowercase letters, digits and "
            "single hyphens, "
            "starting with a letter and ending with a letter or digit (it becomes service "
            f"account ids and a bucket name); got {name!r}"
        )
    # Bucket names may not contain "google" (cloud.google.com/storage/docs/buckets#naming).
    if (
        name in RESERVED_CLIENT_NAMES
        or name.startswith(RESERVED_CLIENT_PREFIXES)
        or "google" in name
    ):
        raise ValueError(
            f"client name {name!r} is reserved by the platform (reserved: "
            f"{', '.join(sorted(RESERVED_CLIENT_NAMES))}; prefixes "
            f"{', '.join(RESERVED_CLIENT_PREFIXES)}; anything containing 'google')"
        )
