"""The few Cloud Storage calls the submit helper makes (imported only by commands that need
storage: google-cloud-storage costs ~0.3 s to import).

Local mode passes the local GCS endpoint as a client option and the local principal's
credentials (`local.identity`); production uses Application Default Credentials. Nothing
else differs (and no environment variable is set: see submit/backend.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage  # type: ignore[attr-defined]

from submit.errors import ConflictError, ServiceError, SubmitError
from submit.manifest import ObjectInfo
from submit.uris import GcsPrefix

_TIMEOUT_S = 60.0


def make_client(
    project: str, *, endpoint: str | None = None, credentials: Credentials | None = None
) -> storage.Client:
    """A storage client for Google (ADC), or for the server at `endpoint` (local mode), where
    `credentials` name the local principal (`local.identity`); anonymous when None."""
    if endpoint is not None:
        creds = credentials or AnonymousCredentials()  # type: ignore[no-untyped-call]
        return storage.Client(project=project, credentials=creds,
                              client_options={"api_endpoint": endpoint})
    with _errors("--input", "Cloud Storage"):  # ADC is looked up here
        return storage.Client(project=project)


@contextmanager
def _errors(arg: str, target: str) -> Iterator[None]:
    """Turn storage failures into one-line messages that name the argument."""
    try:
        yield
    except gexc.NotFound:
        raise SubmitError(f"{arg}: bucket of {target} does not exist") from None
    except gexc.Forbidden as exc:
        raise SubmitError(f"{arg}: permission denied on {target} ({exc.message})") from None
    except auth_exc.DefaultCredentialsError:
        raise ServiceError(
            "no Google credentials: run `gcloud auth application-default login` (or use --local)"
        ) from None
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, OSError) as exc:
        raise ServiceError(f"Cloud Storage error on {target}: {exc}".splitlines()[0]) from None


def list_objects(client: storage.Client, prefix: GcsPrefix, arg: str) -> list[ObjectInfo]:
    """Every object under `prefix`, names relative to it, in name order (the listing's)."""
    cut = len(prefix.prefix)
    out: list[ObjectInfo] = []
    with _errors(arg, str(prefix)):
        blobs = client.list_blobs(
            prefix.bucket, prefix=prefix.prefix or None, page_size=1000, timeout=_TIMEOUT_S,
            # Only what the manifest needs: smaller pages, faster listing of big prefixes.
            fields="items(name,size,generation),nextPageToken",
        )
        for blob in blobs:
            out.append(ObjectInfo(blob.name[cut:], int(blob.size or 0), str(blob.generation)))
    return out


def first_object(client: storage.Client, prefix: GcsPrefix, arg: str) -> str | None:
    """Name of some object under `prefix`, or None when the prefix is empty."""
    with _errors(arg, str(prefix)):
        for blob in client.list_blobs(prefix.bucket, prefix=prefix.prefix or None,
                                      max_results=1, timeout=_TIMEOUT_S, fields="items(name)"):
            return str(blob.name)
    return None


def write_manifest(
    client: storage.Client, output: GcsPrefix, name: str, data: bytes, *, overwrite: bool
) -> None:
    """Create the manifest; without `overwrite` only if it does not exist yet (so two racing
    submits into one output cannot both write one)."""
    blob = client.bucket(output.bucket).blob(output.child(name))
    with _errors("--output", output.uri(name)):
        try:
            blob.upload_from_string(
                data, content_type="application/x-ndjson", timeout=_TIMEOUT_S,
                if_generation_match=None if overwrite else 0,
            )
        except gexc.PreconditionFailed:
            raise ConflictError(
                f"--output: {output.uri(name)} already exists (another submit into the same "
                "output?); use a new output prefix or --overwrite"
            ) from None


def read_object(client: storage.Client, prefix: GcsPrefix, name: str,
                arg: str) -> tuple[bytes | None, int]:
    """(bytes, generation) of `<prefix><name>`; (None, 0) when it does not exist. Generation 0
    is Cloud Storage's precondition for "does not exist yet", so the pair can be handed to
    `put_object` and `delete_object` as an optimistic lock."""
    blob = client.bucket(prefix.bucket).blob(prefix.child(name))
    with _errors(arg, prefix.uri(name)):
        try:
            blob.reload(timeout=_TIMEOUT_S)
            generation = int(blob.generation or 0)
            return bytes(blob.download_as_bytes(if_generation_match=generation,
                                                timeout=_TIMEOUT_S)), generation
        except gexc.NotFound:
            return None, 0
        except gexc.PreconditionFailed:
            raise _changed(prefix.uri(name)) from None


def _changed(uri: str) -> ConflictError:
    return ConflictError(f"--output: {uri} changed while this submit was deciding (another "
                         "submit into the same output?); nothing was created, try again")


def put_object(client: storage.Client, prefix: GcsPrefix, name: str, data: bytes, arg: str,
               *, if_generation_match: int | None = None) -> None:
    """Write `<prefix><name>`; with `if_generation_match` only if it is still that generation
    (0: only if absent), else ConflictError
    (https://cloud.google.com/storage/docs/request-preconditions)."""
    blob = client.bucket(prefix.bucket).blob(prefix.child(name))
    with _errors(arg, prefix.uri(name)):
        try:
            blob.upload_from_string(data, content_type="application/json", timeout=_TIMEOUT_S,
                                    if_generation_match=if_generation_match)
        except gexc.PreconditionFailed:
            raise _changed(prefix.uri(name)) from None


def delete_object(client: storage.Client, prefix: GcsPrefix, name: str, arg: str,
                  *, if_generation_match: int) -> None:
    """Delete `<prefix><name>` only if it is still at `if_generation_match`, else
    ConflictError: the first step of --overwrite, so of two racing submits one stops before
    it deleted anything else."""
    blob = client.bucket(prefix.bucket).blob(prefix.child(name))
    with _errors(arg, prefix.uri(name)):
        try:
            blob.delete(if_generation_match=if_generation_match, timeout=_TIMEOUT_S)
        except (gexc.PreconditionFailed, gexc.NotFound):
            raise _changed(prefix.uri(name)) from None


def delete_prefix(client: storage.Client, prefix: GcsPrefix, arg: str,
                  first: Sequence[str] = (), keep: Sequence[str] = ()) -> int:
    """Delete every object under `prefix` except `keep` (relative names); the names in
    `first` go before the rest, so a reader that checks them sees the location stop claiming
    a complete run at once. With bucket versioning on, deleted objects stay as noncurrent
    versions."""
    bucket = client.bucket(prefix.bucket)
    kept = {prefix.child(name) for name in keep}
    with _errors(arg, str(prefix)):
        deleted = 0
        for name in first:
            with contextlib.suppress(gexc.NotFound):
                bucket.blob(prefix.child(name)).delete(timeout=_TIMEOUT_S)
                deleted += 1
        listing = client.list_blobs(prefix.bucket, prefix=prefix.prefix or None,
                                    timeout=_TIMEOUT_S, fields="items(name),nextPageToken")
        names = [str(b.name) for b in listing if b.name not in kept]

        def delete(name: str) -> None:
            with contextlib.suppress(gexc.NotFound):  # a racing delete got there first
                bucket.blob(name).delete(timeout=_TIMEOUT_S)

        with ThreadPoolExecutor(16, thread_name_prefix="delete") as pool:
            list(pool.map(delete, names))
    return deleted + len(names)
