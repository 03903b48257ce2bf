"""The whole story, offline: synth, policy checks, then the example job on the local backend.

Run through `bin/demo`. Every step uses the same commands a user would: `main.py`, `bin/check`,
`bin/submit ... --local --wait`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
console = Console(stderr=True)

CLIENT = "acme"
JOB = "uppercase"
ENV = "dev"


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    console.print(f"[dim]$ {' '.join(cmd)}")
    return subprocess.run(cmd, cwd=ROOT, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def synth() -> None:
    step("1. Synthesize the example platform (platform-dev, platform-prod)")
    started = time.monotonic()
    result = run([PY, "main.py"])
    if result.returncode != 0:
        sys.exit(result.returncode)
    from stacks.summary import summary_table

    console.print(summary_table(ROOT / "cdktf.out"))
    console.print(f"synth took {time.monotonic() - started:.1f}s")


def policy_checks() -> None:
    step("2. Policy checks: checkov + CKV_GPUB rule pack + job guardrails")
    result = run([str(ROOT / "bin" / "check"), "--no-synth"])
    if result.returncode != 0:
        console.print("[red]policy checks failed; see reports/")
        sys.exit(result.returncode)


def storage_client(gcs_endpoint: str) -> Any:
    """google-cloud-storage against the local fake-gcs-server (no credentials needed)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    return storage.Client(
        project="demo",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_endpoint},
    )


def upload_inputs(gcs_endpoint: str, bucket_name: str, prefix: str) -> list[str]:
    client = storage_client(gcs_endpoint)
    bucket = client.bucket(bucket_name)
    if not bucket.exists():
        client.create_bucket(bucket_name)
    names = []
    for path in sorted((ROOT / "examples" / "inputs").glob("*.jsonl")):
        blob = bucket.blob(f"{prefix}{path.name}")
        blob.upload_from_filename(str(path), content_type="application/jsonl")
        names.append(blob.name)
    return names


def show_outputs(gcs_endpoint: str, bucket_name: str, prefix: str) -> None:
    client = storage_client(gcs_endpoint)
    table = Table(title=f"gs://{bucket_name}/{prefix}")
    table.add_column("object")
    table.add_column("bytes", justify="right")
    table.add_column("first line")
    for blob in client.list_blobs(bucket_name, prefix=prefix):
        rel = blob.name[len(prefix) :]
        first = ""
        if not rel.startswith("_"):
            first = blob.download_as_text().splitlines()[0][:60]
        table.add_row(rel, str(blob.size), first)
    console.print(table)


def run_job_locally() -> int:
    from local.backend import LocalBackend

    step("3. Start the local backend (Google Batch gRPC API + fake-gcs-server)")
    backend = LocalBackend()  # local.backend.default_root(): the rule bin/submit uses too
    endpoints = backend.ensure_running()
    console.print(f"Batch API: {endpoints.batch_target}   GCS: {endpoints.gcs_endpoint}")

    from stacks.environments import dev

    bucket = dev().data_bucket
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    inputs = f"{CLIENT}/inputs/{JOB}/demo-{stamp}/"
    outputs = f"{CLIENT}/outputs/{JOB}/demo-{stamp}/"

    step(f"4. Upload sample inputs as client {CLIENT!r}")
    names = upload_inputs(endpoints.gcs_endpoint, bucket, inputs)
    console.print(f"uploaded {len(names)} files to gs://{bucket}/{inputs}")

    step(f"5. bin/submit {JOB} --env {ENV} --local --wait")
    result = run(
        [
            str(ROOT / "bin" / "submit"),
            JOB,
            "--env",
            ENV,
            "--client",
            CLIENT,
            "--input",
            f"gs://{bucket}/{inputs}",
            "--output",
            f"gs://{bucket}/{outputs}",
            "--local",
            "--wait",
        ]
    )
    step("6. Outputs")
    show_outputs(endpoints.gcs_endpoint, bucket, outputs)
    console.print(
        "The local backend keeps running for `bin/submit status|logs|list --local`; "
        "stop it with `.venv/bin/python -m local stop`."
    )
    return result.returncode


def main() -> int:
    started = time.monotonic()
    os.chdir(ROOT)
    synth()
    policy_checks()
    code = run_job_locally()
    verdict = "[green]job SUCCEEDED" if code == 0 else f"[red]job failed (exit {code})"
    console.print(Panel(f"{verdict}; demo took {time.monotonic() - started:.0f}s"))
    print(
        json.dumps({"demo": "done", "exit": code, "seconds": round(time.monotonic() - started, 1)})
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
