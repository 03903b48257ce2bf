"""`bin/submit upload`: one batch of a job's inputs for a client, then its marker.

The files go to `inputs/<job>/<batch>/` first (they notify nothing); the marker
`inputs/_ready/<job>/<batch>` last, create-only (`ifGenerationMatch=0`), with the batch's
count `{"count": N, "bytes": B[, "files": [...]]}` (the intake's run-time contract: the job
checks its listing against N). Its upload starts exactly one run of the job for the batch
(docs/clients.md "Intake"); `--wait` follows that run to its outcome, `--no-ready` holds the
batch back (no marker: no trigger, no schedule sweep). Every name the job would refuse stops
the upload before anything is sent (submit/data.py `collect_files`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from submit.data import _TIMEOUT_S, AsSelfOpt, ClientOpt, JobOpt, _location, storage_client
from submit.errors import SubmitError
from submit.ui import EnvDefault as EnvOpt
from submit.ui import JsonOpt, LocalOpt, err
from submit.ui import say as _say
from submit.where import Location, check_batch, new_batch_name


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # object name relative to the batch's input folder
    size: int


def name_problem(name: str, input_format: str | None) -> str | None:
    """Why the job would refuse `name` (relative to the batch folder) as an input, or None:
    the runner's rule (`contract.input_name_problem`), bookkeeping names, the job's format."""
    from gpub_runner import contract

    from submit.planner import matches_format

    if (problem := contract.input_name_problem(name)) is not None:
        return problem
    if any(part.startswith("_") for part in name.split("/")):
        return "names starting with '_' are reserved for bookkeeping (_done/, _errors/, ...)"
    if not matches_format(name, input_format):
        return f"the job reads only .{input_format} inputs"
    return None


def collect_files(paths: list[Path], input_format: str | None = None) -> list[LocalFile]:
    """Files to upload: each file by its base name, each folder's files by their path
    relative to it. Checks everything before anything is sent (nothing half-done): a name the
    job would refuse stops the upload here, not as a silently skipped input."""
    found: dict[str, LocalFile] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            pairs = [(p, p.relative_to(path).as_posix()) for p in files]
        elif path.is_file():
            pairs = [(path, path.name)]
        else:
            raise SubmitError(f"PATH: {str(path)!r} is not a file or folder")
        for file, name in pairs:
            if (problem := name_problem(name, input_format)) is not None:
                raise SubmitError(f"PATH: {str(file)!r} cannot be an input as {name!r}: "
                                  f"{problem}; nothing was uploaded")
            if name in found and found[name].path.resolve() != file.resolve():
                raise SubmitError(f"PATH: {str(file)!r} and {str(found[name].path)!r} would "
                                  f"both be uploaded as {name!r}")
            found[name] = LocalFile(file, name, file.stat().st_size)
    if not found:
        raise SubmitError("PATH: no files to upload")
    return sorted(found.values(), key=lambda f: f.name)


class _Counting:
    """A read-only file wrapper that advances a progress bar as the upload reads it."""

    def __init__(self, fh: BinaryIO, progress: Progress, task: TaskID) -> None:
        self._fh, self._progress, self._task = fh, progress, task

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._progress.advance(self._task, len(data))
        return data

    def __getattr__(self, name: str) -> Any:  # seek/tell for resumable uploads
        return getattr(self._fh, name)


def _ensure_bucket(backend: Backend, client: storage.Client, loc: Location) -> None:
    """Locally, create the client's bucket on first use (the deployed stack creates it in
    Google Cloud, where a missing bucket means the client is not onboarded there yet)."""
    if backend.name != "local":
        return
    from google.api_core import exceptions as gexc

    from submit.gcs import _errors

    with _errors("--client", f"gs://{loc.bucket}"):
        try:
            exists = client.bucket(loc.bucket).exists(timeout=_TIMEOUT_S)
        except gexc.Forbidden:  # IAM on: a client may not get buckets; the local cloud
            return  # created the stack's buckets when it started (local.apply)
        if not exists:
            client.create_bucket(loc.bucket, location=loc.region, timeout=_TIMEOUT_S)
            _say(f"created local bucket gs://{loc.bucket}")


if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]
    from rich.progress import Progress, TaskID

    from submit.backend import Backend

# Up to this many files, the marker also names them (a reader sees the batch at a glance).
MARKER_FILES_MAX = 100


def marker_content(files: list[LocalFile]) -> bytes:
    """The batch marker: the count the job checks its listing against."""
    doc: dict[str, object] = {"count": len(files), "bytes": sum(f.size for f in files)}
    if len(files) <= MARKER_FILES_MAX:
        doc["files"] = [f.name for f in files]
    return json.dumps(doc, sort_keys=True).encode()


def _already(loc: Location, name: str) -> SubmitError:
    return SubmitError(f"--batch: {loc.marker(name)} exists: batch {name} is already marked "
                       f"ready (its run started); upload into a new batch, or re-run it with "
                       f"bin/submit rerun --client {loc.client} --job {loc.job} --batch {name}")


def upload_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to upload.",
                                                metavar="PATH")],
    client: ClientOpt, job: JobOpt, env: EnvOpt = "dev",
    batch: Annotated[str | None, typer.Option(
        "--batch", "-b", help="Batch name [default: the UTC time, YYYYMMDD-HHMMSS].")] = None,
    ready: Annotated[bool, typer.Option(
        "--ready/--no-ready", help="Write the batch marker after the files (starts the run).")
                     ] = True,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Follow the run the marker starts to its outcome (exit 1 unless it "
                       "SUCCEEDED).")] = False,
    timeout: Annotated[float, typer.Option(help="--wait: seconds.", min=1)] = 3600,
    local: LocalOpt = False, as_self: AsSelfOpt = False, json_out: JsonOpt = False,
) -> int:
    """Upload files or folders as one batch of JOB's inputs for CLIENT, then its marker."""
    from submit import synth

    if wait and not ready:
        raise SubmitError("--wait: a --no-ready batch starts no run; there is nothing to wait for")
    settings, loc = _location(env, client, job)
    spec = synth.load_spec(settings, job)
    name = check_batch(batch) if batch is not None else new_batch_name()
    files = collect_files(paths, spec.input_format)
    prefix = loc.input_prefix(name)
    backend, storage = storage_client(settings, loc, local=local, as_self=as_self)
    _ensure_bucket(backend, storage, loc)
    bucket = storage.bucket(loc.bucket)
    marker = bucket.blob(loc.object_name(loc.marker(name)))
    _refuse_if_marked(storage, loc, marker.name, name)
    _send(bucket, loc, name, files, marker if ready else None)
    total = sum(f.size for f in files)
    generation = str(marker.generation) if ready else None
    _say_uploaded(loc, name, files, generation, local=local, wait=wait)
    outcome = None
    if wait and generation is not None:
        from submit.results import outcome_line, wait_for_outcome

        outcome = wait_for_outcome(settings, client, job, name, generation, local=local,
                                   timeout_s=timeout)
        _say(f"outcome: {outcome_line(outcome)}")
    if json_out:
        sys.stdout.write(json.dumps({
            "batch": name, "inputs": prefix, "outputs": loc.output_prefix(name),
            "files": len(files), "bytes": total, "ready": ready,
            "marker": loc.marker(name) if ready else None, "marker_generation": generation,
            **({"outcome": outcome} if outcome is not None else {})}, sort_keys=True) + "\n")
    else:
        sys.stdout.write(name + "\n")  # for scripts: batch=$(bin/submit upload ...)
    if outcome is not None and outcome.get("state") != "SUCCEEDED":
        return 1
    return 0


