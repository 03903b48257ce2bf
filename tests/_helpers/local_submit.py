"""`bin/submit` against the embedded local backend: a backend per test module (its own
temporary root, the session's synth copied in, IAM on), the example buckets and identities,
and what the `uppercase` job writes for given inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUCKET = "example-ml-dev-batch-data"  # the platform's data bucket: runs without --client
ACME = "example-ml-dev-acme"  # client acme's bucket (Tenancy v2)
GLOBEX = "example-ml-dev-globex"
OPERATOR = "operator@example-ml-dev.iam.gserviceaccount.com"
CLIENT_ACME = "client-acme@example-ml-dev-clients.iam.gserviceaccount.com"
ADMIN = "terraform@local.iam.gserviceaccount.com"  # the local `terraform apply`


@dataclass
class Backend:
    root: Path
    synth: Path
    endpoints: Any
    backend: Any

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
        env.update(GPUB_LOCAL_ROOT=str(self.root), GPUB_SYNTH_DIR=str(self.synth),
                   GPUB_SUBMITTER="ci-test")
        return env

    def submit(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "submit", *args], cwd=REPO,
                              env=self.env(), capture_output=True, text=True, timeout=180)

    def storage(self, email: str = ADMIN) -> Any:
        from google.cloud import storage  # type: ignore[attr-defined]

        from local.identity import credentials_for

        return storage.Client(project="example-ml-dev", credentials=credentials_for(email),
                              client_options={"api_endpoint": self.endpoints.gcs_endpoint})

    def batch(self) -> Any:
        from local.client import batch_client

        return batch_client(self.endpoints.batch_target, OPERATOR)  # actAs is checked

    def upload(self, prefix: str, n: int, extra: dict[str, str] | None = None,
               bucket_name: str = BUCKET) -> dict[str, str]:
        """As the operator (the data bucket's jobs/) or as client acme (its inputs/)."""
        who = CLIENT_ACME if bucket_name == ACME else OPERATOR
        bucket = self.storage(who).bucket(bucket_name)
        files = {f"f{i:03d}.jsonl": json.dumps({"id": i, "text": f"hello {i}"}) + "\n"
                 for i in range(n)}
        for name, text in {**files, **(extra or {})}.items():
            bucket.blob(prefix + name).upload_from_string(text)
        return files

    def objects(self, prefix: str, bucket: str = BUCKET) -> dict[str, bytes]:
        client = self.storage()
        return {b.name[len(prefix):]: b.download_as_bytes()
                for b in client.list_blobs(bucket, prefix=prefix)}

    def jobs(self) -> list[Any]:
        return list(self.batch().list_jobs(parent="projects/example-ml-dev/locations/europe-west4"))


def start_backend(tmp: Path, synth_dir: Path | None = None,
           env: dict[str, str] | None = None) -> Backend:
    from local.backend import LocalBackend

    synth = tmp / "cdktf.out"
    if synth_dir is None:  # no session synth at hand: synthesize (a few seconds)
        from stacks.app import synth as synthesize
        from stacks.environments import load_environments

        synthesize(load_environments(), str(synth))
    else:
        shutil.copytree(synth_dir, synth)
    # The stack bin/submit --env dev --local enforces (submit/run.py): the same servers.
    stack = (synth / "stacks" / "platform-dev" / "cdk.tf.json").resolve()
    backend = LocalBackend(root=tmp / "local", env=env or {}, stacks=[stack])
    endpoints = backend.ensure_running()
    b = Backend(tmp / "local", synth, endpoints, backend)
    for name in (BUCKET, ACME, GLOBEX):
        b.storage().create_bucket(name)
    return b


def expected_outputs(files: dict[str, str]) -> dict[str, bytes]:
    return {k: (json.dumps({"id": json.loads(v)["id"], "text": json.loads(v)["text"].upper()})
                + "\n").encode() for k, v in files.items()}
