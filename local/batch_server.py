"""A Google Batch API server (gRPC, `google.cloud.batch.v1.BatchService`) that runs jobs on
this machine. Started detached by `local.backend.LocalBackend`:

    python -m local.batch_server --root .local --repo-root . --gcs-endpoint http://127.0.0.1:P

It speaks the real protos, so the real `BatchServiceClient` works against it unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.cloud.batch_v1 import (
    CancelJobRequest,
    CancelJobResponse,
    CreateJobRequest,
    DeleteJobRequest,
    GetJobRequest,
    GetTaskRequest,
    Job,
    JobStatus,
    ListJobsRequest,
    ListJobsResponse,
    ListTasksRequest,
    ListTasksResponse,
    OperationMetadata,
    Task,
    TaskStatus,
)
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2

from local.batch_queries import compile_filter, order_key, page_of, task_state_filter
from local.capacity import CapacityConfig
from local.executor import FaultConfig, JobRunner, ServerConfig
from local.grpc_plumbing import RpcError, unary
from local.procs import serve_until_signalled
from local.rpc_iam import batch_interceptors
from local.state import GROUP_ID, TERMINAL_JOB_STATES, JobRecord, JobState, Store, now

SERVICE = "google.cloud.batch.v1.BatchService"
JOB_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
PARENT_RE = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
JOB_NAME_RE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)$")
GROUP_NAME_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/taskGroups/([^/]+)$")
TASK_NAME_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/taskGroups/([^/]+)/tasks/(\d+)$")  # noqa: E501
MAX_RETRY_COUNT = 10



def _invalid(message: str) -> NoReturn:
    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(name: str) -> NoReturn:
    raise RpcError(grpc.StatusCode.NOT_FOUND, f"Resource not found: {name}")


def _copy_job(job: Job) -> Job:
    return Job.deserialize(Job.serialize(job))


def _copy_task(task: Task) -> Task:
    return Task.deserialize(Task.serialize(task))


def _request_hash(req: CreateJobRequest) -> str:
    body = CreateJobRequest(parent=req.parent, job_id=req.job_id, job=req.job)
    text = json.dumps(json.loads(CreateJobRequest.to_json(body)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _valid_request_id(request_id: str) -> bool:
    """Batch wants a UUID, and not the zero UUID; check it here so local fails like prod."""
    try:
        return uuid.UUID(request_id) != uuid.UUID(int=0) and len(request_id) == 36
    except ValueError:
        return False


class BatchService:
    """The RPC implementations. Each takes a proto-plus request and returns a response."""

    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.runners: dict[str, JobRunner] = {}

    # ---- lookups -------------------------------------------------------------------------
    def _record(self, name: str) -> JobRecord:
        m = JOB_NAME_RE.match(name)
        if not m:
            _invalid(f"name must look like projects/P/locations/L/jobs/JOB; got {name!r}")
        rec = self.store.jobs.get(m.group(3))
        if rec is None or rec.job.name != name:
            _not_found(name)
        return rec

    # ---- RPCs ----------------------------------------------------------------------------
    def create_job(self, req: CreateJobRequest) -> Job:
        if not PARENT_RE.match(req.parent):
            _invalid(f"parent must look like projects/P/locations/L; got {req.parent!r}")
        job_id = req.job_id or f"job-{uuid.uuid4().hex[:20]}"
        if not JOB_ID_RE.match(job_id):
            _invalid(
                f"job_id {job_id!r} is invalid: it must match ^[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$ "
                "(1-63 characters: lowercase letters, digits and '-', starting with a letter, "
                "not ending with '-')"
            )
        if req.request_id and not _valid_request_id(req.request_id):
            _invalid(f"request_id {req.request_id!r} must be a valid non-zero UUID")
        request_hash = _request_hash(req)
        name = f"{req.parent}/jobs/{job_id}"
        with self.store.lock:
            if req.request_id and req.request_id in self.store.requests:
                seen = self.store.requests[req.request_id]
                existing = self.store.jobs.get(seen["job"].rsplit("/", 1)[-1])
                if seen["hash"] == request_hash and existing is not None:
                    return _copy_job(existing.job)  # a retried create: same job, not a new one
                if existing is not None:
                    _invalid(
                        f"request_id {req.request_id} was already used for {seen['job']} "
                        "with a different request"
                    )
            if job_id in self.store.jobs:
                raise RpcError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Job {job_id} already exists ({self.store.jobs[job_id].job.name})",
                )
            job = _validated(req.job)
            rec = self._new_record(job, name, req.request_id, request_hash)
            # Re-used id after a delete: start with empty task logs.
            tasks_dir = self.store.job_dir(job_id) / "tasks"
            if tasks_dir.exists():
                shutil.rmtree(tasks_dir, ignore_errors=True)
            self.store.add(rec)
            runner = JobRunner(self.store, rec, self.config)
            self.runners[job_id] = runner
            runner.start()
            return _copy_job(rec.job)

    def _new_record(self, job: Job, name: str, request_id: str, request_hash: str) -> JobRecord:
        t = now()
        job.name = name
        job.uid = f"{name.rsplit('/', 1)[-1][:40]}-{uuid.uuid4().hex[:12]}"
        job.create_time = t
        job.update_time = t
        group = job.task_groups[0]
        group.name = f"{name}/taskGroups/{GROUP_ID}"
        job.status = JobStatus(state=JobState.QUEUED)
        count = int(group.task_count)
        tasks = [
            Task(
                name=f"{group.name}/tasks/{i}",
                status=TaskStatus(state=TaskStatus.State.PENDING),
            )
            for i in range(count)
        ]
        rec = JobRecord(
            job=job,
            tasks=tasks,
            attempts=[0] * count,
            request_id=request_id,
            request_hash=request_hash,
        )
        self.store.refresh_counts(rec)
        return rec

    def get_job(self, req: GetJobRequest) -> Job:
        with self.store.lock:
            return _copy_job(self._record(req.name).job)

    def list_jobs(self, req: ListJobsRequest) -> ListJobsResponse:
        m = PARENT_RE.match(req.parent)
        if not m:
            _invalid(f"parent must look like projects/P/locations/L; got {req.parent!r}")
        project, location = m.groups()
        match = compile_filter(req.filter)
        with self.store.lock:
            jobs = []
            for rec in self.store.jobs.values():
                jm = JOB_NAME_RE.match(rec.job.name)
                if not jm or jm.group(1) != project or location not in ("-", jm.group(2)):
                    continue
                if match(rec.job):
                    jobs.append(_copy_job(rec.job))
        jobs.sort(key=order_key(req.order_by), reverse=req.order_by.strip().endswith(" desc"))
        got, token = page_of(jobs, req.page_size, req.page_token)
        return ListJobsResponse(jobs=got, next_page_token=token)

    def get_task(self, req: GetTaskRequest) -> Task:
        m = TASK_NAME_RE.match(req.name)
        if not m:
            _invalid(f"name must look like .../jobs/J/taskGroups/G/tasks/N; got {req.name!r}")
        with self.store.lock:
            rec = self._record(m.group(1))
            index = int(m.group(3))
            if m.group(2) != GROUP_ID or index >= len(rec.tasks):
                _not_found(req.name)
            return _copy_task(rec.tasks[index])

    def list_tasks(self, req: ListTasksRequest) -> ListTasksResponse:
        m = GROUP_NAME_RE.match(req.parent)
        if not m:
            _invalid(f"parent must look like .../jobs/J/taskGroups/G; got {req.parent!r}")
        wanted = task_state_filter(req.filter)
        with self.store.lock:
            rec = self._record(m.group(1))
            if m.group(2) not in (GROUP_ID, "-"):
                _not_found(req.parent)
            tasks = [
                _copy_task(t)
                for t in rec.tasks
                if wanted is None or t.status.state.name == wanted
            ]
        got, token = page_of(tasks, req.page_size, req.page_token)
        return ListTasksResponse(tasks=got, next_page_token=token)

    def delete_job(self, req: DeleteJobRequest) -> operations_pb2.Operation:
        with self.store.lock:
            rec = self._record(req.name)
            started = now()
            if rec.job.status.state not in TERMINAL_JOB_STATES:
                self.store.set_job_state(
                    rec, JobState.DELETION_IN_PROGRESS, req.reason or "deleted by request"
                )
        self._stop_runner(rec.job_id, "job deleted", JobState.DELETION_IN_PROGRESS)
        self.store.remove(rec.job_id)
        return _operation(rec.job.name, "delete", started, empty_pb2.Empty())

    def cancel_job(self, req: CancelJobRequest) -> operations_pb2.Operation:
        with self.store.lock:
            rec = self._record(req.name)
            state = rec.job.status.state
            if state in TERMINAL_JOB_STATES:
                raise RpcError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Job {rec.job.name} is already {state.name}; nothing to cancel",
                )
            started = now()
            self.store.set_job_state(rec, JobState.CANCELLATION_IN_PROGRESS)
        self._stop_runner(rec.job_id, "job cancelled", JobState.CANCELLED)
        return _operation(
            rec.job.name, "cancel", started, CancelJobResponse.pb(CancelJobResponse())
        )

    def _stop_runner(self, job_id: str, reason: str, final: int) -> None:
        runner = self.runners.pop(job_id, None)
        if runner is not None:
            runner.cancel(reason, final)
            runner.join(timeout=60)

    def shutdown(self, reason: str) -> None:
        """Kill every running task; their jobs end FAILED (they cannot resume)."""
        runners = list(self.runners.items())
        for _, runner in runners:
            runner.cancel(reason, JobState.FAILED)
        for _, runner in runners:
            runner.join(timeout=30)


def _validated(job: Job) -> Job:
    """Checks Batch itself makes at create time, with messages naming the field."""
    job = Job.deserialize(Job.serialize(job))
    if len(job.task_groups) != 1:
        _invalid(f"job.task_groups: exactly one task group is supported; got {len(job.task_groups)}")  # noqa: E501
    group = job.task_groups[0]
    spec = group.task_spec
    if not spec.runnables:
        _invalid("job.task_groups[0].task_spec.runnables: at least one runnable is required")
    for i, r in enumerate(spec.runnables):
        if not (r.script or r.container or r.barrier):
            _invalid(f"job.task_groups[0].task_spec.runnables[{i}]: needs script or container")
        if r.container and not r.container.image_uri:
            _invalid(f"job.task_groups[0].task_spec.runnables[{i}].container.image_uri is empty")
    if not 0 <= spec.max_retry_count <= MAX_RETRY_COUNT:
        _invalid(
            f"job.task_groups[0].task_spec.max_retry_count must be 0..{MAX_RETRY_COUNT}; "
            f"got {spec.max_retry_count}"
        )
    if len(spec.lifecycle_policies) > 1:
        _invalid("job.task_groups[0].task_spec.lifecycle_policies: at most one is supported")
    if group.task_environments:
        # Batch: taskEnvironments overrides taskCount.
        group.task_count = len(group.task_environments)
    elif group.task_count == 0:
        group.task_count = 1
    if group.task_count < 0:
        _invalid(f"job.task_groups[0].task_count must be >= 1; got {group.task_count}")
    if group.parallelism < 0:
        _invalid(f"job.task_groups[0].parallelism must be >= 0; got {group.parallelism}")
    if group.parallelism == 0:
        group.parallelism = group.task_count
    return job


def _operation(
    target: str, verb: str, started: Any, response: Any
) -> operations_pb2.Operation:
    """A finished long-running operation: the client's `.result()` returns without polling."""
    meta = OperationMetadata(
        create_time=started, end_time=now(), target=target, verb=verb, api_version="v1"
    )
    op = operations_pb2.Operation(
        name=f"{target.split('/jobs/')[0]}/operations/operation-{uuid.uuid4().hex}", done=True
    )
    meta_any, resp_any = any_pb2.Any(), any_pb2.Any()
    meta_any.Pack(OperationMetadata.pb(meta))
    resp_any.Pack(response)
    op.metadata.CopyFrom(meta_any)
    op.response.CopyFrom(resp_any)
    return op


