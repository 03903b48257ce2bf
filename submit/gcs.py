"""The few Cloud Storage calls the submit helper makes (imported only by commands that need
storage: google-cloud-storage costs ~0.3 s to import).

Local mode sets STORAGE_EMULATOR_HOST (fake-gcs-server) and uses anonymous credentials;
production uses Application Default Credentials. Nothing else differs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]

from submit.errors import ServiceError, SubmitError
from submit.manifest import ObjectInfo
from submit.uris import GcsPrefix

_TIMEOUT_S = 60.0


def make_client(project: str) -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        # Local mode: the principal named by GPUB_LOCAL_PRINCIPAL (the operator identity),
        # through local.identity, the one way local clients get credentials.
        from local.identity import principal_credentials

        creds = principal_credentials() or AnonymousCredentials()  # type: ignore[no-untyped-call]
        return storage.Client(project=project, credentials=creds)
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
            raise SubmitError(
                f"--output: {output.uri(name)} already exists (another submit into the same "
                "output?); use a new output prefix or --overwrite"
            ) from None
