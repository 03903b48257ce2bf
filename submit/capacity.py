"""The capacity ladder at submit time (docs/capacity.md).

A job's ladder (`JobSpec.rungs_for`) times its candidate regions give the candidates, rung by
rung: every region of the first rung, then every region of the next. Batch's
`allowedLocations` holds one region per job, so trying another region is a new job.

1. Quota preflight: a candidate whose quota (Cloud Quotas QuotaInfo, submit/quota.py) is
   below the run's peak need is skipped, with the numbers; none left is exit 2.
2. The job is created on the first candidate left.
3. `climb` watches it: when it shows no VM after the rung's `deadline_s`, or fails with a
   capacity error, it is cancelled and the next candidate gets the next attempt of the run.
Every step is printed and kept in the run record (`_run.json` "ladder"); `--json` returns it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from jobs.parts import Rung
from submit import costing, ids
from submit.errors import ServiceError, SubmitError
from submit.quota import QuotaValue, needs, peak_vms, shortfalls
from submit.ui import say
from submit.uris import GcsPrefix

if TYPE_CHECKING:
    from google.cloud import batch_v1, storage  # type: ignore[attr-defined]

    from submit.backend import Backend
    from submit.batch import Connection
    from submit.ownership import RunRecord
    from submit.prepare import Prepared

# Words in a Batch status event that mean "no capacity" rather than a broken job: Compute
# Engine's stockout and quota errors (https://cloud.google.com/compute/docs/resource-error).
CAPACITY_MARKERS = ("RESOURCE_POOL_EXHAUSTED", "STOCKOUT", "QUOTA_EXCEEDED",
                    "resource_availability", "does not have enough resources")
# Local runs may shrink the rungs' deadlines (tests, bench): deadline x this. Google ignores it.
TIME_SCALE_VAR = "GPUB_LADDER_TIME_SCALE"
DEFAULT_DEADLINE_S = 900  # a deadline-less last rung, in a region that is not the last
_HAS_VM_TASK_STATES = ("ASSIGNED", "RUNNING", "SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class Candidate:
    index: int  # rung number, from 0
    rung: Rung
    region: str

    def label(self) -> str:
        res = f" reservation {self.rung.reservation}" if self.rung.reservation else ""
        return f"rung {self.index + 1} {self.rung.provisioning.upper()}{res} in {self.region}"


@dataclass
class Ladder:
    candidates: list[Candidate]  # the viable ones, in order
    trail: list[dict[str, Any]] = field(default_factory=list)
    position: int = 0
    started: float = field(default_factory=time.monotonic)
    time_scale: float = 1.0

    @property
    def current(self) -> Candidate:
        return self.candidates[self.position]

    def note(self, cand: Candidate, action: str, reason: str = "",
             job_id: str | None = None) -> None:
        """Print one step and keep it for the run record and --json."""
        self.trail.append({
            "at_s": round(time.monotonic() - self.started, 2), "rung": cand.index + 1,
            "provisioning": cand.rung.provisioning.upper(), "reservation": cand.rung.reservation,
            "region": cand.region, "action": action, "reason": reason, "job_id": job_id,
        })
        say(f"ladder: {cand.label()}: {action}" + (f" ({reason})" if reason else "")
            + (f" [job {job_id}]" if job_id else ""))

    def deadline_s(self, cand: Candidate) -> float | None:
        """The rung's deadline; the last rung has none, but in a region another candidate
        follows it waits DEFAULT_DEADLINE_S (else the later regions could never be tried)."""
        d = cand.rung.deadline_s
        if d is None and self.position < len(self.candidates) - 1:
            d = DEFAULT_DEADLINE_S
        return None if d is None else d * self.time_scale


def _time_scale(backend: Backend) -> float:
    text = os.environ.get(TIME_SCALE_VAR, "").strip()
    if not text or backend.name != "local":
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        raise SubmitError(f"{TIME_SCALE_VAR}: must be a number > 0; got {text!r}") from None
    if scale <= 0:
        raise SubmitError(f"{TIME_SCALE_VAR}: must be a number > 0; got {text!r}")
    return scale


def rung_cost(p: Prepared, rung: Rung) -> str:
    """The plan's estimate on one rung (an upper bound, like the run's estimate)."""
    if rung.reservation and rung.reservation != "NO_RESERVATION":
        return (f"$0 marginal: reservation {rung.reservation} is paid for whether used or "
                "not")
    spot = rung.provisioning in ("spot", "preemptible")
    est = costing.estimate(replace(p.shape, spot=spot), p.plan)
    note = " (catalog has no FLEX_START price: on-demand bound)" if (
        rung.provisioning == "flex_start") else ""
    return f"at most {costing.usd(est.usd)} at ${est.price_usd_h:.4f}/h{note}"


def plan_ladder(p: Prepared, backend: Backend) -> Ladder:
    """The viable candidates after the quota preflight and the environment's guardrails on
    each rung's job (printed); exit 2 when none is."""
    rungs = p.spec.rungs_for(p.env.kind)
    regions = list(p.spec.candidate_regions) or [p.spec.region or p.env.region]
    all_cands = [Candidate(i, r, region) for i, r in enumerate(rungs) for region in regions]
    vms = peak_vms(p.plan.parallelism, p.shape.tasks_per_node)
    wanted = {c: needs(machine_type=p.shape.machine_type, gpu_type=p.shape.gpu_type,
                       gpus_per_vm=p.shape.gpus_per_vm, vms=vms,
                       provisioning=c.rung.provisioning, reservation=c.rung.reservation,
                       region=c.region) for c in all_cands}
    quota_ids = sorted({n.quota_id for ns in wanted.values() for n in ns})
    values: list[QuotaValue] = []
    if quota_ids:
        try:
            values = backend.quotas(p.env.project_id, quota_ids)
        except SubmitError as exc:  # cannot read quota is not "no quota": go on, say so
            say(f"quota preflight skipped: {exc}")
    ladder = Ladder([], time_scale=_time_scale(backend))
    refused: list[str] = []
    from submit import guard

    for cand in all_cands:
        problems = shortfalls(wanted[cand], values)
        if not problems and len(all_cands) > 1:  # the default rung was checked by prepare
            problems = [f"guardrail: {v}" for v in guard.violations(
                job_on(p, cand), p.env.guardrails, p.env.name)]
        if problems:
            ladder.note(cand, "skipped", "; ".join(problems))
            refused.append(f"{cand.label()}: {'; '.join(problems)}")
        else:
            ladder.candidates.append(cand)
            if len(all_cands) > 1:
                say(f"plan: {cand.label()}: {rung_cost(p, cand.rung)}")
    if not ladder.candidates:
        raise SubmitError("no rung of the ladder can ever run with this project's quota and "
                          "the environment's guardrails: " + " | ".join(refused))
    return ladder


