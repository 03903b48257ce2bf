"""The task runtime: plan this task's share, skip finished inputs, download concurrently,
feed the handler in batches, write each output carrying its input's generation (the output is
the done marker: two requests per file).

Threads, not processes: the work between handler calls is network I/O. Downloads and uploads
run in two bounded pools so a slow handler never starves uploads and memory stays bounded by
a window of in-flight items.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from gpub_runner import contract, share
from gpub_runner.api import Handler, Item, Output
from gpub_runner.callback import send_if_last, summary_name
from gpub_runner.config import Config, ConfigError, GcsUri
from gpub_runner.contract import (
    EXIT_BUDGET,
    EXIT_CONFIG,
    EXIT_INFRA,
    EXIT_OK,
    EXIT_PLAN,
    task_share,
)
from gpub_runner.done import DoneIndex, made_from, output_metadata, output_stem
from gpub_runner.gcs import InfraError, ObjectStat, Store, is_infra_error
from gpub_runner.handling import describe, handle, load_handler
from gpub_runner.jobplan import JobPlanner, PlanFailed
from gpub_runner.logs import JsonLogger
from gpub_runner.share import BadName, Work

__all__ = ["EXIT_BUDGET", "EXIT_CONFIG", "EXIT_INFRA", "EXIT_OK", "EXIT_PLAN", "TaskRunner",
           "load_handler", "main", "task_share"]


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


@dataclass
class _Abort:
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, exc: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = exc


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
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.handler = handler
        self.setup = setup
        self.log = log
        self.sleep = sleep
        self.clock = clock
        self.counts = Counts()
        self._lock = threading.Lock()
        self._abort = _Abort()
        self._set_up = False
        self.bad_names: list[BadName] = []
        self.already_done = 0  # plan-in-job: done inputs the plan left out (task 0 counts them)
        self.index = DoneIndex(cfg.output_prefix.name)

    # ---- object names --------------------------------------------------------------------
    def _out(self, name: str) -> GcsUri:
        return GcsUri(self.cfg.output_prefix.bucket, self.cfg.output_prefix.name + name)

    def marker_uri(self, rel: str, input_uri: str, generation: str | None) -> GcsUri:
        return self._out(contract.done_marker_name(rel, input_uri, generation))

    def error_uri(self, rel: str) -> GcsUri:
        return self._out(f"{contract.ERRORS_DIR}{rel}.json")

    def summary_uri(self, index: int) -> GcsUri:
        return self._out(summary_name(index))

    # ---- planning ------------------------------------------------------------------------
    def plan(self) -> list[Work]:
        if self.cfg.plans_itself:
            planner = JobPlanner(self.cfg, self.store, self.log, clock=self.clock,
                                 sleep=self.sleep)
            objects = planner.my_share()
            self.already_done = planner.already_done
            return share.from_objects(self.cfg, objects).works
        mine = share.read_share(self.cfg, self.store)
        self.bad_names = mine.bad_names
        return mine.works

    def pending(self, works: list[Work]) -> list[Work]:
        """Drop inputs whose outputs (or zero-output marker) exist at their generation.

        One listing (with metadata) of the outputs under the share's common name prefix; a
        page of 1,000 costs one request, so it is cheaper than a request per input up to
        1,000 objects per input of the share (other tasks' outputs interleaved); beyond, list
        each input's own stem instead. Only this share's outputs are kept. A fresh plan made
        by this job already left out what was done, so its first attempt lists nothing."""
        if not works or (self.cfg.plans_itself and self.cfg.attempt == 0):
            return works
        # A string prefix, not a path: GCS listing filters by raw name prefix.
        stems = os.path.commonprefix([output_stem(w.rel) for w in works])  # noqa: RUF071
        rels = os.path.commonprefix([w.rel for w in works])  # noqa: RUF071
        budget = max(2000, 1000 * len(works))
        uris = {str(w.uri) for w in works}
        found = self._scan(self._out(stems), uris, budget)
        markers = self._scan(self._out(contract.DONE_DIR + rels), None, budget)
        if found is not None and markers is not None:
            self.index.add_all([*found, *markers])
        else:
            def mine(w: Work) -> list[ObjectStat]:
                return self.store.list_objects(self._out(output_stem(w.rel)), limit=100,
                                               metadata=True) or []

            with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="check") as pool:
                for stats in pool.map(mine, works):
                    self.index.add_all(stats)
        return [w for w in works if not self.index.is_done(w.rel, str(w.uri), w.generation)]

    def _scan(self, prefix: GcsUri, inputs: set[str] | None,
              budget: int) -> list[ObjectStat] | None:
        """Objects under `prefix` made from one of `inputs` (all when None); None when more
        than `budget` objects are listed."""
        kept: list[ObjectStat] = []
        for seen, stat in enumerate(self.store.iter_objects(prefix, metadata=inputs is not None)):
            if seen >= budget:
                return None
            if inputs is None or stat.metadata.get(contract.META_INPUT) in inputs:
                kept.append(stat)
        return kept

    # ---- per-file steps (worker threads) -------------------------------------------------
    def _download(self, work: Work) -> Item | None:
        if self._abort.error is not None:
            return None
        try:
            data, generation = self.store.fetch(work.uri, generation=work.generation,
                                                deadline_s=self.cfg.file_timeout_s)
        except Exception as exc:
            if is_infra_error(exc):
                self._abort.set(exc)
            else:
                self._quarantine(work.rel, str(work.uri), f"download failed: {describe(exc)}")
            return None
        return Item(name=work.rel, data=data, uri=str(work.uri),
                    generation=work.generation or generation)

    def _write_output(self, item: Item, out: Output, meta: dict[str, str]) -> bool:
        """Write one output; False when an output of this input generation is already there.

        An output of the same input at another generation is stale and replaced, with a
        precondition on the generation seen so a racing writer is never overwritten blindly;
        an output of another input (names must be unique in a job) is left alone."""
        uri = self._out(out.name)
        known = self.index.existing(out.name)
        for _ in range(3):
            if known is not None:
                if made_from(known, item.uri, item.generation):
                    return False
                if known.metadata.get(contract.META_INPUT) != item.uri:
                    self.log.warning("output exists and was not made from this input; kept",
                                     output=out.name, file=item.name)
                    return False
            gen = int(known.generation) if known is not None else 0
            if self.store.create(uri, out.data, out.content_type, metadata=meta,
                                 if_generation_match=gen, deadline_s=self.cfg.file_timeout_s):
                return True
            known = self.store.stat(uri)  # 412: it exists or changed meanwhile
        raise RuntimeError(f"output {out.name!r} kept changing while it was written")

    def _commit(self, item: Item, outputs: Sequence[Output]) -> None:
        if self._abort.error is not None:
            return
        try:
            meta = output_metadata(item.uri, item.generation, len(outputs))
            created = sum(self._write_output(item, out, meta) for out in outputs)
            if not outputs:  # nothing else could say this input is done
                marker: dict[str, object] = {
                    "input": item.uri, "generation": item.generation, "outputs": [],
                    "task": self.cfg.task_index, "finished": _now()}
                self.store.create(self.marker_uri(item.name, item.uri, item.generation),
                                  json.dumps(marker).encode(), "application/json")
            if self.cfg.attempt > 0:
                # An earlier attempt may have quarantined this file; it is fine now.
                self.store.delete_if_exists(self.error_uri(item.name))
        except Exception as exc:
            if is_infra_error(exc):
                self._abort.set(exc)
            else:
                self._quarantine(item.name, item.uri, f"upload failed: {describe(exc)}")
            return
        with self._lock:
            self.counts.ok += 1
            self.counts.outputs_created += created
            self.counts.outputs_existing += len(outputs) - created

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
            self._abort.set(exc if is_infra_error(exc) else InfraError(describe(exc)))

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
                    raise InfraError(f"handler setup failed: {describe(exc)}") from exc
                self.log.info("handler set up", seconds=round(time.monotonic() - t0, 3))
        results = handle(self.handler, batch, self.cfg.file_timeout_s, self.log)
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
        self.counts.total = len(works) + self.already_done
        self.counts.skipped = len(works) - len(todo) + self.already_done
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
            raise InfraError(describe(self._abort.error))
        return self._finish(time.monotonic() - t0)

    def _finish(self, elapsed: float) -> int:
        cfg = self.cfg
        counts = self._counts()
        allowed = cfg.failure_budget * counts["total"]
        over_budget = counts["failed"] > allowed
        code = EXIT_BUDGET if over_budget else EXIT_OK
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
            failures_allowed=allowed, requests=dict(getattr(self.store, "requests", {})),
            **counts,
        )
        if cfg.callback_url:
            send_if_last(cfg, self.store, self.log)
        return code


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
    except PlanFailed as exc:
        log.error("the job's plan failed", error=str(exc))
        return EXIT_PLAN
    except Exception as exc:
        if isinstance(exc, InfraError) or is_infra_error(exc):
            log.error("infrastructure error", error=describe(exc))
            return EXIT_INFRA
        log.log("CRITICAL", "unexpected error in the runner", error=describe(exc),
                traceback=traceback.format_exc())
        return 1
    finally:
        if store is not None:
            store.close()
