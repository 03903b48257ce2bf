"""Data commands: `where`, `upload`, `ls`, `cat` (registered on `bin/submit` by `register`).

One code path for `--local` and Google Cloud, through the Backend seam (submit/backend.py):
only the storage endpoint and the credentials differ. The commands act as the client's
identity by default (`settings.client_sa_email(c)`: the local IAM layer checks it; in Google
Cloud it is impersonated through the IAM Credentials API, which needs
roles/iam.serviceAccountTokenCreator on that account:
https://googleapis.dev/python/google-auth/latest/reference/google.auth.impersonated_credentials.html),
so an operator sees exactly what the client would be allowed to do; `--as-self` uses the
caller's own identity instead (ADC; locally the environment's operator identity).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from submit import synth
from submit.errors import SubmitError
from submit.ui import EnvDefault as EnvOpt
from submit.ui import JsonOpt, LocalOpt, err
from submit.ui import say as _say
from submit.where import READY_MARKER, Location, check_batch, locate, new_batch_name

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]
    from rich.progress import Progress, TaskID

    from stacks.settings import EnvironmentSettings
    from submit.backend import Backend

DATA_COMMANDS = ("where", "upload", "ls", "cat")

ClientOpt = Annotated[str, typer.Option("--client", "-c", help="Client name (see `where`).")]
JobOpt = Annotated[str, typer.Option("--job", "-j", help="Declared job the data is for.")]
AsSelfOpt = Annotated[bool, typer.Option(
    "--as-self", help="Use your own identity, not the client's.")]
_TIMEOUT_S = 120.0


def _location(env: str, client: str, job: str) -> tuple[EnvironmentSettings, Location]:
    settings = synth.load_environment(env)
    synth.load_spec(settings, job)  # "JOB: unknown job ..." before the client check
    return settings, locate(settings, client, job)


def data_backend(settings: EnvironmentSettings, loc: Location, *, local: bool,
                 as_self: bool) -> Backend:
    """The Backend seam (submit/backend.py) acting as the client's identity
    (`settings.client_sa_email`): locally the IAM layer checks that principal, on Google it is
    impersonated. `--as-self`: the caller (locally the operator identity, on Google ADC)."""
    from submit import localmode, synth
    from submit.backend import backend_for

    # --local: the local cloud enforces the environment's synthesized IAM (submit/run.py).
    stack = synth.synth_dir(None) / "stacks" / settings.stack_name / "cdk.tf.json"
    localmode.use_stacks([stack.resolve()] if stack.is_file() else [])
    if as_self:
        return backend_for(local, settings.operator_sa_email)
    return backend_for(local, loc.client_identity, impersonate=True)


def storage_client(settings: EnvironmentSettings, loc: Location, *, local: bool,
                   as_self: bool) -> tuple[Backend, storage.Client]:
    backend = data_backend(settings, loc, local=local, as_self=as_self)
    return backend, backend.storage(loc.project)


# ---------------------------------------------------------------------------------- where


def where_cmd(client: ClientOpt, job: JobOpt, env: EnvOpt = "dev",
              batch: Annotated[str | None, typer.Option(
                  "--batch", "-b", help="Show the paths of this batch too.")] = None,
              json_out: JsonOpt = False) -> int:
    """Where CLIENT uploads JOB's inputs, where results appear, which identities to use."""
    _, loc = _location(env, client, job)
    info = loc.as_json()
    if batch is not None:
        info |= {"batch": batch, "batch_inputs": loc.input_prefix(batch),
                 "batch_outputs": loc.output_prefix(batch),
                 "run_command": loc.run_command(batch, local=False)}
    if json_out:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
        return 0
    rows = [
        ("upload inputs to", f"{loc.inputs}<batch>/   (then the marker <batch>/{READY_MARKER})"),
        ("results appear in", f"{loc.outputs}<batch>/"),
        ("client identity", f"{loc.client_identity}   (uploads, reads results)"),
        ("tasks run as", loc.run_identity),
        ("results topic", loc.results_topic),
        ("results subscription", loc.results_subscription),
    ]
    if batch is not None:
        rows += [("this batch's inputs", info["batch_inputs"]),
                 ("this batch's outputs", info["batch_outputs"]),
                 ("run it by hand", info["run_command"])]
    width = max(len(k) for k, _ in rows)
    sys.stdout.write(f"{loc.client} / {loc.job} in {loc.env} ({loc.project}, {loc.region})\n")
    for key, value in rows:
        sys.stdout.write(f"  {key.ljust(width)}  {value}\n")
    return 0


