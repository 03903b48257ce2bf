"""Who owns an output location, and what a submit into it may do (docs/submit.md, "Output
ownership"). Pure apart from the job list and the run record it is given.

- At most one active run per output location, whatever its input: a job still active whose
  output overlaps (equal, inside, or around) refuses the submit with exit 3, naming the job.
- An output location is tied to one run: `_run.json` records its job, client, input and
  manifest hash, and the attempts (Batch job ids) made so far.
- Re-running the same command resumes a FAILED or CANCELLED run (the next attempt skips what
  is done), reports a SUCCEEDED one without creating a job, and refuses anything else unless
  `--overwrite`, which first removes the old run's objects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gpub_runner import contract
from pydantic import BaseModel, ConfigDict, ValidationError

from stacks import layout
from submit import ids
from submit.errors import ConflictError, SubmitError
from submit.uris import GcsPrefix, parse_prefix

if TYPE_CHECKING:
    from google.cloud import batch_v1

RUN_RECORD = layout.RUN_RECORD
# The manifest hash a triggered run records: `marker:<marker generation>` (the dispatcher
# workflow writes the record, stacks/workflow_run.py `claim_steps`).
MARKER_RUN = "marker:"
# A claim whose job Batch does not know yet is another submit between writing the record and
# CreateJob (seconds): it holds the location this long. An older claim without a job is a
# submit that died in between, and may be resumed or overwritten.
CLAIM_GRACE_S = 120.0


class RunRecord(BaseModel):
    """`<output>_run.json`: which run this output location belongs to."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job: str
    client: str
    env: str
    input: str
    output: str
    manifest_hash: str
    attempts: list[str] = []
    ladder: list[dict[str, Any]] = []  # the capacity ladder's steps (submit/capacity.py)
    claimed_at: float | None = None  # epoch seconds of the last claim (CLAIM_GRACE_S)

    def same_run(self, other: RunRecord) -> bool:
        keys = ("job", "client", "env", "input", "output", "manifest_hash")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def encode(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes | None) -> RunRecord | None:
        if data is None:
            return None
        try:
            return cls.model_validate(json.loads(data))
        except (ValueError, ValidationError):
            return None  # unreadable: treated as "not a run of ours"


def _output_of(job: batch_v1.Job) -> GcsPrefix | None:
    if not job.task_groups:
        return None
    value = job.task_groups[0].task_spec.environment.variables.get(contract.OUTPUT_PREFIX, "")
    try:
        return parse_prefix(value, contract.OUTPUT_PREFIX) if value else None
    except SubmitError:
        return None


def active_writer(jobs: Iterable[batch_v1.Job], out: GcsPrefix) -> batch_v1.Job | None:
    """A job, of any kind and however created, still active and writing into `out` (or into a
    folder inside it, or around it)."""
    for job in jobs:
        if job.status.state.name not in contract.JOB_ACTIVE_STATES:
            continue
        theirs = _output_of(job)
        if theirs is not None and (theirs.contains(out) or out.contains(theirs)):
            return job
    return None


def refuse_if_active(jobs: Iterable[batch_v1.Job], out: GcsPrefix) -> None:
    job = active_writer(jobs, out)
    if job is not None:
        name = job.name.rsplit("/", 1)[-1]
        raise ConflictError(
            f"--output: job {name} is already running into {_output_of(job)} "
            f"({job.status.state.name}); one active run per output location: wait for it or "
            f"cancel it (bin/submit cancel {name})")


def next_attempt(jobs: Iterable[batch_v1.Job], base: str, recorded: Iterable[str] = ()) -> int:
    """1 + the highest attempt number of `base` that Batch or the run record knows (Batch
    forgets deleted jobs; an id is never reused for another attempt)."""
    names = [j.name.rsplit("/", 1)[-1] for j in jobs] + list(recorded)
    numbers = [ids.attempt_of(name, base) for name in names]
    return 1 + max((n for n in numbers if n is not None), default=0)


@dataclass(frozen=True)
class Decision:
    action: Literal["new", "resume", "done", "overwrite"]
    previous: str | None = None  # the job id of the run's last attempt, when there is one


def decide(*, ours: RunRecord, record: RunRecord | None, first_object: str | None,
           last_state: str | None, overwrite: bool, now: float | None = None) -> Decision:
    """What a submit does with its output location (after `refuse_if_active`).

    `first_object`: some object under the output, None when it is empty; `record`: its run
    record; `last_state`: Batch state of the record's last attempt (None: unknown or gone)."""
    previous = record.attempts[-1] if record and record.attempts else None
    if first_object is None:
        return Decision("new")
    if (previous and last_state is None and record and record.claimed_at is not None
            and (now if now is not None else time.time()) - record.claimed_at < CLAIM_GRACE_S):
        raise ConflictError(f"--output: job {previous} is being created into {ours.output} by "
                            "another submit (claimed moments ago); try again once it exists")
    if overwrite:
        return Decision("overwrite", previous)
    out = ours.output
    if record is None:
        raise SubmitError(f"--output: {out} is not empty (e.g. {first_object}) and holds no "
                          "run record; use a new prefix, or --overwrite to replace it")
    if record.manifest_hash.startswith(MARKER_RUN) and not ours.manifest_hash.startswith(
            MARKER_RUN):
        raise SubmitError(
            f"--output: {out} belongs to the run its batch marker started (job {previous}, "
            f"{record.manifest_hash}); that run owns it: follow it with `bin/submit results`, "
            "re-run it with `bin/submit rerun`, or use a new prefix (--overwrite replaces it)")
    if not record.same_run(ours):
        diffs = [f"{k} {getattr(record, k)!r}" for k in ("job", "client", "env", "input")
                 if getattr(record, k) != getattr(ours, k)]
        why = (f"it holds the run of job {previous} ({diffs[0]})" if diffs
               else f"the inputs changed since job {previous} (another manifest)")
        raise SubmitError(f"--output: {out} belongs to another run: {why}; use a new prefix, "
                          "or --overwrite to replace it")
    if last_state == "SUCCEEDED":
        return Decision("done", previous)
    return Decision("resume", previous)
