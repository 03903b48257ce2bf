"""Results callback: the last task to finish POSTs a JSON summary with the job's bearer key,
retrying with backoff."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from gpub_runner.config import Config, GcsUri
from gpub_runner.contract import TASKS_DIR
from gpub_runner.logs import JsonLogger

if TYPE_CHECKING:
    from gpub_runner.gcs import Store


class CallbackError(Exception):
    pass


class _Retryable(Exception):
    """A 5xx/429 answer: worth another try."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | requests.ConnectionError | requests.Timeout)


def redact_url(url: str) -> str:
    # Query strings can carry tokens: log scheme://host/path only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}" \
        f"{parts.path}"


def send_callback(
    url: str,
    key: str | None,
    payload: dict[str, Any],
    log: JsonLogger,
    *,
    attempts: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
) -> None:
    """Raise CallbackError when every attempt failed or the server refused the request."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    safe_url = redact_url(url)
    # Defence in depth on top of the logger's URL scrubbing: the query string and credentials
    # of this URL never appear in any field, whatever text they end up in.
    parts = urlsplit(url)
    for secret in (parts.query, parts.password, parts.fragment):
        log.add_secret(secret)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("callback attempt failed; retrying", url=safe_url,
                    attempt_no=state.attempt_number, error=str(exc))

    def post_once() -> None:
        resp = requests.post(url, json=payload, headers=headers, timeout=timeout_s)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise CallbackError(f"callback refused: HTTP {resp.status_code}")

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_s, max=60 * backoff_s),
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        retrying(post_once)
    except CallbackError:
        raise
    except Exception as exc:
        # Never chain the requests exception: its repr can include the prepared request.
        raise CallbackError(f"callback failed after {attempts} attempts: {exc}") from None
    log.info("callback sent", url=safe_url)


def send_if_last(cfg: Config, store: Store, log: JsonLogger) -> None:
    """Send the callback when this task is the last of the group to finish.

    Every task writes `_tasks/<index>.json` when it ends (success or budget failure). The
    task that then sees all `BATCH_TASK_COUNT` summaries claims `_callback.json` with a
    create-once write, so of two tasks finishing together exactly one sends. A retry of
    the claiming task resends if the claim says the send did not complete."""
    out = cfg.output_prefix

    def uri(name: str) -> GcsUri:
        return GcsUri(out.bucket, out.name + name)

    names = store.list_names(uri(TASKS_DIR), limit=cfg.task_count + 100) or set()
    if len(names) < cfg.task_count:
        log.info("callback deferred to the last task", tasks_finished=len(names))
        return
    claim_uri = uri("_callback.json")
    claim = {"task": cfg.task_index, "attempt": cfg.attempt, "status": "sending"}
    if not store.create(claim_uri, json.dumps(claim).encode(), "application/json"):
        previous = json.loads(store.read(claim_uri))
        if previous.get("task") != cfg.task_index or previous.get("status") == "sent":
            log.info("callback already claimed", by_task=previous.get("task"))
            return
    with ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="summary") as pool:
        summaries = list(pool.map(lambda i: json.loads(store.read(uri(summary_name(i)))),
                                  range(cfg.task_count)))
    totals = {k: sum(int(s.get(k, 0)) for s in summaries)
              for k in ("total", "skipped", "ok", "failed", "outputs_created")}
    failed_tasks = [s["task"] for s in summaries if s.get("status") != "succeeded"]
    payload = {
        "job": cfg.job_name, "status": "failed" if failed_tasks else "succeeded",
        "output_prefix": str(cfg.output_prefix), "task_count": cfg.task_count,
        "failed_tasks": failed_tasks, "files": totals,
    }
    try:
        send_callback(cfg.callback_url or "", cfg.job_key, payload, log,
                      attempts=int(os.environ.get("GPUB_CALLBACK_ATTEMPTS", "5")),
                      backoff_s=float(os.environ.get("GPUB_CALLBACK_BACKOFF_S", "1")))
    except CallbackError as exc:
        # Outputs are written; a lost callback should not fail (and re-run) the task.
        log.error("callback failed", error=str(exc))
        return
    claim["status"] = "sent"
    store.put(claim_uri, json.dumps(claim).encode(), "application/json")


def summary_name(index: int) -> str:
    """Task `index`'s summary, relative to the output prefix."""
    return f"{TASKS_DIR}{index:05d}.json"