def refuse_if_active_elsewhere(p: Prepared, backend: Backend, ladder: Ladder) -> None:
    """One active run per output location, across every candidate region: a run the ladder
    moved to region B is invisible to a ListJobs in region A (exit 3, as in region A)."""
    from submit import batch, ownership

    first = ladder.current.region
    for region in dict.fromkeys(c.region for c in ladder.candidates):
        if region != first:
            conn = backend.batch(p.env.project_id, region)
            ownership.refuse_if_active(batch.list_jobs(conn), p.out)


def attempt_state(conn: Connection, record: RunRecord, job_id: str) -> str | None:
    """Batch state of an attempt of the run, asked in the region the ladder created it in
    (the run record's trail); None when Batch no longer knows it."""
    from google.api_core import exceptions as gexc

    from submit.backend import backend_for

    region = next((s.get("region") for s in reversed(record.ladder)
                   if s.get("job_id") == job_id), None)
    if region and conn.parent.rsplit("/", 1)[-1] != region:
        conn = backend_for(conn.local).batch(conn.parent.split("/")[1], str(region))
    try:
        return str(conn.client.get_job(name=f"{conn.parent}/jobs/{job_id}").status.state.name)
    except gexc.NotFound:
        return None


def job_on(p: Prepared, cand: Candidate) -> dict[str, Any]:
    """The run's job JSON (attempt 1) moved to `cand`: provisioning model, reservation,
    region and the rung's retry policy (jobs/retries.py `lifecycle_policy`)."""
    from jobs.retries import lifecycle_policy

    job = p.job_for(ids.run_job_id(p.run_base, 1))
    instances = job.setdefault("allocationPolicy", {}).setdefault("instances", [{}])
    if "instanceTemplate" not in instances[0]:
        policy = instances[0].setdefault("policy", {})
        policy["provisioningModel"] = cand.rung.provisioning.upper()
        if cand.rung.reservation:
            policy["reservation"] = cand.rung.reservation
        else:
            policy.pop("reservation", None)
    zones = [f"zones/{z}" for z in p.spec.zones if z.startswith(f"{cand.region}-")]
    job["allocationPolicy"]["location"] = {"allowedLocations": [f"regions/{cand.region}",
                                                                *zones]}
    task = job["taskGroups"][0].setdefault("taskSpec", {})
    retries, policy_json = lifecycle_policy(p.spec.on_rung(cand.rung, cand.region), p.env.kind)
    task.pop("maxRetryCount", None)
    task.pop("lifecyclePolicies", None)
    if retries:
        task["maxRetryCount"] = retries
    if policy_json:
        task["lifecyclePolicies"] = [policy_json]
    return job


