"""The labels billing sees: `allocationPolicy.labels` of every job the platform creates.

Batch applies `allocationPolicy.labels` to "the job and all the Compute Engine resources that
both are created by this allocation policy and support labels" (VMs, GPUs, persistent disks;
cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#AllocationPolicy), while
the job's own `labels` reach only the job and its log entries. So per-client cost in the
billing export (docs/costs.md) needs the client, job, environment and run HERE, on every path
that creates a job: the renderer (env + job), `bin/submit` and as-written runs (client + run,
through `fill_runtime`/`apply`), the job workflows (client + run, set at run time).

Limits (cloud.google.com/batch/docs/organize-resources-using-labels, "Restrictions"): at most
61 custom labels on each VM, GPU and disk of a job; names starting with "goog-" or "google-"
are reserved for Batch's predefined labels. Label values follow Compute Engine's rules
(cloud.google.com/compute/docs/labeling-resources): at most 63 characters of lowercase
letters, digits, '_' and '-'. Pure: the submit path imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jobs.errors import JobSpecError
from jobs.parts import LABEL_KEY_RE, LABEL_VALUE_RE

CLIENT, JOB, ENV, RUN = "client", "job", "env", "run"
# The keys the billing view groups by (stacks/billing_view.py) and the budgets filter on.
BILLING_KEYS = (CLIENT, JOB, ENV, RUN)
MAX_CUSTOM_VM_LABELS = 61
VALUE_MAX = 63
RESERVED_PREFIXES = ("goog-", "google-")
PATH = "allocationPolicy.labels"
_BAD = re.compile(r"[^a-z0-9_-]+")


def label_value(text: str, *, fallback: str = "none") -> str:
    """`text` as a valid label value: lowercased, every run of other characters -> '-',
    trimmed of '-' and cut to 63 characters (`Run_ID.2026/01` -> `run_id-2026-01`)."""
    cleaned = _BAD.sub("-", text.lower()).strip("-")[:VALUE_MAX].rstrip("-")
    return cleaned or fallback


def billing_labels(**values: str) -> dict[str, str]:
    """The billing labels among client/job/env/run that are given, as valid label values."""
    unknown = sorted(set(values) - set(BILLING_KEYS))
    if unknown:
        raise ValueError(f"billing labels: unknown key(s) {unknown}; allowed: {BILLING_KEYS}")
    return {k: label_value(values[k]) for k in BILLING_KEYS if k in values}


def check_vm_labels(labels: Mapping[str, str]) -> None:
    """Refuse (JobSpecError naming allocationPolicy.labels) what Batch would refuse."""
    if len(labels) > MAX_CUSTOM_VM_LABELS:
        raise JobSpecError(
            f"{len(labels)} custom labels; Batch allows at most {MAX_CUSTOM_VM_LABELS} on a "
            f"job's VMs, GPUs and disks (the platform sets {', '.join(BILLING_KEYS)})", PATH)
    for key, value in labels.items():
        if key.startswith(RESERVED_PREFIXES):
            raise JobSpecError(f"label {key!r}: names starting with 'goog-' or 'google-' are "
                               "reserved for Batch's predefined labels", PATH)
        if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(str(value)):
            raise JobSpecError(f"label {key}={value!r} is not a valid label (lowercase "
                               "letters, digits, '_' and '-', at most 63 characters; a key "
                               "starts with a letter)", PATH)


def apply(job: dict[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """Merge `labels` into `job`'s allocationPolicy.labels in place (ours win) and check the
    result against Batch's limits; returns `job`."""
    alloc = job.setdefault("allocationPolicy", {})
    merged = {**alloc.get("labels", {}), **labels}
    check_vm_labels(merged)
    alloc["labels"] = merged
    return job
