"""Tenant boundaries of a submit (Tenancy v2, docs/contracts.md): which client a run is for,
and which buckets and prefixes it may read and write. Pure: names come from the environment
settings (`client_bucket`, `data_bucket`, ...), never built by hand.

- `--client C`: input under `gs://<client_bucket(C)>/inputs/<job>/<batch>/`, output under
  `gs://<client_bucket(C)>/outputs/<job>/<batch>/`.
- no `--client` (an operator's ad-hoc run): both in the environment's own data bucket; a
  client's bucket needs `--client`, so a client's data is only ever processed as that client.
- any bucket of another environment (`--env dev` with a prod bucket) or outside the platform
  is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from submit.errors import SubmitError
from submit.uris import GcsPrefix

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings

ADHOC = "adhoc"  # the `client` label of a run without --client
ADHOC_AREA = "jobs/"  # where in the data bucket runs without --client read and write
# Names that would alias a platform resource or label: "adhoc" is the label of operator runs,
# and "jobs"/"inputs"/"outputs" are path words of the platform's own layout.
RESERVED_CLIENT_NAMES = frozenset({ADHOC, "jobs", "inputs", "outputs", "platform"})


def platform_buckets(env: EnvironmentSettings) -> dict[str, str]:
    """The environment's own buckets: name -> what it holds."""
    return {env.data_bucket: "the platform's data bucket", env.log_bucket: "the access logs",
            env.state_bucket: "the Terraform state"}


def resolve_client(env: EnvironmentSettings, job: str, client: str | None) -> str:
    """The `client` label of the run; SubmitError for an unknown, unfit or reserved client."""
    if client is None:
        return ADHOC
    known = {c.name: c for c in env.clients}
    if client not in known:
        names = ", ".join(sorted(known)) or "none"
        raise SubmitError(f"--client: unknown client {client!r} in {env.name} (known: {names})")
    if client in RESERVED_CLIENT_NAMES:
        raise SubmitError(f"--client: {client!r} is a reserved platform name; rename the client")
    bucket = env.client_bucket(client)
    if bucket in platform_buckets(env):
        raise SubmitError(f"--client: client {client!r} would use bucket {bucket}, which is "
                          f"{platform_buckets(env)[bucket]}; rename the client")
    if job not in known[client].jobs:
        raise SubmitError(f"--client: client {client!r} is not onboarded for job {job!r}")
    return client


def _owner(env: EnvironmentSettings, others: list[EnvironmentSettings], bucket: str) -> str:
    """Who a bucket outside `env`'s allowed set belongs to, for the refusal message."""
    if bucket in platform_buckets(env):
        return f"it is {platform_buckets(env)[bucket]} of environment {env.name}"
    for other in others:
        if other.name != env.name and bucket.startswith(f"{other.project_id}-"):
            return f"it belongs to environment {other.name}, not {env.name}"
    for c in env.clients:
        if bucket == env.client_bucket(c.name):
            return f"it is client {c.name}'s bucket; give --client {c.name}"
    return f"it is not a bucket of environment {env.name}"


def check_locations(env: EnvironmentSettings, others: list[EnvironmentSettings], job: str,
                    client: str, inp: GcsPrefix, out: GcsPrefix) -> None:
    """Refuse (exit 2, before anything is created) an input or output outside the run's
    tenant: the client's bucket and its inputs/<job>/ and outputs/<job>/ folders."""
    if client == ADHOC:
        allowed = env.data_bucket
        for arg, loc in (("--input", inp), ("--output", out)):
            if loc.bucket != allowed:
                raise SubmitError(f"{arg}: {loc} is outside this run's tenant: "
                                  f"{_owner(env, others, loc.bucket)} (a run without --client "
                                  f"reads and writes gs://{allowed}/{ADHOC_AREA} only)")
            if not loc.prefix.startswith(ADHOC_AREA) or loc.prefix == ADHOC_AREA:
                # The ad-hoc and operator identities hold grants under jobs/ only (stack).
                raise SubmitError(f"{arg}: {loc} is outside the ad-hoc area; a run without "
                                  f"--client reads and writes gs://{allowed}/{ADHOC_AREA}"
                                  "<folder>/ only")
        return
    bucket = env.client_bucket(client)
    for arg, loc, folder in (("--input", inp, "inputs"), ("--output", out, "outputs")):
        want = f"{folder}/{job}/"
        where = f"gs://{bucket}/{want}<batch>/"
        if loc.bucket != bucket:
            raise SubmitError(f"{arg}: {loc} is outside client {client}'s bucket: "
                              f"{_owner(env, others, loc.bucket)}; expected {where}")
        if not loc.prefix.startswith(want) or len(loc.prefix) == len(want):
            raise SubmitError(f"{arg}: {loc} is not a batch folder of job {job} for client "
                              f"{client}; expected {where}")
