"""Workflows connectors (`googleapis.*` calls) served by the local backend, with the calling
workflow's identity.

Semantics from the connector reference
(https://cloud.google.com/workflows/docs/reference/googleapis/batch/v1/projects.locations.jobs/create):
`batch.v1...jobs.create` waits until the job completes, fails or times out (default timeout
1,800 s, `connector_params.timeout`; `skip_polling: true` returns at creation); a timeout raises
`TimeoutError`, an HTTP status >= 400 `HttpError` with `code`. A job that ends FAILED (or
CANCELLED) raises `OperationError` (the built-in tag for a long-running operation that finished
unsuccessfully, https://cloud.google.com/workflows/docs/reference/catching-errors).
Transient errors with `LOCAL_CONNECTOR_ERROR_RATE`, retried by the connector first as the real
ones are (`local.connector_faults`).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

from local.connector_faults import ConnectorFaults, InjectedHttpError
from local.faults import FaultPlan, plan_from_env
from local.identity import credentials_for

DEFAULT_TIMEOUT_S = 1800.0
SLEEP_SCALE_ENV = "LOCAL_WORKFLOWS_SLEEP_SCALE"
TIMEOUT_ENV = "LOCAL_WORKFLOWS_CONNECTOR_TIMEOUT_S"
_FINAL_OK = {"SUCCEEDED"}
_FINAL_BAD = {"FAILED", "CANCELLED", "DELETION_IN_PROGRESS"}
_LONG_RUNNING = {"googleapis.batch.v1.projects.locations.jobs.create"}
_GETS = (".get", ".list")  # GET methods: the connector's idempotent retry policy


def _error(message: str, tags: list[str], code: int | None = None) -> Exception:
    from workflows_emulator.utils import WorkflowError

    payload: dict[str, Any] = {"message": message, "tags": tags}
    if code is not None:
        payload["code"] = code
    return WorkflowError(**payload)  # type: ignore[no-any-return]


class Connectors:
    def __init__(self, *, batch_target: str, gcs_endpoint: str, pubsub_target: str,
                 identity: str, poll_s: float = 0.2, sleep_scale: float | None = None,
                 timeout_s: float | None = None, plan: FaultPlan | None = None,
                 fault_key: str = "") -> None:
        """`plan`: the fault knobs (None reads them from the environment); `fault_key` names
        this execution's random stream (the event id: a seed replays the same faults)."""
        self.batch_target = batch_target
        self.gcs_endpoint = gcs_endpoint
        self.pubsub_target = pubsub_target
        self.identity = identity
        self.poll_s = poll_s
        # The factor the workflow's `sys.sleep` waits are multiplied by (local.workflows).
        self.sleep_scale = (float(os.environ.get(SLEEP_SCALE_ENV, "1") or 1)
                            if sleep_scale is None else sleep_scale)
        # The connector's default timeout (1,800 s on Workflows); tests shorten it.
        self.timeout_s = (float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S) or DEFAULT_TIMEOUT_S)
                          if timeout_s is None else timeout_s)
        # Set to abandon an execution: its next `sys.sleep` raises (a stuck test cleans up).
        self.abandoned = threading.Event()
        self.faults = ConnectorFaults(plan or plan_from_env(), f"connectors:{identity}:{fault_key}",
                                      self._backoff)
        self._calls: dict[str, Callable[[dict[str, Any]], Any]] = {
            "googleapis.batch.v1.projects.locations.jobs.create": self.batch_create,
            "googleapis.batch.v1.projects.locations.jobs.get": self.batch_get,
            "googleapis.batch.v1.projects.locations.jobs.delete": self.batch_delete,
            "googleapis.pubsub.v1.projects.topics.publish": self.pubsub_publish,
            "googleapis.storage.v1.objects.list": self.storage_list,
            "googleapis.storage.v1.objects.get": self.storage_get,
            "googleapis.storage.v1.objects.insert": self.storage_insert,
            "googleapis.batch.v1.projects.locations.jobs.taskGroups.tasks.list": self.batch_tasks,
        }

    def call(self, name: str, args: dict[str, Any]) -> Any:
        fn = self._calls.get(name)
        if fn is None:
            raise _error(f"local backend: connector {name} is not emulated", ["SystemError"])
        try:
            if name in _LONG_RUNNING:  # each of its requests draws faults on its own
                return fn(args)
            return self.faults.request(name, name.endswith(_GETS), lambda: fn(args))
        except gexc.GoogleAPICallError as exc:
            code = int(exc.code or 500)
            raise _error(str(exc.message), ["HttpError"], code) from None
        except InjectedHttpError as exc:
            raise _error(str(exc), ["HttpError"], exc.code) from None

    def _backoff(self, seconds: float) -> None:
        if self.abandoned.wait(seconds * self.sleep_scale):
            raise RuntimeError("local workflows: execution abandoned")

    # ---- Batch ------------------------------------------------------------------------------
    def _batch(self) -> Any:
        from local.client import batch_client

        return batch_client(self.batch_target, self.identity)  # actAs checked at CreateJob

    @staticmethod
    def _job_json(job: Any) -> Any:
        from google.cloud import batch_v1

        # REST (what connectors return) names enums: "SUCCEEDED", not 4.
        return json.loads(batch_v1.Job.to_json(job, use_integers_for_enums=False))

    def batch_create(self, args: dict[str, Any]) -> Any:
        from google.cloud import batch_v1

        params = args.get("connector_params") or {}
        job = batch_v1.Job.from_json(json.dumps(args.get("body") or {}))
        client = self._batch()
        request = batch_v1.CreateJobRequest(parent=args["parent"], job=job,
                                            job_id=args.get("jobId", ""),
                                            request_id=args.get("requestId", ""))
        created = self.faults.request("jobs.create", False, lambda: client.create_job(request))
        if params.get("skip_polling"):
            return self._job_json(created)
        timeout = float(params.get("timeout", self.timeout_s))
        deadline = time.monotonic() + timeout
        while True:
            got = self.faults.request("jobs.get (polling)", True,
                                      lambda: client.get_job(name=created.name))
            state = got.status.state.name
            if state in _FINAL_OK:
                return self._job_json(got)
            if state in _FINAL_BAD:
                raise _error(f"job {created.name} ended {state}", ["OperationError"])
            if time.monotonic() >= deadline:
                raise _error(f"job {created.name} still {state} after {timeout:g}s",
                             ["TimeoutError"])
            time.sleep(self.poll_s)

    def batch_get(self, args: dict[str, Any]) -> Any:
        return self._job_json(self._batch().get_job(name=args["name"]))

    def batch_tasks(self, args: dict[str, Any]) -> Any:
        from google.cloud import batch_v1

        page = self._batch().list_tasks(request=batch_v1.ListTasksRequest(
            parent=args["parent"], page_size=int(args.get("pageSize") or 0)))
        tasks = [json.loads(batch_v1.Task.to_json(t, use_integers_for_enums=False))
                 for t in next(iter(page.pages)).tasks]
        return {"tasks": tasks}

    def batch_delete(self, args: dict[str, Any]) -> Any:
        self._batch().delete_job(name=args["name"])
        return {"name": args["name"], "done": False}

    # ---- Pub/Sub ---------------------------------------------------------------------------
    def pubsub_publish(self, args: dict[str, Any]) -> Any:
        from local.grpc_identity import publisher_for

        publisher = publisher_for(self.pubsub_target, self.identity)  # as the workflow's SA
        ids = []
        for m in (args.get("body") or {}).get("messages", []):
            data = base64.b64decode(m.get("data", "") or "")
            attrs = {str(k): str(v) for k, v in (m.get("attributes") or {}).items()}
            ids.append(publisher.publish(args["topic"], data, **attrs).result(timeout=30))
        return {"messageIds": ids}

    # ---- Cloud Storage (as the workflow's service account, through the IAM layer) -----------
    def _storage(self) -> Any:
        from google.cloud import storage  # type: ignore[attr-defined]

        client = storage.Client(project="local", credentials=credentials_for(self.identity),
                                client_options={"api_endpoint": self.gcs_endpoint})
        # google-cloud-storage >= 3.x fills a bucket-metadata cache (for its tracing attributes)
        # with a background `get_bucket` on a bucket's first media download or upload: a
        # storage.buckets.get that the Workflows connector never issues, and that an account
        # holding only object roles is denied. A fresh client per call would issue it every time.
        client._bucket_metadata_cache = None
        return client

    def storage_list(self, args: dict[str, Any]) -> Any:
        # One page per call, as the JSON API answers (maxResults, pageToken, nextPageToken).
        blobs = self._storage().list_blobs(
            args["bucket"], prefix=args.get("prefix") or None,
            max_results=int(args["maxResults"]) if args.get("maxResults") else None,
            page_token=args.get("pageToken") or None)
        page = next(iter(blobs.pages))
        items = [{"name": b.name, "bucket": b.bucket.name, "size": str(b.size),
                  "generation": str(b.generation)} for b in page]
        out: dict[str, Any] = {"kind": "storage#objects"}
        if items:
            out["items"] = items
        if blobs.next_page_token:
            out["nextPageToken"] = blobs.next_page_token
        return out

    def storage_insert(self, args: dict[str, Any]) -> Any:
        """`objects.insert` with `uploadType: media`: a map body is stored as JSON
        (cloud.google.com/workflows/docs/reference/googleapis/storage/v1/objects/insert);
        `ifGenerationMatch: 0` creates only if absent (412 otherwise)."""
        body = args.get("body")
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        blob = self._storage().bucket(args["bucket"]).blob(args["name"])
        match = args.get("ifGenerationMatch")
        blob.upload_from_string(data, content_type="application/json",
                                if_generation_match=None if match is None else int(match))
        return {"name": blob.name, "bucket": args["bucket"], "generation": str(blob.generation)}

    def storage_get(self, args: dict[str, Any]) -> Any:
        blob = self._storage().bucket(args["bucket"]).blob(args["object"])
        if args.get("alt") == "media":
            return blob.download_as_text()
        blob.reload()
        return {"name": blob.name, "bucket": args["bucket"], "size": str(blob.size),
                "generation": str(blob.generation)}
