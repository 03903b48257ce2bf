"""Where a client's data lives and which identities touch it (pure: names from settings only).

`bin/submit where`, `upload`, `ls` and `cat` all resolve their paths here, so a client's
inputs, the batch marker `inputs/_ready/<job>/<batch>` and the outputs are named exactly as
stacks/layout.py fixes them, through `EnvironmentSettings.layout` and nothing built by hand.

The results topic and subscription (`batch-<client>-results`, `...-sub`) come from the same
layout, as the stack's Terraform outputs do (stacks/outputs.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from submit.errors import SubmitError

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings

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
    markers: str  # gs://<bucket>/inputs/_ready/<job>/  (a batch's marker is <markers><batch>)
    client_identity: str
    run_identity: str
    results_topic: str
    results_subscription: str

    def input_prefix(self, batch: str) -> str:
        return f"{self.inputs}{check_batch(batch)}/"

    def output_prefix(self, batch: str) -> str:
        return f"{self.outputs}{check_batch(batch)}/"

    def marker(self, batch: str) -> str:
        return f"{self.markers}{check_batch(batch)}"

    def object_name(self, uri: str) -> str:
        """An object name in the client's bucket from its gs:// URI."""
        return uri.removeprefix(f"gs://{self.bucket}/")

    def results_command(self, *, local: bool, wait: bool = False) -> str:
        """The `bin/submit results` line that shows the client's outcomes."""
        return (f"bin/submit results --client {self.client} --env {self.env}"
                + (" --follow" if wait else "") + (" --local" if local else ""))

    def run_command(self, batch: str, *, local: bool) -> str:
        """The `bin/submit run` line that processes a held-back batch (`upload --no-ready`)
        by hand; never for a marked batch, whose trigger runs it (one run per output)."""
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
    lay = env.layout
    return Location(
        env=env.name, project=env.project_id, region=env.region, client=client, job=job,
        bucket=bucket, inputs=f"gs://{bucket}/{lay.job_inputs(job)}",
        outputs=f"gs://{bucket}/{lay.job_outputs(job)}",
        markers=f"gs://{bucket}/{lay.job_markers(job)}",
        client_identity=env.client_sa_email(client), run_identity=env.run_sa_email(client),
        # The names the stack declares and publishes as outputs (stacks/outputs.py).
        results_topic=lay.topic_path(lay.results_topic(client)),
        results_subscription=lay.subscription_path(lay.results_subscription(client)),
    )
