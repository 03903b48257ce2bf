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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from submit import synth
from submit.errors import SubmitError
from submit.ui import EnvDefault as EnvOpt
from submit.ui import JsonOpt, LocalOpt
from submit.ui import say as _say
from submit.where import Location, check_batch, locate

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]

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

    # --local: the local cloud enforces the environment's synthesized IAM (submit/run.py):
    # its platform stack and client shards, the client's among them.
    localmode.use_stacks(synth.stack_files(settings, None, loc.client) if local else [])
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
                 "batch_marker": loc.marker(batch),
                 "batch_outputs": loc.output_prefix(batch),
                 "rerun_command": (f"bin/submit rerun --client {client} --job {job} "
                                   f"--batch {batch} --env {loc.env}")}
    if json_out:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
        return 0
    rows = [
        ("upload inputs to", f"{loc.inputs}<batch>/"),
        ("then the marker", f"{loc.markers}<batch>   ({{\"count\": N}}: starts one run)"),
        ("results appear in", f"{loc.outputs}<batch>/"),
        ("client identity", f"{loc.client_identity}   (uploads, reads results)"),
        ("tasks run as", loc.run_identity),
        ("results topic", loc.results_topic),
        ("results subscription", loc.results_subscription),
    ]
    if batch is not None:
        rows += [("this batch's inputs", info["batch_inputs"]),
                 ("this batch's outputs", info["batch_outputs"]),
                 ("this batch's marker", info["batch_marker"]),
                 ("re-run it", info["rerun_command"])]
    width = max(len(k) for k, _ in rows)
    sys.stdout.write(f"{loc.client} / {loc.job} in {loc.env} ({loc.project}, {loc.region})\n")
    for key, value in rows:
        sys.stdout.write(f"  {key.ljust(width)}  {value}\n")
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


def register(app: typer.Typer, upload_cmd: Callable[..., Any]) -> None:
    """`upload` lives in submit/upload.py, which builds on this module: the caller passes it."""
    app.command("where")(where_cmd)
    app.command("upload")(upload_cmd)
    app.command("ls")(ls_cmd)
    app.command("cat")(cat_cmd)
