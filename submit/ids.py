"""Job ids, labels and the idempotency key of a submit (pure)."""

from __future__ import annotations

import re
import uuid

from gpub_runner import contract

from submit.errors import SubmitError

JOB_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
JOB_ID_MAX = contract.JOB_ID_MAX
_SUFFIX_LEN = contract.SUBMIT_JOB_ID_SUFFIX_LEN
_LABEL_VALUE_MAX = 63
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")
# Fixed namespace: the same run always maps to the same job id and request id, on every machine.
REQUEST_NAMESPACE = uuid.UUID("6f1c2a52-5b0e-4a57-9d0a-2f4f0e6c9b11")


def run_base(job: str, client: str, output_uri: str, manifest_hash: str) -> str:
    """`<job>-<10 hex>`: deterministic for (job, client, output location, manifest hash).

    Batch dedupes `request_id` only for a limited time, so a long-lived idempotency key must be
    the job id itself: the same run always gets the same ids, and attempt n of it is
    `<base>-<n>` (a resume after FAILED or CANCELLED is the next n, never the finished job)."""
    digest = uuid.uuid5(REQUEST_NAMESPACE, f"job|{job}|{client}|{output_uri}|{manifest_hash}")
    return f"{job}-{digest.hex[:10]}"


def run_job_id(base: str, attempt: int) -> str:
    """Attempt `attempt` (1, 2, ...) of the run `base`, checked against Batch's id rule."""
    job_id = f"{base}-{attempt}"
    job = base.rsplit("-", 1)[0]
    if len(job_id) > JOB_ID_MAX:
        raise SubmitError(
            f"JOB: name {job!r} is too long for a Batch job id: {job_id!r} has {len(job_id)} "
            f"chars, the limit is {JOB_ID_MAX} (job names may have {JOB_ID_MAX - _SUFFIX_LEN})"
        )
    if not JOB_ID_RE.match(job_id):
        raise SubmitError(
            f"JOB: {job_id!r} is not a valid Batch job id (lowercase letters, digits and '-', "
            "starting with a letter)"
        )
    return job_id


def attempt_of(job_id: str, base: str) -> int | None:
    """The attempt number of `job_id` when it is an attempt of `base`, else None."""
    head, _, tail = job_id.rpartition("-")
    return int(tail) if head == base and tail.isdigit() else None


def sanitize_label(value: str, *, fallback: str = "unknown") -> str:
    """Map any string onto the label value rules: lowercase [a-z0-9_-], at most 63 chars."""
    cleaned = _LABEL_BAD.sub("-", value.lower()).strip("-")[:_LABEL_VALUE_MAX].rstrip("-")
    return cleaned or fallback


def run_key(env: str, output_uri: str) -> str:
    """Short stable key of an output location: at most one active run may own it (a label, so
    the ownership check can match jobs however they were created)."""
    return uuid.uuid5(REQUEST_NAMESPACE, f"out|{env}|{output_uri}").hex[:20]


def request_id(job_id: str) -> str:
    """Idempotency key for CreateJob: one attempt's request, retried, is the same request;
    another attempt (a resume) is a different one."""
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"create|{job_id}"))


def build_labels(
    *, job: str, env: str, client: str, submitter: str, manifest_hash: str, key: str
) -> dict[str, str]:
    return {
        "job": sanitize_label(job),
        "env": sanitize_label(env),
        "client": sanitize_label(client),
        "submitter": sanitize_label(submitter),
        "manifest-hash": sanitize_label(manifest_hash),
        "run-key": key,
    }


def _marker_digest(job: str, client: str, batch: str, generation: str) -> str:
    """What the dispatcher workflow computes (stacks/workflow_intake.py `id_steps`): the
    key's SHA-512, base64, lowercased, letters and digits only."""
    import base64
    import hashlib

    key = f"{client}|{job}|{batch}|{generation}".encode()
    text = base64.b64encode(hashlib.sha512(key).digest()).decode().lower()
    return re.sub(r"[^a-z0-9]", "", text)


def trigger_job_id(job: str, client: str, batch: str, generation: str) -> str:
    """The Batch job id of the run a batch marker (at `generation`) starts: the same for every
    delivery of that marker, another for a new marker generation."""
    return f"{job}-{_marker_digest(job, client, batch, generation)[:20]}"


def trigger_request_id(job: str, client: str, batch: str, generation: str) -> str:
    """The CreateJob request id of that run: a UUID made of the digest's hex digits."""
    h = re.sub(r"[^0-9a-f]", "0", _marker_digest(job, client, batch, generation))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
