"""Unit tests of the task runtime against an in-memory store (no server)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence

import pytest
import requests
from gpub_runner import Failure, Item, Output, Result, contract
from gpub_runner.config import ConfigError, GcsUri, task_share
from gpub_runner.gcs import InfraError
from gpub_runner.handling import group as _group
from gpub_runner.logs import JsonLogger
from gpub_runner.runner import EXIT_BUDGET, EXIT_OK, load_handler

from tests._helpers.runner_store import MemStore, done, echo, make_cfg, run, seed

# ---- configuration -----------------------------------------------------------------------

def test_config_defaults_and_prefix_normalisation() -> None:
    cfg = make_cfg(GPUB_OUTPUT_PREFIX="gs://bkt/out", BATCH_TASK_INDEX="1", BATCH_TASK_COUNT="3")
    assert cfg.output_prefix == GcsUri("bkt", "out/")
    assert (cfg.task_index, cfg.task_count, cfg.attempt) == (1, 3, 0)
    assert cfg.files_per_task is None and cfg.failure_budget == 0.0


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GPUB_HANDLER": "nocolon"}, "GPUB_HANDLER"),
        ({"GPUB_OUTPUT_PREFIX": "/local/path"}, "gs://"),
        ({"GPUB_FAILURE_BUDGET": "1.5"}, "GPUB_FAILURE_BUDGET"),
        ({"GPUB_BATCH_SIZE": "0"}, "GPUB_BATCH_SIZE"),
        ({"GPUB_CONCURRENCY": "two"}, "GPUB_CONCURRENCY"),
        ({"BATCH_TASK_INDEX": "3", "BATCH_TASK_COUNT": "3"}, "BATCH_TASK_INDEX"),
        ({"GPUB_INPUT_OBJECTS": "gs://bkt/a"}, "at most one"),
        ({"GPUB_INPUT_PREFIX": ""}, "GPUB_INPUT_PREFIX"),
    ],
)
def test_config_errors_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make_cfg(**env)


def test_task_share_even_split_and_files_per_task() -> None:
    shares = [task_share(10, k, 3, None) for k in range(3)]
    assert [list(s) for s in shares] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert list(task_share(10, 2, 3, 4)) == [8, 9]
    assert list(task_share(10, 3, 5, 4)) == []  # more tasks than needed: nothing to do


def test_load_handler_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cannot import"):
        load_handler("no_such_module_xyz:process")
    with pytest.raises(ConfigError, match="no function"):
        load_handler("json:no_such_function")
    func, setup = load_handler("uppercase_handler:process")
    assert callable(func) and setup is None


# ---- result grouping ---------------------------------------------------------------------

def test_group_assigns_outputs_and_failures() -> None:
    a, b = Item("a.jsonl", b"1", "gs://x/a.jsonl"), Item("b.jsonl", b"2", "gs://x/b.jsonl")
    grouped = _group([a, b], [a.output(b"x", suffix=".1"), a.output(b"y", suffix=".2"),
                              Failure("b.jsonl", "nope")])
    assert [o.name for o in grouped["a.jsonl"]] == ["a.1", "a.2"]  # type: ignore[union-attr]
    assert grouped["b.jsonl"] == "nope"


@pytest.mark.parametrize("bad", [
    Output("zzz", "x", b""),  # unknown item
    Output("a", "_done/a.done", b""),  # reserved name
    Output("a", "../escape", b""),
    "not a result",
])
def test_group_rejects_contract_violations(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        _group([Item("a", b"", "gs://x/a")], [bad])


# ---- task runs -----------------------------------------------------------------------------

def test_run_writes_outputs_markers_and_summary() -> None:
    store = MemStore()
    seed(store, 10)
    code, logs = run(store, make_cfg())
    assert code == EXIT_OK
    assert len(store.names("bkt/out/d/")) == 10
    assert store.objects["bkt/out/d/f003.out"] == b'{"I": 3}\n'
    # The output is the done marker: no separate object, two requests per file.
    assert store.names("bkt/out/_done/") == []
    assert all(done(store, i) for i in range(10))
    assert store.meta["bkt/out/d/f003.out"][contract.META_OUTPUTS] == "1"
    summary = json.loads(store.objects["bkt/out/_tasks/00000.json"])
    assert summary["ok"] == 10 and summary["status"] == "succeeded"
    final = logs[-1]
    assert final["message"] == "task finished" and final["ok"] == 10
    assert all({"severity", "message", "job", "time"} <= set(rec) for rec in logs)


def test_retry_skips_done_inputs() -> None:
    store = MemStore()
    seed(store, 8)
    assert run(store, make_cfg())[0] == EXIT_OK
    calls: list[str] = []

    def counting(batch: list[Item]) -> Sequence[Result]:
        calls.extend(i.name for i in batch)
        return echo(batch)

    code, logs = run(store, make_cfg(BATCH_TASK_RETRY_ATTEMPT="1"), counting)
    assert code == EXIT_OK and calls == []
    assert logs[-1]["skipped"] == 8


def test_bad_item_in_batch_is_isolated_and_budget_decides_exit() -> None:
    store = MemStore()
    seed(store, 10, bad=[4])
    code, logs = run(store, make_cfg(GPUB_FAILURE_BUDGET="0.1"))  # 1 of 10 allowed
    assert code == EXIT_OK
    assert len(store.names("bkt/out/d/")) == 9  # the rest of f004's batch still went through
    err = json.loads(store.objects["bkt/out/_errors/d/f004.jsonl.json"])
    assert "cannot parse d/f004.jsonl" in err["error"]
    assert not done(store, 4)
    assert any(r["message"] == "batch failed; retrying its files one by one" for r in logs)

    store2 = MemStore()
    seed(store2, 10, bad=[4, 5])
    code, logs = run(store2, make_cfg(GPUB_FAILURE_BUDGET="0.1"))  # 2 > 1 allowed
    assert code == EXIT_BUDGET
    assert logs[-1]["severity"] == "ERROR" and logs[-1]["failed"] == 2


def test_quarantined_file_is_retried_and_its_error_record_removed() -> None:
    store = MemStore()
    seed(store, 3, bad=[1])
    assert run(store, make_cfg())[0] == EXIT_BUDGET
    store.objects["bkt/in/d/f001.jsonl"] = b'{"fixed": true}\n'
    assert run(store, make_cfg(BATCH_TASK_RETRY_ATTEMPT="1"))[0] == EXIT_OK
    assert store.names("bkt/out/_errors/") == []
    assert all(done(store, i) for i in range(3))


def test_handler_reported_failure_and_missing_input() -> None:
    store = MemStore()
    seed(store, 4)
    del store.objects["bkt/in/d/f002.jsonl"]

    def picky(batch: list[Item]) -> Sequence[Result]:
        return [Failure(i.name, "too short") if i.name.endswith("0.jsonl")
                else i.output(i.data) for i in batch]

    code, _ = run(store, make_cfg(GPUB_FAILURE_BUDGET="0.5"), picky)
    assert code == EXIT_OK
    assert sorted(store.names("bkt/out/_errors/")) == [
        "bkt/out/_errors/d/f000.jsonl.json", "bkt/out/_errors/d/f002.jsonl.json"]
    assert "NotFound" in json.loads(store.objects["bkt/out/_errors/d/f002.jsonl.json"])["error"]


def test_per_file_timeout_quarantines_only_the_slow_file() -> None:
    store = MemStore()
    seed(store, 4)

    def slow_on_one(batch: list[Item]) -> Sequence[Result]:
        if any(i.name.endswith("f001.jsonl") for i in batch):
            time.sleep(2)
        return echo(batch)

    t0 = time.monotonic()
    code, _ = run(store, make_cfg(GPUB_FILE_TIMEOUT_S="0.2", GPUB_FAILURE_BUDGET="0.25"),
                  slow_on_one)
    assert code == EXIT_OK
    assert time.monotonic() - t0 < 2  # abandoned, not awaited
    err = json.loads(store.objects["bkt/out/_errors/d/f001.jsonl.json"])
    assert "HandlerTimeout" in err["error"]
    assert len(store.names("bkt/out/d/")) == 3


def test_setup_runs_once_and_only_with_work() -> None:
    store = MemStore()
    seed(store, 9)
    calls: list[int] = []
    assert run(store, make_cfg(), setup=lambda: calls.append(1))[0] == EXIT_OK
    assert calls == [1]
    assert run(store, make_cfg(), setup=lambda: calls.append(1))[0] == EXIT_OK
    assert calls == [1]  # everything done: the model is never loaded


def test_storage_outage_raises_infra_error() -> None:
    store = MemStore()
    seed(store, 4)
    store.fail_reads["in/d/f002.jsonl"] = requests.ConnectionError("connection refused")
    with pytest.raises(InfraError, match="connection refused"):
        run(store, make_cfg())


def test_existing_outputs_count_as_written_by_a_racer() -> None:
    store = MemStore()
    seed(store, 2)
    store.objects["bkt/out/d/f000.out"] = b'{"I": 0}\n'  # a racing attempt got there first
    code, logs = run(store, make_cfg())
    assert code == EXIT_OK
    assert logs[-1]["outputs_existing"] == 1 and logs[-1]["outputs_created"] == 1


def test_input_objects_mode_keys_by_relative_name() -> None:
    store = MemStore()
    store.objects["bkt/in/x/a.jsonl"] = b'{"a": "b"}\n'
    store.objects["other/elsewhere.jsonl"] = b'{"c": "d"}\n'
    cfg = make_cfg(GPUB_MANIFEST="",
                   GPUB_INPUT_OBJECTS="gs://bkt/in/x/a.jsonl, gs://other/elsewhere.jsonl")
    assert run(store, cfg)[0] == EXIT_OK
    assert "bkt/out/x/a.out" in store.objects and "bkt/out/elsewhere.out" in store.objects


def test_logger_scrubs_secrets() -> None:
    buf = io.StringIO()
    log = JsonLogger(buf)
    log.add_secret("s3cr3t-key")
    log.error("boom", error="header Bearer s3cr3t-key rejected")
    assert "s3cr3t-key" not in buf.getvalue() and "***" in buf.getvalue()
