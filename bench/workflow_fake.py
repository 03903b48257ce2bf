"""A small stateful stand-in for the APIs the dispatcher workflow calls (Cloud Storage objects
with generations and preconditions, Batch jobs with ALREADY_EXISTS, Pub/Sub topics), to run
the deployed source in workflows-emulator fast. Errors are raised the way the local
connectors raise them (`local.connectors._error`: an HttpError with its `code`), so the
workflow's retry predicate and except branches see what they would see on Google.

Shared by bench/intake.py (steps per run) and the tests (tests/test_workflow_runs.py), with
the workflow parameters both start from (`params`: the `embed` job of a dev environment).
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml

from jobs.declared import embed
from jobs.render import RenderContext, render_job
from local import workflows as local_workflows
from local.connectors import _error
from stacks.workflow_source import WorkflowParams, workflow_source

PARENT = "projects/p-dev/locations/europe-west4"
CTX = RenderContext(
    env_name="dev", env_kind="dev", project_id="p-dev", region="europe-west4",
    registry_host="europe-west4-docker.pkg.dev/p-dev/batch-images",
    job_service_account_email="job-embed@p-dev.iam.gserviceaccount.com",
)


def params(job_json: dict[str, Any] | None = None, **kw: Any) -> WorkflowParams:
    """The `embed` job's workflow parameters, `kw` laid over them."""
    base: dict[str, Any] = dict(
        job="embed", env="dev", project_id="p-dev", job_region="europe-west4",
        job_json=job_json if job_json is not None else render_job(embed.SPEC, CTX),
        files_per_task=20, max_parallelism=4,
    )
    base.update(kw)
    return WorkflowParams(**base)


@dataclass
class Job:
    name: str
    body: dict[str, Any]
    request_id: str
    states: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)


class FakeCloud:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[int, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self.published: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: dict[str, int] = {}  # connector suffix -> how many 503s before it works
        self.states: list[str] = ["SUCCEEDED"]  # what jobs.get answers for a new job, in turn
        self._gen = 1000

    # ---- setup helpers ----------------------------------------------------------------------
    def put(self, bucket: str, name: str, data: Any) -> int:
        self._gen += 1
        self.objects[(bucket, name)] = (self._gen, data)
        return self._gen

    def named(self, suffix: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name.endswith(suffix)]

    def outcomes(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(base64.b64decode(m["data"])) for m in self.published.get(topic, [])]

    # ---- the connectors ---------------------------------------------------------------------
    def __call__(self, step: Any) -> Any:
        name, args = str(step["call"]), dict(step.get("args") or {})
        self.calls.append((name, args))
        short = name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1]
        if self.faults.get(short, 0) > 0:
            self.faults[short] -= 1
            raise _error(f"{short}: service unavailable", ["HttpError"], 503)
        handler = getattr(self, short.replace(".", "_"), None)
        if handler is None:
            raise AssertionError(f"unexpected call {name}")
        return handler(args)

    def objects_get(self, a: dict[str, Any]) -> Any:
        found = self.objects.get((a["bucket"], a["object"]))
        if found is None:
            raise _error(f"No such object: {a['bucket']}/{a['object']}", ["HttpError"], 404)
        gen, data = found
        if a.get("alt") == "media":
            return data if isinstance(data, str) else json.dumps(data)
        return {"name": a["object"], "bucket": a["bucket"], "generation": str(gen)}

    def objects_insert(self, a: dict[str, Any]) -> Any:
        key = (a["bucket"], a["name"])
        match = a.get("ifGenerationMatch")
        current = self.objects.get(key)
        if match is not None and int(match) != (current[0] if current else 0):
            raise _error("At least one of the pre-conditions you specified did not hold.",
                         ["HttpError"], 412)
        gen = self.put(a["bucket"], a["name"], json.loads(json.dumps(a["body"])))
        return {"name": a["name"], "generation": str(gen)}

    def objects_list(self, a: dict[str, Any]) -> Any:
        names = sorted(n for b, n in self.objects if b == a["bucket"] and n.startswith(a["prefix"]))
        start = int(a.get("pageToken") or 0)
        size = int(a.get("maxResults") or 1000)
        page = names[start:start + size]
        out: dict[str, Any] = {"kind": "storage#objects"}
        if page:
            out["items"] = [{"name": n, "generation": str(self.objects[(a["bucket"], n)][0])}
                            for n in page]
        if start + size < len(names):
            out["nextPageToken"] = str(start + size)
        return out

    def jobs_create(self, a: dict[str, Any]) -> Any:
        job_id = a["jobId"]
        if job_id in self.jobs:
            if self.jobs[job_id].request_id == a["requestId"]:
                return {"name": self.jobs[job_id].name}  # Batch dedupes a retried request
            raise _error(f"Job {job_id} already exists", ["HttpError"], 409)
        name = f"{a['parent']}/jobs/{job_id}"
        self.jobs[job_id] = Job(name, json.loads(json.dumps(a["body"])), a["requestId"],
                                list(self.states))
        return {"name": name}

    def jobs_get(self, a: dict[str, Any]) -> Any:
        job = self.jobs.get(a["name"].rsplit("/", 1)[-1])
        if job is None:
            raise _error(f"Job {a['name']} not found", ["HttpError"], 404)
        state = job.states.pop(0) if len(job.states) > 1 else job.states[0]
        return {"name": job.name, "status": {"state": state, "statusEvents": job.events}}

    def tasks_list(self, a: dict[str, Any]) -> Any:
        job = self.jobs[a["parent"].split("/jobs/")[1].split("/")[0]]
        return {"tasks": job.tasks}

    def topics_publish(self, a: dict[str, Any]) -> Any:
        self.published.setdefault(a["topic"], []).extend(a["body"]["messages"])
        return {"messageIds": ["1"]}


class _NoWait:
    sleep_scale = 0.0
    abandoned = threading.Event()


class StepCounter:
    def __init__(self) -> None:
        self.steps = 0


def execute(p: WorkflowParams, argument: Any, cloud: FakeCloud,
            counter: StepCounter | None = None) -> Any:
    """Run the deployed source of `p` once against `cloud`; its result (WorkflowError when
    the execution fails). `counter` counts the steps executed."""
    main = local_workflows._emulator()  # the local cloud's patches: hash, scaled sleeps
    token = local_workflows._CURRENT.set(_NoWait())  # type: ignore[arg-type]
    saved = main.StepCall.execute_connector, main.execute_step
    main.StepCall.execute_connector = staticmethod(cloud)
    if counter is not None:
        inner = main.execute_step

        def counting(*a: Any, **k: Any) -> Any:
            counter.steps += 1
            return inner(*a, **k)

        main.execute_step = counting
    try:
        source = workflow_source(p)
        return main.execute_workflow(yaml.safe_load(source), {"args": argument})
    finally:
        main.StepCall.execute_connector, main.execute_step = saved
        local_workflows._CURRENT.reset(token)


def marker_event(bucket: str, name: str, generation: int,
                 event: str = "OBJECT_FINALIZE") -> dict[str, Any]:
    """The CloudEvent an Eventarc Pub/Sub trigger delivers for a storage notification
    (cloud.google.com/storage/docs/pubsub-notifications: attributes bucketId, objectId,
    eventType, objectGeneration)."""
    return {"type": "google.cloud.pubsub.topic.v1.messagePublished",
            "data": {"message": {"attributes": {"bucketId": bucket, "objectId": name,
                                                "eventType": event,
                                                "objectGeneration": str(generation)},
                                 "data": ""}}}