# --------------------------------------------------------------------------------- upload


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # object name relative to the batch's input folder
    size: int


def collect_files(paths: list[Path]) -> list[LocalFile]:
    """Files to upload: each file by its base name, each folder's files by their path
    relative to it. Checks everything before anything is sent (nothing half-done)."""
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
            if any(part.startswith("_") for part in name.split("/")):
                raise SubmitError(f"PATH: {str(file)!r}: names starting with '_' are reserved "
                                  f"for bookkeeping ({READY_MARKER}, _manifest.jsonl, _done/)")
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


def upload_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to upload.",
                                                metavar="PATH")],
    client: ClientOpt, job: JobOpt, env: EnvOpt = "dev",
    batch: Annotated[str | None, typer.Option(
        "--batch", "-b", help="Batch name [default: the UTC time, YYYYMMDD-HHMMSS].")] = None,
    ready: Annotated[bool, typer.Option(
        "--ready/--no-ready", help=f"Write {READY_MARKER} after the files (starts the run).")
                     ] = True,
    local: LocalOpt = False, as_self: AsSelfOpt = False, json_out: JsonOpt = False,
) -> int:
    """Upload files or folders as one batch of JOB's inputs for CLIENT, then the marker."""
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

    settings, loc = _location(env, client, job)
    name = check_batch(batch) if batch is not None else new_batch_name()
    files = collect_files(paths)
    prefix = loc.input_prefix(name)
    object_prefix = prefix.removeprefix(f"gs://{loc.bucket}/")
    backend, storage = storage_client(settings, loc, local=local, as_self=as_self)
    _ensure_bucket(backend, storage, loc)
    bucket = storage.bucket(loc.bucket)
    marker = bucket.blob(object_prefix + READY_MARKER)
    already = SubmitError(f"--batch: {prefix} is already marked ready (its run may have "
                          "started); upload into a new batch")
    with _errors("--batch", prefix):
        try:  # a list, not a get: the client identity may list its bucket, not read inputs/
            if any(b.name == marker.name for b in storage.list_blobs(
                    loc.bucket, prefix=marker.name, max_results=1, timeout=_TIMEOUT_S)):
                raise already
        except gexc.Forbidden:
            pass  # an identity that may only create under inputs/: the marker write decides
    total = sum(f.size for f in files)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as progress, \
            _errors("PATH", prefix):
        bar = progress.add_task(f"upload {len(files)} files", total=total)
        for f in files:
            with f.path.open("rb") as fh:
                bucket.blob(object_prefix + f.name).upload_from_file(
                    _Counting(fh, progress, bar), size=f.size, timeout=_TIMEOUT_S)
        if ready:
            # Last, so a trigger on the marker never sees a partial batch.
            try:  # create-only: two uploads racing into one batch cannot both start it
                marker.upload_from_string(
                    json.dumps({"files": len(files), "bytes": total}), timeout=_TIMEOUT_S,
                    content_type="application/json", if_generation_match=0)
            except gexc.PreconditionFailed:
                raise already from None
    _say(f"uploaded {len(files)} files ({total:,} bytes) to {prefix}"
         + (f" and {READY_MARKER}" if ready else f"; no {READY_MARKER} yet (--no-ready)"))
    _say(f"next: {loc.run_command(name, local=local)}")
    if json_out:
        sys.stdout.write(json.dumps({
            "batch": name, "inputs": prefix, "outputs": loc.output_prefix(name),
            "files": len(files), "bytes": total, "ready": ready}, sort_keys=True) + "\n")
    else:
        sys.stdout.write(name + "\n")  # for scripts: batch=$(bin/submit upload ...)
    return 0


# -------------------------------------------------------------------------------- ls / cat


def _hidden(rel: str) -> bool:
    """Bookkeeping (_manifest.jsonl, _done/, _errors/, _READY) starts a path segment with _."""
    return any(part.startswith("_") for part in rel.split("/"))


