"""ListJobs and ListTasks queries of the local Batch server: the AIP-160 filter subset, order
and paging (https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs/list,
.../jobs.taskGroups.tasks/list)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from google.cloud.batch_v1 import Job, TaskStatus

from local.grpc_plumbing import RpcError

DEFAULT_PAGE_SIZE = 100


def _invalid(message: str) -> NoReturn:
    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


_TERM_RE = re.compile(r'^\s*([A-Za-z_][\w.-]*)\s*(!=|<=|>=|=|:|<|>)\s*(?:"([^"]*)"|(\S+))\s*$')


def _job_field(job: Job, field: str) -> str | None:
    if field == "name":
        return str(job.name)
    if field == "uid":
        return str(job.uid)
    if field in ("status.state", "state"):
        return str(job.status.state.name)
    if field.startswith("labels."):
        value = job.labels.get(field[len("labels.") :])
        return None if value is None else str(value)
    if field in ("create_time", "update_time"):
        return str(Job.to_dict(job).get(field, ""))
    _invalid(
        f"filter: unsupported field {field!r}; use name, uid, status.state, labels.KEY, "
        "create_time or update_time"
    )


def compile_filter(text: str) -> Callable[[Job], bool]:
    """AIP-160 subset: `field op value` terms joined by AND, e.g.
    `labels.job="uppercase" AND status.state="RUNNING"`."""
    if not text.strip():
        return lambda job: True
    terms = []
    for raw in re.split(r"\s+AND\s+", text.strip()):
        m = _TERM_RE.match(raw)
        if not m:
            _invalid(f"filter: cannot parse {raw!r}; expected field=\"value\" terms joined by AND")
        terms.append((m.group(1), m.group(2), m.group(3) if m.group(3) is not None else m.group(4)))

    def match(job: Job) -> bool:
        for field, op, value in terms:
            actual = _job_field(job, field)
            if op == ":":
                ok = actual is not None and (value == "*" or value in actual)
            elif actual is None:
                ok = op == "!="
            else:
                ok = {
                    "=": actual == value, "!=": actual != value, "<": actual < value,
                    ">": actual > value, "<=": actual <= value, ">=": actual >= value,
                }[op]  # fmt: skip
            if not ok:
                return False
        return True

    return match


def order_key(order_by: str) -> Callable[[Job], Any]:
    field = order_by.strip().split(" ")[0] if order_by.strip() else "create_time"
    if field not in ("name", "create_time", "update_time"):
        _invalid(f"order_by: unsupported field {field!r}; use name, create_time or update_time")
    if field == "name":
        return lambda job: str(job.name)
    return lambda job: getattr(job, field).timestamp() if getattr(job, field) else 0.0


def task_state_filter(text: str) -> str | None:
    """ListTasks filter, as Batch documents it: `State=RUNNING` (or `status.state="RUNNING"`)."""
    if not text.strip():
        return None
    m = re.match(r'^\s*(?:State|state|status\.state)\s*=\s*"?([A-Z_]+)"?\s*$', text)
    if not m or m.group(1) not in TaskStatus.State.__members__:
        _invalid(f"filter: expected State=<task state>, e.g. State=RUNNING; got {text!r}")
    return m.group(1)


def page_of(items: list[Any], page_size: int, token: str) -> tuple[list[Any], str]:
    try:
        start = int(token) if token else 0
    except ValueError:
        _invalid(f"page_token {token!r} is invalid")
    size = page_size if page_size > 0 else DEFAULT_PAGE_SIZE
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")