# ---- gRPC plumbing -------------------------------------------------------------------------
def _unary(fn: Callable[[Any], Any], req_type: Any, serialize: Callable[[Any], bytes]
           ) -> grpc.RpcMethodHandler:
    return unary(fn, req_type, serialize, "local batch server")


def generic_handler(service: BatchService) -> grpc.GenericRpcHandler:
    op_serialize = operations_pb2.Operation.SerializeToString
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "CreateJob": _unary(service.create_job, CreateJobRequest, Job.serialize),
            "GetJob": _unary(service.get_job, GetJobRequest, Job.serialize),
            "ListJobs": _unary(service.list_jobs, ListJobsRequest, ListJobsResponse.serialize),
            "DeleteJob": _unary(service.delete_job, DeleteJobRequest, op_serialize),
            "CancelJob": _unary(service.cancel_job, CancelJobRequest, op_serialize),
            "GetTask": _unary(service.get_task, GetTaskRequest, Task.serialize),
            "ListTasks": _unary(service.list_tasks, ListTasksRequest, ListTasksResponse.serialize),
        },
    )


def serve(
    root: Path, repo_root: Path, gcs_endpoint: str, port: int = 0, port_file: Path | None = None,
    stacks: Sequence[Path] = (), iam: bool = True,
) -> None:
    """Run until SIGTERM/SIGINT. Writes the bound port to `port_file` once it accepts calls.
    With `stacks` (and `iam`), CreateJob needs actAs on the job's service account
    (`local.rpc_iam.batch_needs`), from the stacks' service-account IAM."""
    store = Store(root / "batch")
    recovered = store.load("the local backend restarted while the job was in flight")
    if recovered:
        print(f"local batch: marked in-flight jobs FAILED: {', '.join(recovered)}", flush=True)
    config = ServerConfig(
        root=root,
        repo_root=repo_root,
        gcs_endpoint=gcs_endpoint,
        faults=FaultConfig.from_env(dict(os.environ)),
        max_parallelism=int(os.environ.get("LOCAL_BATCH_MAX_PARALLELISM", "16")),
        capacity=CapacityConfig.from_env(dict(os.environ)),
        schedule_delay_s=float(os.environ.get("LOCAL_BATCH_SCHEDULE_DELAY_S", "0") or 0),
    )
    config.capacity.write(root)  # what `bin/submit --local` reads as quota values
    service = BatchService(store, config)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="rpc"),
                         interceptors=batch_interceptors(stacks) if iam else [])
    server.add_generic_rpc_handlers((generic_handler(service),))
    serve_until_signalled(server, port, "local batch", port_file, f" (pid {os.getpid()})")
    print("local batch: stopping", flush=True)
    service.shutdown("the local backend was stopped")
    server.stop(grace=2).wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m local.batch_server", description=__doc__)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--repo-root", type=Path, required=True)
    p.add_argument("--gcs-endpoint", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", type=Path)
    p.add_argument("--stack", type=Path, action="append", default=[],
                   help="cdk.tf.json whose service-account IAM CreateJob enforces (actAs)")
    p.add_argument("--no-iam", action="store_true", help="check no actAs (LOCAL_IAM=off)")
    a = p.parse_args(argv)
    serve(a.root.resolve(), a.repo_root.resolve(), a.gcs_endpoint, a.port, a.port_file,
          [s.resolve() for s in a.stack], iam=not a.no_iam)


if __name__ == "__main__":
    main()
