"""Job ids, labels and the idempotency key of a submit (pure)."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime

from submit.errors import SubmitError

JOB_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
JOB_ID_MAX = 63
# len("-yyyymmdd-hhmmss-abcd"): what the timestamp and random suffix add to the job name.
_SUFFIX_LEN = 21
_LABEL_VALUE_MAX = 63
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")
# Fixed namespace: the same (job, input, output, manifest) always maps to the same request id,
# on every machine, so a retried submit is recognised by Batch as the same request.
REQUEST_NAMESPACE = uuid.UUID("6f1c2a52-5b0e-4a57-9d0a-2f4f0e6c9b11")


def make_job_id(job: str, now: datetime | None = None, rand: str | None = None) -> str:
    """`<job>-<yyyymmdd-hhmmss>-<4 hex>`, checked against Batch's id rule and length."""
    now = now or datetime.now(UTC)
    rand = rand if rand is not None else secrets.token_hex(2)
    job_id = f"{job}-{now.strftime('%Y%m%d-%H%M%S')}-{rand}"
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


def sanitize_label(value: str, *, fallback: str = "unknown") -> str:
    """Map any string onto the label value rules: lowercase [a-z0-9_-], at most 63 chars."""
    cleaned = _LABEL_BAD.sub("-", value.lower()).strip("-")[:_LABEL_VALUE_MAX].rstrip("-")
    return cleaned or fallback


def run_key(job: str, env: str, input_uri: str, output_uri: str) -> str:
    """Short stable key of "this job on this input into this output" (a label, so the
    duplicate-run check can ask Batch for matching jobs instead of reading all of them)."""
    return uuid.uuid5(REQUEST_NAMESPACE, f"run|{env}|{job}|{input_uri}|{output_uri}").hex[:20]


def request_id(job: str, input_uri: str, output_uri: str, manifest_hash: str) -> str:
    """Idempotency key for CreateJob: the same submit, retried, is the same request."""
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"{job}|{input_uri}|{output_uri}|{manifest_hash}"))


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
