"""The task runtime: plan this task's share, skip finished inputs, download concurrently,
feed the handler in batches, commit outputs then a done marker per input.

Threads, not processes: the work between handler calls is network I/O. Downloads and uploads
run in two bounded pools so a slow handler never starves uploads and memory stays bounded by
a window of in-flight items.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from google.api_core import exceptions as gexc

from gpub_runner import contract
from gpub_runner.api import Failure, Handler, Item, Output
from gpub_runner.callback import CallbackError, send_callback
from gpub_runner.config import Config, ConfigError, GcsUri
from gpub_runner.contract import (
    EXIT_BUDGET,
    EXIT_CONFIG,
    EXIT_INFRA,
    EXIT_OK,
    RESERVED_OUTPUT_PREFIXES,
    task_share,
)
from gpub_runner.gcs import InfraError, Store, is_infra_error
from gpub_runner.logs import JsonLogger

__all__ = ["EXIT_BUDGET", "EXIT_CONFIG", "EXIT_INFRA", "EXIT_OK", "TaskRunner", "main"]
RESERVED = RESERVED_OUTPUT_PREFIXES


@dataclass(frozen=True)
class Work:
    rel: str  # name relative to the input prefix; keys markers and error records
    uri: GcsUri
    generation: str | None = None


@dataclass
class Counts:
    total: int = 0  # files in this task's share
    skipped: int = 0  # done by an earlier attempt
    ok: int = 0
    failed: int = 0
    outputs_created: int = 0
    outputs_existing: int = 0  # already there: written by an earlier or racing attempt
    # Manifest entries with an unsafe name: quarantined, outside the failure budget (the
    # planner refuses such names, so they are a manifest writer's bug, never a task failure).
    bad_names: int = 0


class HandlerTimeout(Exception):
    pass


@dataclass
class _Abort:
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc


def load_handler(spec: str) -> tuple[Handler, Callable[[], None] | None]:
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"GPUB_HANDLER {spec!r}: cannot import {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"GPUB_HANDLER {spec!r}: {module_name} has no function {func_name!r}")
    setup = getattr(module, "setup", None)
    return cast(Handler, func), (setup if callable(setup) else None)


@dataclass(frozen=True)
class BadName:
    """A manifest entry whose name breaks the input-name rules: quarantined, never fatal."""

    raw: object
    problem: str
    where: str

    @property
    def key(self) -> str:
        """A safe error-record name for it (the bad name itself must not become a path)."""
        digest = hashlib.sha256(repr(self.raw).encode()).hexdigest()[:16]
        return f"_bad-names/{digest}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TaskRunner:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        handler: Handler,
        setup: Callable[[], None] | None,
        log: JsonLogger,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.handler = handler
        self.setup = setup
        self.log = log
        self.counts = Counts()
        self._lock = threading.Lock()
        self._abort = _Abort()
        self._set_up = False
        self.bad_names: list[BadName] = []

    # ---- object names --------------------------------------------------------------------
    def _out(self, name: str) -> GcsUri:
        return GcsUri(self.cfg.output_prefix.bucket, self.cfg.output_prefix.name + name)

    def marker_uri(self, rel: str, input_uri: str, generation: str | None) -> GcsUri:
        return self._out(contract.done_marker_name(rel, input_uri, generation))

    def error_uri(self, rel: str) -> GcsUri:
        return self._out(f"_errors/{rel}.json")

    def summary_uri(self, index: int) -> GcsUri:
        return self._out(f"_tasks/{index:05d}.json")

    def _marker(self, work: Work) -> GcsUri:
        return self.marker_uri(work.rel, str(work.uri), work.generation)

    # ---- planning ------------------------------------------------------------------------
    def plan(self) -> list[Work]:
        cfg = self.cfg
        if cfg.manifest is None:
            share = task_share(len(cfg.input_objects), cfg.task_index, cfg.task_count,
                               cfg.files_per_task)
            mine = (self._work_for_object(u) for u in cfg.input_objects[share.start:share.stop])
            return [w for w in mine if w is not None]
        try:
            text = self.store.read(cfg.manifest).decode("utf-8")
        except gexc.NotFound:
            raise ConfigError(f"manifest {cfg.manifest} not found") from None
        lines = [ln for ln in text.splitlines() if ln.strip()]
        share = task_share(len(lines), cfg.task_index, cfg.task_count, cfg.files_per_task)
        assert cfg.input_prefix is not None  # checked by Config
        works = []
        for i in share:  # decode only our share: manifests can be large
            where = f"manifest line {i + 1}"
            try:
                entry = json.loads(lines[i])
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not JSON: {exc}") from None
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: expected an object")
            raw = entry.get("name")
            problem = contract.input_name_problem(raw)
            if problem is not None:
                self.bad_names.append(BadName(raw, problem, where))
                continue
            rel = str(raw)
            gen = entry.get("generation")
            works.append(Work(
                rel=rel,
                uri=GcsUri(cfg.input_prefix.bucket, cfg.input_prefix.name + rel),
                generation=str(gen) if gen not in (None, "") else None,
            ))
        return works

    def _work_for_object(self, uri: GcsUri) -> Work | None:
        prefix = self.cfg.input_prefix
        if prefix and uri.bucket == prefix.bucket and uri.name.startswith(prefix.name):
            rel = uri.name[len(prefix.name) :]
        else:
            rel = uri.name  # outside the prefix: key by the full object name
        problem = contract.input_name_problem(rel)
        if problem is not None:
            self.bad_names.append(BadName(rel, problem, f"GPUB_INPUT_OBJECTS {uri}"))
            return None
        return Work(rel=rel, uri=uri)

    def pending(self, works: list[Work]) -> list[Work]:
        """Drop inputs whose done marker exists. One listing of the markers under the common
        prefix of this share is far cheaper than a HEAD per file; when that listing would be
        huge (other tasks' markers), check this share's markers one by one instead."""
        if not works:
            return []
        # A string prefix, not a path: GCS listing filters by raw name prefix.
        common = os.path.commonprefix([w.rel for w in works])  # noqa: RUF071
        limit = max(2000, 4 * len(works))
        names = self.store.list_names(self._out(f"_done/{common}"), limit=limit)
        if names is not None:
            return [w for w in works if self._marker(w).name not in names]
        with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="check") as pool:
            done = list(pool.map(lambda w: self.store.exists(self._marker(w)), works))
        return [w for w, d in zip(works, done, strict=True) if not d]

    # ---- per-file steps (worker threads) -------------------------------------------------
    def _download(self, work: Work) -> Item | None:
        if self._abort.error is not None:
            return None
        try:
            data = self.store.read(work.uri, generation=work.generation,
                                   deadline_s=self.cfg.file_timeout_s)
        except Exception as exc:
            if is_infra_error(exc):
                self._abort.set(exc)
            else:
                self._quarantine(work.rel, str(work.uri), f"download failed: {_describe(exc)}")
            return None
        return Item(name=work.rel, data=data, uri=str(work.uri), generation=work.generation)

    def _commit(self, item: Item, outputs: Sequence[Output]) -> None:
        """Outputs first, then the done marker: a marker always means complete outputs."""
        if self._abort.error is not None:
            return
        try:
            created = existing = 0
            for out in outputs:
                if self.store.create(self._out(out.name), out.data, out.content_type,
                                     deadline_s=self.cfg.file_timeout_s):
                    created += 1
                else:
                    existing += 1
            marker = {"input": item.uri, "generation": item.generation,
                      "outputs": [o.name for o in outputs], "task": self.cfg.task_index,
                      "attempt": self.cfg.attempt, "finished": _now()}
            self.store.create(self.marker_uri(item.name, item.uri, item.generation),
                              json.dumps(marker).encode(),
                              "application/json")
            if self.cfg.attempt > 0:
                # An earlier attempt may have quarantined this file; it is fine now.
                self.store.delete_if_exists(self.error_uri(item.name))
        except Exception as exc:
            if is_infra_error(exc):
                self._abort.set(exc)
            else:
                self._quarantine(item.name, item.uri, f"upload failed: {_describe(exc)}")
            return
        with self._lock:
            self.counts.ok += 1
            self.counts.outputs_created += created
            self.counts.outputs_existing += existing

    def _quarantine(self, rel: str, uri: str, error: str, *, counts: bool = True) -> None:
        with self._lock:
            if counts:
                self.counts.failed += 1
        self.log.warning("file failed; quarantined", file=rel, error=error[:2000])
        record = {"input": uri, "error": error, "job": self.cfg.job_name,
                  "task": self.cfg.task_index, "attempt": self.cfg.attempt, "time": _now()}
        try:
            self.store.put(self.error_uri(rel), json.dumps(record).encode(), "application/json")
        except Exception as exc:
            self._abort.set(exc if is_infra_error(exc) else InfraError(_describe(exc)))

    # ---- handler -------------------------------------------------------------------------
    def _call_handler(self, batch: list[Item]) -> Sequence[object]:
        # A daemon thread so a stuck handler can be abandoned at its timeout (Python cannot
        # kill a thread) without blocking interpreter exit.
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = self.handler(batch)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, name="handler", daemon=True)
        thread.start()
        timeout = self.cfg.file_timeout_s * len(batch)
        thread.join(timeout)
        if thread.is_alive():
            raise HandlerTimeout(f"handler took longer than {timeout:g}s on {len(batch)} file(s)")
        if "error" in box:
            raise box["error"]
        result = box.get("result")
        if not isinstance(result, Sequence):
            raise TypeError(f"handler returned {type(result).__name__}, expected a list")
        return result

    def _handle(self, batch: list[Item]) -> dict[str, list[Output] | str]:
        """Map each item to its outputs, or to an error string."""
        try:
            results = self._call_handler(batch)
            return _group(batch, results)
        except Exception as exc:
            if len(batch) == 1:
                return {batch[0].name: f"handler failed: {_describe(exc)}"}
            # Find the bad item(s): retry one by one so good items still get through.
            self.log.warning("batch failed; retrying its files one by one",
                             files=len(batch), error=_describe(exc)[:2000])
            out: dict[str, list[Output] | str] = {}
            for item in batch:
                out.update(self._handle([item]))
            return out

    # ---- main loop -----------------------------------------------------------------------
    def _process(self, todo: Iterable[Work]) -> None:
        cfg = self.cfg
        window = max(2 * cfg.batch_size, 2 * cfg.concurrency)  # bounds items held in memory
        dl = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="download")
        ul = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="upload")
        inflight: set[Future[Item | None]] = set()
        uploads: set[Future[None]] = set()
        ready: list[Item] = []
        works = iter(todo)
        exhausted = False
        last_progress = time.monotonic()
        try:
            while self._abort.error is None:
                while not exhausted and len(inflight) + len(ready) < window:
                    work = next(works, None)
                    if work is None:
                        exhausted = True
                    else:
                        inflight.add(dl.submit(self._download, work))
                if ready and (len(ready) >= cfg.batch_size or (exhausted and not inflight)):
                    batch, ready = ready[: cfg.batch_size], ready[cfg.batch_size :]
                    self._run_batch(batch, ul, uploads)
                elif inflight:
                    done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    ready.extend(item for f in done if (item := f.result()) is not None)
                else:
                    break
                uploads = {u for u in uploads if not u.done()}
                while len(uploads) > window:  # backpressure: handler outpacing uploads
                    _, uploads = wait(uploads, return_when=FIRST_COMPLETED)
                if time.monotonic() - last_progress > 30:
                    last_progress = time.monotonic()
                    self.log.info("progress", **self._counts())
            wait(uploads)
        finally:
            aborting = self._abort.error is not None
            dl.shutdown(wait=True, cancel_futures=aborting)
            ul.shutdown(wait=True, cancel_futures=aborting)

    def _run_batch(self, batch: list[Item], ul: ThreadPoolExecutor,
                   uploads: set[Future[None]]) -> None:
        if not self._set_up:
            self._set_up = True
            if self.setup is not None:
                t0 = time.monotonic()
                try:
                    self.setup()
                except Exception as exc:
                    raise InfraError(f"handler setup failed: {_describe(exc)}") from exc
                self.log.info("handler set up", seconds=round(time.monotonic() - t0, 3))
        results = self._handle(batch)
        for item in batch:
            result = results[item.name]
            if isinstance(result, str):
                uploads.add(ul.submit(self._quarantine, item.name, item.uri, result))
            else:
                uploads.add(ul.submit(self._commit, item, result))

    def _counts(self) -> dict[str, int]:
        with self._lock:
            return asdict(self.counts)

    def run(self) -> int:
        cfg = self.cfg
        t0 = time.monotonic()
        works = self.plan()
        todo = self.pending(works)
        self.counts.total = len(works)
        self.counts.skipped = len(works) - len(todo)
        self.counts.bad_names = len(self.bad_names)
        for bad in self.bad_names:  # one odd name costs that file, never the task
            self._quarantine(bad.key, repr(bad.raw),
                             f"{bad.where}: bad object name {bad.raw!r}: {bad.problem}",
                             counts=False)
        self.log.info("task started", files=len(works), to_do=len(todo),
                      skipped=self.counts.skipped, batch_size=cfg.batch_size,
                      concurrency=cfg.concurrency, output_prefix=str(cfg.output_prefix))
        self._process(todo)
        if self._abort.error is not None:
            raise InfraError(_describe(self._abort.error))
        counts = self._counts()
        allowed = cfg.failure_budget * counts["total"]
        over_budget = counts["failed"] > allowed
        code = EXIT_BUDGET if over_budget else EXIT_OK
        elapsed = time.monotonic() - t0
        summary = {
            "job": cfg.job_name, "task": cfg.task_index, "attempt": cfg.attempt,
            "status": "failed" if over_budget else "succeeded", "exit_code": code,
            "failure_budget": cfg.failure_budget, "seconds": round(elapsed, 3), **counts,
            "finished": _now(),
        }
        self.store.put(self.summary_uri(cfg.task_index), json.dumps(summary).encode(),
                       "application/json")
        processed = counts["ok"] + counts["failed"]
        self.log.log(
            "ERROR" if over_budget else "INFO",
            "task failed: failure budget exceeded" if over_budget else "task finished",
            status=summary["status"], exit_code=code, seconds=round(elapsed, 3),
            files_per_s=round(processed / elapsed, 2) if elapsed > 0 else None,
            failures_allowed=allowed, **counts,
        )
        if cfg.callback_url:
            self.maybe_callback()
        return code

    # ---- results callback ----------------------------------------------------------------
    def maybe_callback(self) -> None:
        """Send the callback when this task is the last of the group to finish.

        Every task writes `_tasks/<index>.json` when it ends (success or budget failure). The
        task that then sees all `BATCH_TASK_COUNT` summaries claims `_callback.json` with a
        create-once write, so of two tasks finishing together exactly one sends. A retry of
        the claiming task resends if the claim says the send did not complete."""
        cfg = self.cfg
        names = self.store.list_names(self._out("_tasks/"), limit=cfg.task_count + 100) or set()
        if len(names) < cfg.task_count:
            self.log.info("callback deferred to the last task", tasks_finished=len(names))
            return
        claim_uri = self._out("_callback.json")
        claim = {"task": cfg.task_index, "attempt": cfg.attempt, "status": "sending"}
        if not self.store.create(claim_uri, json.dumps(claim).encode(), "application/json"):
            previous = json.loads(self.store.read(claim_uri))
            if previous.get("task") != cfg.task_index or previous.get("status") == "sent":
                self.log.info("callback already claimed", by_task=previous.get("task"))
                return
        with ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="summary") as pool:
            summaries = list(pool.map(lambda i: json.loads(self.store.read(self.summary_uri(i))),
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
            send_callback(cfg.callback_url or "", cfg.job_key, payload, self.log,
                          attempts=int(os.environ.get("GPUB_CALLBACK_ATTEMPTS", "5")),
                          backoff_s=float(os.environ.get("GPUB_CALLBACK_BACKOFF_S", "1")))
        except CallbackError as exc:
            # Outputs are written; a lost callback should not fail (and re-run) the task.
            self.log.error("callback failed", error=str(exc))
            return
        claim["status"] = "sent"
        self.store.put(claim_uri, json.dumps(claim).encode(), "application/json")


def _group(batch: list[Item], results: Sequence[object]) -> dict[str, list[Output] | str]:
    """Check the handler's results and assign them to items; a contract violation raises
    (and so is retried per item like any handler error)."""
    names = {item.name for item in batch}
    grouped: dict[str, list[Output] | str] = {item.name: [] for item in batch}
    for r in results:
        if not isinstance(r, Output | Failure):
            raise TypeError(f"handler returned {type(r).__name__}; expected Output or Failure")
        if r.item not in names:
            raise ValueError(f"handler returned a result for unknown item {r.item!r}")
        if isinstance(r, Failure):
            grouped[r.item] = r.error or "handler reported a failure"
            continue
        current = grouped[r.item]
        if isinstance(current, str):
            continue  # the item already failed; its other outputs are dropped
        if not r.name or r.name.startswith(("/", *RESERVED)) or ".." in r.name.split("/"):
            raise ValueError(f"handler returned a bad output name {r.name!r}")
        if not isinstance(r.data, bytes | bytearray | memoryview):
            raise TypeError(f"output {r.name!r}: data must be bytes")
        current.append(r)
    return grouped


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def main() -> int:
    log = JsonLogger()
    try:
        cfg = Config.from_env()
        log.bind(job=cfg.job_name, task=cfg.task_index, attempt=cfg.attempt,
                 task_count=cfg.task_count)
        log.add_secret(cfg.job_key)
        handler, setup = load_handler(cfg.handler)
    except ConfigError as exc:
        log.error("bad configuration", error=str(exc))
        return EXIT_CONFIG
    store: Store | None = None
    try:
        store = Store(pool_size=2 * cfg.concurrency + 4, timeout_s=cfg.storage_timeout_s)
        return TaskRunner(cfg, store, handler, setup, log).run()
    except ConfigError as exc:
        log.error("bad configuration", error=str(exc))
        return EXIT_CONFIG
    except Exception as exc:
        if isinstance(exc, InfraError) or is_infra_error(exc):
            log.error("infrastructure error", error=_describe(exc))
            return EXIT_INFRA
        log.log("CRITICAL", "unexpected error in the runner", error=_describe(exc),
                traceback=traceback.format_exc())
        return 1
    finally:
        if store is not None:
            store.close()