def capacity_problem(job: batch_v1.Job) -> str | None:
    """The last status event that says "no capacity", if any."""
    for event in reversed(list(job.status.status_events)):
        if any(m in event.description for m in CAPACITY_MARKERS):
            return event.description
    return None


def has_vm(job: batch_v1.Job) -> bool:
    state = job.status.state.name
    if state in ("RUNNING", "SUCCEEDED"):
        return True
    return any(counts.get(s, 0) for group in job.status.task_groups.values()
               for counts in [dict(group.counts)] for s in _HAS_VM_TASK_STATES)


def _save(p: Prepared, storage: storage.Client, ladder: Ladder, new_attempt: str | None) -> None:
    """The trail (and a new attempt) into the run record, conditional on its generation."""
    from submit import gcs, ownership

    data, generation = gcs.read_object(storage, p.out, ownership.RUN_RECORD, "--output")
    record = ownership.RunRecord.decode(data) or p.record
    attempts = [*record.attempts, *([new_attempt] if new_attempt else [])]
    updated = record.model_copy(update={"attempts": attempts, "ladder": list(ladder.trail)})
    gcs.put_object(storage, p.out, ownership.RUN_RECORD, updated.encode(), "--output",
                   if_generation_match=generation if data is not None else 0)


def climb(p: Prepared, backend: Backend, storage: storage.Client, ladder: Ladder,
          conn: Connection, job_id: str, poll_s: float, *, watch_last: bool = False
          ) -> tuple[Connection, str]:
    """Watch the created job until it has a VM, moving down the ladder as needed. Returns the
    connection and id of the job that holds the run now. On the last rung without a deadline
    it returns at once, unless `watch_last` (--wait): then it notes when the VM came."""
    from google.cloud import batch_v1

    from submit import batch, ownership

    ladder.note(ladder.current, "created", job_id=job_id)
    while True:
        cand = ladder.current
        last = ladder.position == len(ladder.candidates) - 1
        deadline = ladder.deadline_s(cand)
        if last and deadline is None and not watch_last:
            _save(p, storage, ladder, None)
            return conn, job_id  # nowhere to go: wait as on any single-rung job
        start = time.monotonic()
        reason = ""
        while not reason:
            job = batch.get_job(conn, job_id)
            state = job.status.state.name
            if has_vm(job):
                ladder.note(cand, "running", "a VM runs the job", job_id)
                _save(p, storage, ladder, None)
                return conn, job_id
            problem = capacity_problem(job)
            if state in ("FAILED", "CANCELLED", "DELETION_IN_PROGRESS"):
                if state == "FAILED" and problem:
                    reason = f"failed for capacity: {problem}"
                    break
                _save(p, storage, ladder, None)
                return conn, job_id  # not a capacity matter: the summary reports it
            if deadline is not None and time.monotonic() - start >= deadline:
                reason = f"no VM after {deadline:g}s" + (f": {problem}" if problem else "")
                break
            time.sleep(poll_s)
        if state not in ("FAILED", "CANCELLED"):
            batch.cancel_job(conn, job_id)
        ladder.note(cand, "cancelled", reason, job_id)
        if last:
            _save(p, storage, ladder, None)
            raise ServiceError(f"capacity: no rung of the ladder got a VM; last: {cand.label()}"
                               f" {reason}")
        ladder.position += 1
        nxt = ladder.current
        conn = backend.batch(p.env.project_id, nxt.region)
        new_id = ids.run_job_id(p.run_base, ownership.next_attempt([], p.run_base, [job_id]))
        p.job_json = job_on(p, nxt)
        _save(p, storage, ladder, new_id)
        created, _ = batch.create_job(conn, job_id=new_id,
                                      job=batch_v1.Job.from_json(p.job_text(new_id)),
                                      request_id=ids.request_id(new_id))
        job_id = batch.short_id(created.name)
        ladder.note(nxt, "created", f"after {cand.label()}", job_id)


def files_failed(storage: storage.Client, out: GcsPrefix) -> int:
    """Input files the runner gave up on (`_tasks/<index>.json` "failed"): application
    failures, counted against the job's failure_budget inside the task, apart from lost VMs."""
    import json

    from gpub_runner import contract

    from submit import gcs

    total = 0
    tasks = GcsPrefix(out.bucket, out.prefix + contract.TASKS_DIR)
    for obj in gcs.list_objects(storage, tasks, "--output"):
        data, _ = gcs.read_object(storage, tasks, obj.name, "--output")
        try:
            total += int(json.loads(data or b"{}").get("failed", 0))
        except (ValueError, TypeError, AttributeError):
            continue  # not a task summary
    return total
