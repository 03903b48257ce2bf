"""The few Cloud Storage operations the runner needs, on one shared client.

One client (one HTTP session with a connection pool as large as the thread pools) is shared by
all worker threads: per-file clients or sessions would redo TLS handshakes and auth. Reads go
straight to the media endpoint (no metadata reload). Outputs are created with
``if_generation_match=0``: a single-request upload is atomic, and the precondition makes a
second writer (a racing or retried attempt) fail with 412 instead of overwriting.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.bucket import Bucket
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2.credentials import Credentials as OAuthCredentials
from requests.adapters import HTTPAdapter

from gpub_runner.config import GcsUri


class InfraError(Exception):
    """Storage (or another service) is unreachable or failing: exit 4, Batch may retry."""


# Errors that say "the service is not working", as opposed to "this object is bad".
# Transient ones have already been retried with backoff by the client when we see them.
_INFRA_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.RetryError,
    gexc.Unauthorized,
    gexc.Forbidden,  # a missing IAM grant fails every file alike: not a data problem
    auth_exc.TransportError,
    auth_exc.RefreshError,
    auth_exc.DefaultCredentialsError,
    ConnectionError,
)


def is_infra_error(exc: BaseException) -> bool:
    return isinstance(exc, _INFRA_ERRORS)


@dataclass(frozen=True)
class ObjectStat:
    """One listed object: its full name, generation, size and custom metadata."""

    name: str
    generation: str
    size: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)


# Partial responses (https://cloud.google.com/storage/docs/json_api/v1/how-tos/performance#partial):
# only what the caller reads; a page holds at most 1,000 items whatever maxResults says
# (https://cloud.google.com/storage/docs/json_api/v1/objects/list, maxResults).
LIST_PAGE_SIZE = 1000
_LIST_FIELDS = "items(name,generation,size),nextPageToken"
_LIST_FIELDS_META = "items(name,generation,size,metadata),nextPageToken"


class Store:
    def __init__(self, *, pool_size: int, timeout_s: float = 60.0) -> None:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            # Local mode (fake-gcs-server): no project lookup; the task's identity comes from
            # the local backend as a bearer token (GPUB_LOCAL_TOKEN), as a VM's comes from its
            # metadata server. Without one, anonymous (the IAM layer then answers 401).
            token = os.environ.get("GPUB_LOCAL_TOKEN", "").strip()
            self._client = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                credentials=(
                    OAuthCredentials(token=token)  # type: ignore[no-untyped-call]
                    if token
                    else AnonymousCredentials()  # type: ignore[no-untyped-call]
                ),
            )
        else:
            self._client = storage.Client()
        # requests' default pool keeps 10 connections per host: with more threads than that,
        # connections are opened and thrown away on every request. Size it to the threads.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, pool_size), max_retries=0)
        session = self._client._http
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._timeout_s = timeout_s
        self._buckets: dict[str, Bucket] = {}
        self.requests: Counter[str] = Counter()  # requests sent, by kind (get/put/list/...)
        self._count_lock = threading.Lock()

    def _count(self, kind: str) -> None:
        with self._count_lock:
            self.requests[kind] += 1

    def _bucket(self, name: str) -> Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = self._client.bucket(name)
        return bucket

    def _retry(self, deadline_s: float | None) -> Retry:
        return DEFAULT_RETRY.with_timeout(deadline_s or self._timeout_s)

    def read(self, uri: GcsUri, *, generation: str | int | None = None,
             deadline_s: float | None = None) -> bytes:
        return self.fetch(uri, generation=generation, deadline_s=deadline_s)[0]

    def fetch(self, uri: GcsUri, *, generation: str | int | None = None,
              deadline_s: float | None = None) -> tuple[bytes, str | None]:
        """The object's bytes and the generation read: one media request (the client takes
        the generation from the response's x-goog-generation header)."""
        gen = int(generation) if generation not in (None, "") else None
        blob = self._bucket(uri.bucket).blob(uri.name, generation=gen)
        self._count("get")
        data = blob.download_as_bytes(
            timeout=min(self._timeout_s, deadline_s or self._timeout_s),
            retry=self._retry(deadline_s),
        )
        return data, (str(blob.generation) if blob.generation is not None else None)

    def create(self, uri: GcsUri, data: bytes, content_type: str, *,
               metadata: Mapping[str, str] | None = None, if_generation_match: int = 0,
               deadline_s: float | None = None) -> bool:
        """Create the object (`if_generation_match=0`) or replace exactly generation
        `if_generation_match`, in one request. False on 412 Precondition Failed: it exists
        (or changed) because an earlier or racing attempt wrote it
        (https://cloud.google.com/storage/docs/request-preconditions)."""
        blob = self._bucket(uri.bucket).blob(uri.name)
        if metadata:
            blob.metadata = dict(metadata)
        self._count("put")
        try:
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=if_generation_match,
                timeout=min(self._timeout_s, deadline_s or self._timeout_s),
                # Safe to retry: the precondition makes a repeated upload a no-op (412).
                retry=self._retry(deadline_s),
            )
        except gexc.PreconditionFailed:
            return False
        return True

    def put(self, uri: GcsUri, data: bytes, content_type: str) -> None:
        """Write or replace a bookkeeping object (error records, task summaries)."""
        blob = self._bucket(uri.bucket).blob(uri.name)
        self._count("put")
        blob.upload_from_string(data, content_type=content_type, timeout=self._timeout_s,
                                retry=self._retry(None))

    def stat(self, uri: GcsUri) -> ObjectStat | None:
        """The object's generation and metadata (one metadata request), None when absent."""
        self._count("stat")
        blob = self._bucket(uri.bucket).get_blob(uri.name, timeout=self._timeout_s,
                                                 retry=self._retry(None))
        if blob is None:
            return None
        return ObjectStat(blob.name, str(blob.generation), int(blob.size or 0),
                          dict(blob.metadata or {}))

    def delete_if_exists(self, uri: GcsUri) -> None:
        self._count("delete")
        with contextlib.suppress(gexc.NotFound):
            self._bucket(uri.bucket).blob(uri.name).delete(
                timeout=self._timeout_s, retry=self._retry(None))

    def list_names(self, prefix: GcsUri, *, limit: int | None = None) -> set[str] | None:
        """Object names under `prefix`, or None when there are more than `limit` (the caller
        then checks objects one by one instead of paging through a huge listing)."""
        names: set[str] = set()
        for name in self._iter_names(prefix):
            names.add(name)
            if limit is not None and len(names) > limit:
                return None
        return names

    def _iter_names(self, prefix: GcsUri) -> Iterator[str]:
        for obj in self.iter_objects(prefix):
            yield obj.name

    def iter_objects(self, prefix: GcsUri, *, metadata: bool = False) -> Iterator[ObjectStat]:
        """Every object under `prefix`, in name order, in pages of 1,000 (one request each)."""
        blobs = self._client.list_blobs(
            prefix.bucket, prefix=prefix.name,
            fields=_LIST_FIELDS_META if metadata else _LIST_FIELDS,
            page_size=LIST_PAGE_SIZE, timeout=self._timeout_s, retry=self._retry(None),
        )
        for page in blobs.pages:
            self._count("list")
            for blob in page:
                yield ObjectStat(blob.name, str(blob.generation), int(blob.size or 0),
                                 dict(blob.metadata or {}))

    def list_objects(self, prefix: GcsUri, *, limit: int | None = None,
                     metadata: bool = False) -> list[ObjectStat] | None:
        """Objects under `prefix`, or None when there are more than `limit`."""
        out: list[ObjectStat] = []
        for obj in self.iter_objects(prefix, metadata=metadata):
            out.append(obj)
            if limit is not None and len(out) > limit:
                return None
        return out

    def close(self) -> None:
        self._client.close()
