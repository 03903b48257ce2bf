"""Where a client's data lives and which identities touch it (pure: names from settings only).

`bin/submit where`, `upload`, `ls` and `cat` all resolve their paths here, so a client's
inputs, the `_READY` marker and the outputs are named exactly as docs/contracts.md
("Tenancy v2") fixes them, by `EnvironmentSettings` methods and nothing built by hand.

The results topic and subscription names are this toolkit's convention
(`results-<client>`, `results-<client>-sub`); the stack's Terraform outputs should publish the
same names (see docs/operations.md, "Terraform outputs").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from submit.errors import SubmitError

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings

READY_MARKER = "_READY"
# A batch name becomes one path segment under inputs/<job>/ and outputs/<job>/: keep it to
# characters that need no quoting anywhere (gcloud wildcards, URLs, shells).
BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_batch_name(now: datetime | None = None) -> str:
    """A fresh batch name: the UTC time to the second (sorts by age in every listing)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def check_batch(batch: str) -> str:
    if not BATCH_RE.match(batch) or batch.startswith("_"):
        raise SubmitError(
            f"--batch: {batch!r} is not a batch name (1-128 letters, digits, '.', '_', '-', "
            "starting with a letter or digit)")
    return batch


@dataclass(frozen=True)
class Location:
    """Everything a client (or its operator) needs to send a batch and read its results."""

    env: str
    project: str
    region: str
    client: str
    job: str
    bucket: str
    inputs: str  # gs://<bucket>/inputs/<job>/  (a batch goes under <inputs><batch>/)
    outputs: str  # gs://<bucket>/outputs/<job>/
    ready_marker: str  # object name relative to a batch's input folder
    client_identity: str
    run_identity: str
    results_topic: str
    results_subscription: str

    def input_prefix(self, batch: str) -> str:
        return f"{self.inputs}{check_batch(batch)}/"

    def output_prefix(self, batch: str) -> str:
        return f"{self.outputs}{check_batch(batch)}/"

    def run_command(self, batch: str, *, local: bool) -> str:
        """The `bin/submit run` line that processes `batch` by hand (no trigger needed)."""
        return (f"bin/submit run {self.job} --env {self.env} --client {self.client} "
                f"--input {self.input_prefix(batch)} --output {self.output_prefix(batch)}"
                + (" --local" if local else ""))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def locate(env: EnvironmentSettings, client: str, job: str) -> Location:
    """The client's paths and identities for `job`; SubmitError naming the bad argument."""
    clients = {c.name: c for c in env.clients}
    if client not in clients:
        known = ", ".join(sorted(clients)) or "none"
        raise SubmitError(f"--client: unknown client {client!r} in {env.name} (known: {known})")
    onboarded = clients[client].jobs
    if job not in onboarded:
        raise SubmitError(f"--job: client {client!r} is not onboarded for job {job!r} in "
                          f"{env.name} (its jobs: {', '.join(sorted(onboarded)) or 'none'})")
    bucket = env.client_bucket(client)
    return Location(
        env=env.name, project=env.project_id, region=env.region, client=client, job=job,
        bucket=bucket, inputs=f"gs://{bucket}/inputs/{job}/",
        outputs=f"gs://{bucket}/outputs/{job}/", ready_marker=READY_MARKER,
        client_identity=env.client_sa_email(client), run_identity=env.run_sa_email(client),
        # The names the stack declares and publishes as outputs (stacks/outputs.py).
        results_topic=env.layout.topic_path(env.results_topic(client)),
        results_subscription=env.layout.subscription_path(env.layout.results_subscription(client)),
    )