def list_outputs(storage: storage.Client, loc: Location, batch: str | None, *,
                 show_all: bool) -> Iterator[dict[str, Any]]:
    from submit.gcs import _errors

    base = loc.outputs.removeprefix(f"gs://{loc.bucket}/")
    if batch is None:  # the batches that have outputs: one "folder" level below outputs/<job>/
        with _errors("--client", loc.outputs):
            pages = storage.list_blobs(loc.bucket, prefix=base, delimiter="/",
                                       timeout=_TIMEOUT_S)
            for _ in pages:
                pass  # prefixes fill in as the pages are read
            for folder in sorted(pages.prefixes):
                yield {"batch": folder[len(base):].rstrip("/"), "uri": f"gs://{loc.bucket}/{folder}"}
        return
    prefix = base + check_batch(batch) + "/"
    with _errors("--batch", f"gs://{loc.bucket}/{prefix}"):
        for blob in storage.list_blobs(loc.bucket, prefix=prefix, timeout=_TIMEOUT_S):
            rel = blob.name[len(prefix):]
            if show_all or not _hidden(rel):
                yield {"name": rel, "size": int(blob.size or 0),
                       "updated": blob.updated.isoformat() if blob.updated else None}


def ls_cmd(
    client: ClientOpt, job: JobOpt, env: EnvOpt = "dev",
    batch: Annotated[str | None, typer.Option(
        "--batch", "-b", help="List this batch's outputs [default: list the batches].")] = None,
    show_all: Annotated[bool, typer.Option(
        "--all", "-a", help="Also show _-prefixed bookkeeping (_manifest.jsonl, _done/...).")
                        ] = False,
    local: LocalOpt = False, as_self: AsSelfOpt = False, json_out: JsonOpt = False,
) -> int:
    """List CLIENT's batches with outputs for JOB, or one batch's output files."""
    settings, loc = _location(env, client, job)
    _, storage = storage_client(settings, loc, local=local, as_self=as_self)
    rows = list(list_outputs(storage, loc, batch, show_all=show_all))
    if json_out:
        sys.stdout.write(json.dumps(rows, sort_keys=True) + "\n")
        return 0
    for row in rows:
        line = row["batch"] if batch is None else f"{row['size']:>12,}  {row['name']}"
        sys.stdout.write(line + "\n")
    if not rows:
        _say(f"nothing under {loc.output_prefix(batch) if batch else loc.outputs}")
    return 0


def cat_cmd(
    names: Annotated[list[str], typer.Argument(help="Output file names (as `ls` prints them).",
                                               metavar="NAME")],
    client: ClientOpt, job: JobOpt,
    batch: Annotated[str, typer.Option("--batch", "-b", help="The batch the outputs are of.")],
    env: EnvOpt = "dev", local: LocalOpt = False, as_self: AsSelfOpt = False,
) -> int:
    """Print output files of one batch to stdout (bytes as stored)."""
    from google.api_core import exceptions as gexc

    from submit.gcs import _errors

    settings, loc = _location(env, client, job)
    prefix = loc.output_prefix(batch).removeprefix(f"gs://{loc.bucket}/")
    for name in names:
        if not name or name.startswith("/") or any(p in ("", ".", "..")
                                                    for p in name.split("/")):
            raise SubmitError(f"NAME: {name!r} is not a file name relative to the batch")
    _, storage = storage_client(settings, loc, local=local, as_self=as_self)
    out = sys.stdout.buffer
    for name in names:
        uri = f"gs://{loc.bucket}/{prefix}{name}"
        with _errors("NAME", uri):
            try:
                out.write(storage.bucket(loc.bucket).blob(prefix + name).download_as_bytes(
                    timeout=_TIMEOUT_S))
            except gexc.NotFound:
                raise SubmitError(f"NAME: no output {uri} (see `bin/submit ls`)") from None
    out.flush()
    return 0


def register(app: typer.Typer) -> None:
    app.command("where")(where_cmd)
    app.command("upload")(upload_cmd)
    app.command("ls")(ls_cmd)
    app.command("cat")(cat_cmd)