def _refuse_if_marked(storage: storage.Client, loc: Location, marker: str, name: str) -> None:
    """Refuse a batch whose marker exists (its run started) before any file is sent."""
    from google.api_core import exceptions as gexc

    from submit.gcs import _errors

    with _errors("--batch", loc.input_prefix(name)):
        try:  # a list, not a get: the client identity may list its bucket
            if any(b.name == marker for b in storage.list_blobs(
                    loc.bucket, prefix=marker, max_results=1, timeout=_TIMEOUT_S)):
                raise _already(loc, name)
        except gexc.Forbidden:
            pass  # an identity that may only create under inputs/: the marker write decides


def _send(bucket: storage.Bucket, loc: Location, name: str, files: list[LocalFile],
          marker: storage.Blob | None) -> None:
    """The batch's files with a progress bar, then its marker (None: held back)."""
    from google.api_core import exceptions as gexc
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from submit.gcs import _errors

    prefix = loc.input_prefix(name)
    object_prefix = loc.object_name(prefix)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as progress, \
            _errors("PATH", prefix):
        bar = progress.add_task(f"upload {len(files)} files", total=sum(f.size for f in files))
        for f in files:
            with f.path.open("rb") as fh:
                bucket.blob(object_prefix + f.name).upload_from_file(
                    _Counting(fh, progress, bar), size=f.size, timeout=_TIMEOUT_S)
        if marker is not None:
            # Last, so the run never sees a partial batch; create-only: two uploads racing
            # into one batch cannot both start it.
            try:
                marker.upload_from_string(marker_content(files), timeout=_TIMEOUT_S,
                                          content_type="application/json",
                                          if_generation_match=0)
            except gexc.PreconditionFailed:
                raise _already(loc, name) from None


def _say_uploaded(loc: Location, name: str, files: list[LocalFile], generation: str | None,
                  *, local: bool, wait: bool) -> None:
    """What the upload did and the next command (generation None: held back, no marker)."""
    total = sum(f.size for f in files)
    prefix = loc.input_prefix(name)
    if generation is not None:
        _say(f"uploaded {len(files)} files ({total:,} bytes) to {prefix} and marked the batch "
             f"ready ({loc.marker(name)}, generation {generation}): its run starts by itself")
        if not wait:
            _say(f"next: its outcome: {loc.results_command(local=local, wait=True)}")
    else:
        _say(f"uploaded {len(files)} files ({total:,} bytes) to {prefix}; held back "
             "(--no-ready): no run starts. Run it by hand: "
             f"{loc.run_command(name, local=local)}")
