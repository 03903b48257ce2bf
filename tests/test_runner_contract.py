"""The run-time contract (gpub_runner.contract) and the runner's safety rules: odd input names
are quarantined one by one, done markers are tied to the input's generation, and URL secrets
never reach a log line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from gpub_runner import contract
from gpub_runner.callback import CallbackError, send_callback
from gpub_runner.logs import JsonLogger, redact
from gpub_runner.runner import EXIT_BUDGET, EXIT_OK

from tests._helpers.runner_store import MemStore, done, make_cfg, run, seed

REPO = Path(__file__).resolve().parents[1]


# ---- one home for each rule ----------------------------------------------------------------

def test_planner_runner_and_config_share_one_task_split() -> None:
    from gpub_runner import config, runner

    from submit import planner

    assert config.task_share is contract.task_share
    assert runner.task_share is contract.task_share
    assert planner.task_share is contract.task_share
    assert planner.input_name_problem is contract.input_name_problem


def test_states_cancelled_is_final_and_sets_are_disjoint() -> None:
    from google.cloud import batch_v1

    assert "CANCELLED" in contract.JOB_FINAL_STATES
    assert not contract.JOB_FINAL_STATES & contract.JOB_ACTIVE_STATES
    # Every Batch job state is either final or active: nothing can poll forever.
    names = {s.name for s in batch_v1.JobStatus.State}
    assert names == contract.JOB_FINAL_STATES | contract.JOB_ACTIVE_STATES
    assert contract.JOB_RESUMABLE_STATES < contract.JOB_FINAL_STATES
    task_names = {s.name for s in batch_v1.TaskStatus.State} - {"STATE_UNSPECIFIED"}
    assert task_names == contract.TASK_FINAL_STATES | contract.TASK_ACTIVE_STATES


def test_submit_uses_the_contract_states() -> None:
    from submit import batch

    assert {s.name for s in batch.ACTIVE_STATES} == contract.JOB_ACTIVE_STATES
    assert {s.name for s in batch.FINAL_STATES} == contract.JOB_FINAL_STATES


def test_runtime_variables_match_the_renderer() -> None:
    from jobs.render import RUNTIME_VARIABLES

    assert tuple(RUNTIME_VARIABLES) == contract.RUNTIME_VARIABLES


def test_runner_image_ships_the_contract_module() -> None:
    # The image installs images/runner (Dockerfile: COPY runner; pip install), so the module
    # the container imports is this very file, not a copy that could drift.
    dockerfile = (REPO / "images/runner/Dockerfile").read_text()
    assert "COPY runner /tmp/runner" in dockerfile and "pip install /tmp/runner" in dockerfile
    assert Path(contract.__file__).resolve() == (
        REPO / "images/runner/src/gpub_runner/contract.py").resolve()


@pytest.mark.parametrize(("name", "problem"), [
    ("b1/sub/../x.jsonl", "'..'"),
    ("./x.jsonl", "'.'"),
    ("a//b.jsonl", "empty path segment"),
    ("/abs.jsonl", "starts with '/'"),
    ("a\nb.jsonl", "control character"),
    ("", "empty"),
    (None, "empty"),
])
def test_input_name_rules_refuse_names_that_escape_the_output(name: object,
                                                              problem: str) -> None:
    found = contract.input_name_problem(name)
    assert found is not None and problem in found


@pytest.mark.parametrize("name", ["a.jsonl", "b1/sub/x.jsonl", "..x.jsonl", "a..b/c.jsonl",
                                  "é/ü.jsonl", "dir/"])
def test_input_name_rules_accept_ordinary_names(name: str) -> None:
    assert contract.input_name_problem(name) is None


# ---- finding 4: one odd name never fails a task --------------------------------------------

def test_odd_manifest_name_is_quarantined_and_the_good_files_succeed() -> None:
    store = MemStore()
    seed(store, 9)
    bad = json.dumps({"name": "b1/sub/../x.jsonl", "size": 1, "generation": "1"})
    store.objects["bkt/out/_manifest.jsonl"] += (bad + "\n").encode()
    code, logs = run(store, make_cfg())  # no failure budget at all
    assert code == EXIT_OK  # never fails the task
    assert len(store.names("bkt/out/d/")) == 9  # every good file done
    errors = store.names("bkt/out/_errors/")
    assert len(errors) == 1 and errors[0].startswith("bkt/out/_errors/_bad-names/")
    record = json.loads(store.objects[errors[0]])
    assert "b1/sub/../x.jsonl" in record["error"] and "'..'" in record["error"]
    assert not any(".." in k for k in store.objects if k != errors[0])
    assert logs[-1]["bad_names"] == 1 and logs[-1]["ok"] == 9 and logs[-1]["failed"] == 0
    assert any(r["message"] == "file failed; quarantined" for r in logs)

    # A real failure next to it still counts against the budget as before.
    store2 = MemStore()
    seed(store2, 9, bad=[3])
    store2.objects["bkt/out/_manifest.jsonl"] += (bad + "\n").encode()
    assert run(store2, make_cfg())[0] == EXIT_BUDGET
    assert len(store2.names("bkt/out/d/")) == 8


# ---- finding 2: done markers are tied to the input generation -------------------------------

def test_marker_of_an_older_generation_does_not_skip_the_new_input() -> None:
    store = MemStore()
    seed(store, 3)
    assert run(store, make_cfg())[0] == EXIT_OK
    assert done(store, 1)
    stale = {k: store.gens[k] for k in store.names("bkt/out/d/")}
    # Same names, new content: a new generation in the manifest.
    lines = [json.loads(x) for x in store.objects["bkt/out/_manifest.jsonl"].splitlines()]
    for rec in lines:
        key = f"bkt/in/{rec['name']}"
        rec["generation"] = str(store.write(key, store.objects[key] + b"\n"))
    store.objects["bkt/out/_manifest.jsonl"] = "".join(
        json.dumps(r) + "\n" for r in lines).encode()
    calls: list[str] = []

    def counting(batch: list) -> list:  # type: ignore[type-arg]
        calls.extend(i.name for i in batch)
        return [i.output(i.data.upper(), suffix=".v2") for i in batch]

    code, logs = run(store, make_cfg(), counting)
    assert code == EXIT_OK and sorted(calls) == [f"d/f{i:03d}.jsonl" for i in range(3)]
    assert logs[-1]["skipped"] == 0
    assert all(done(store, i, lines[i]["generation"], ".v2") for i in range(3))
    # The v1 outputs are still those of the old generation: never mistaken for done.
    assert all(store.gens[k] == g for k, g in stale.items())

def test_marker_name_depends_on_input_uri_and_generation() -> None:
    a = contract.done_marker_name("x.jsonl", "gs://b/in1/x.jsonl", "1")
    assert a.startswith("_done/x.jsonl.") and a.endswith(".done")
    assert a != contract.done_marker_name("x.jsonl", "gs://b/in1/x.jsonl", "2")
    assert a != contract.done_marker_name("x.jsonl", "gs://b/in2/x.jsonl", "1")
    assert a == contract.done_marker_name("x.jsonl", "gs://b/in1/x.jsonl", "1")


# ---- finding 7: no URL secret in any log field ---------------------------------------------

def test_callback_errors_never_log_the_query_string() -> None:
    buf = io.StringIO()
    log = JsonLogger(buf)
    # Port 9 (discard) refuses the connection: requests' error text carries the URL's path
    # and query ("Max retries exceeded with url: /cb?token=...").
    with pytest.raises(CallbackError) as info:
        send_callback("http://127.0.0.1:9/cb?token=QUERYSECRET", "KEY", {"a": 1}, log,
                      attempts=2, backoff_s=0.01, timeout_s=2)
    log.error("callback failed", error=str(info.value))
    text = buf.getvalue()
    assert "QUERYSECRET" not in text and "KEY" not in text.replace('"KEY"', "")
    assert "callback attempt failed" in text and "/cb" in text


@pytest.mark.parametrize(("raw", "leak"), [
    ("error: HTTPConnectionPool(host='h', port=9): Max retries exceeded with url: "
     "/cb?token=S3CRET (Caused by x)", "S3CRET"),
    ("GET https://user:PASSW0RD@example.com/path failed", "PASSW0RD"),
    ("see https://example.com/a?sig=ABC&x=1 and more", "ABC"),
])
def test_logger_scrubs_urls_in_every_field(raw: str, leak: str) -> None:
    buf = io.StringIO()
    log = JsonLogger(buf, context_field=raw)
    log.warning(raw, error=raw, nested={"deep": [raw]})
    line = buf.getvalue()
    assert leak not in line
    assert json.loads(line)["severity"] == "WARNING"
    assert leak not in redact(raw)
    assert redact("is this ok? yes") == "is this ok? yes"  # prose keeps its question marks


# ---- runner exit codes 2 and 3 are never retried (local backend = Batch semantics) ----------

@pytest.mark.parametrize(("action", "codes", "exit_code", "retried"), [
    ("RETRY_TASK", [50001], 50001, True),  # a preemption is retried
    ("RETRY_TASK", [50001], contract.EXIT_CONFIG, False),  # "fail tasks if no match is found"
    ("RETRY_TASK", [50001], contract.EXIT_BUDGET, False),
    ("RETRY_TASK", [50001], contract.EXIT_INFRA, False),
    ("FAIL_TASK", list(contract.NO_RETRY_EXIT_CODES), contract.EXIT_CONFIG, False),
    ("FAIL_TASK", list(contract.NO_RETRY_EXIT_CODES), contract.EXIT_BUDGET, False),
    ("FAIL_TASK", list(contract.NO_RETRY_EXIT_CODES), contract.EXIT_INFRA, True),
    ("FAIL_TASK", list(contract.NO_RETRY_EXIT_CODES), 50001, True),
    (None, [], contract.EXIT_CONFIG, True),  # no policy: every non-zero exit is retried
])
def test_local_backend_follows_batch_lifecycle_semantics(action: str | None, codes: list[int],
                                                         exit_code: int, retried: bool) -> None:
    from google.cloud.batch_v1 import LifecyclePolicy

    from local.task_process import should_retry as _should_retry

    policies = [] if action is None else [LifecyclePolicy(
        action=LifecyclePolicy.Action[action],
        action_condition=LifecyclePolicy.ActionCondition(exit_codes=codes))]
    assert _should_retry(exit_code, 0, 3, policies) is retried
    assert _should_retry(exit_code, 3, 3, policies) is False  # no retries left
