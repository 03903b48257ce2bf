"""The local Workflows runtime enforces Workflows' documented limits with the error Workflows
raises (ResourceLimitError, which try/except cannot catch), and its connectors fail
transiently like the real ones (LOCAL_CONNECTOR_ERROR_RATE), retried first by the connector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.connector_faults import (
    CODES,
    MAX_RETRIES,
    RETRY_IDEMPOTENT,
    RETRY_NON_IDEMPOTENT,
    ConnectorFaults,
    InjectedHttpError,
)
from local.connectors import Connectors
from local.faults import FaultPlan
from local.grpc_identity import subscriber_for
from local.procs import terminate
from local.pubsub_launcher import start_pubsub
from local.workflow_limits import (
    MAX_CREATIONS_PER_MINUTE,
    MAX_SOURCE_BYTES,
    MAX_STEPS,
    MAX_VARIABLE_BYTES,
    Budget,
    CreationRate,
    context_bytes,
    variable_bytes,
)
from local.workflows import DeployedWorkflow, WorkflowFailed, WorkflowSyntaxError, execute

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
TOPIC = "projects/demo-proj/topics/acme-results"
SUB = "projects/demo-proj/subscriptions/acme-results-sub"
ADMIN = "terraform@local.iam.gserviceaccount.com"


def _wf(source: str) -> DeployedWorkflow:
    return DeployedWorkflow("x", "limits", "demo-proj", "europe-west4", ADMIN, source)


def _conn(target: str = "127.0.0.1:1", plan: FaultPlan | None = None, key: str = "") -> Connectors:
    return Connectors(batch_target="127.0.0.1:1", gcs_endpoint="http://127.0.0.1:1",
                      pubsub_target=target, identity=ADMIN, sleep_scale=0.0,
                      plan=plan or FaultPlan(), fault_key=key)


# ---- the figures are Workflows' (cloud.google.com/workflows/quotas) ----------------------
def test_the_limits_are_the_documented_ones() -> None:
    assert MAX_VARIABLE_BYTES == 512 * 1024
    assert MAX_STEPS == 100_000
    assert MAX_SOURCE_BYTES == 128 * 1024
    assert MAX_CREATIONS_PER_MINUTE == 6_000


def test_memory_is_counted_as_the_variables_page_says() -> None:
    # "a: 'This is a string of 28 bytes'; b: ${a}" uses 36 + 36 = 72 bytes.
    assert context_bytes({"a": "This is a string of 28 bytes",
                          "b": "This is a string of 28 bytes"}) == 72
    assert variable_bytes(1) == variable_bytes(2.5) == variable_bytes(True) == 8
    assert variable_bytes([1, "ab"]) == 8 + 8 + 10
    assert variable_bytes({"k": 1}) == 8 + 9 + 8


GROW = """
main:
  params: [args]
  steps:
    - init:
        assign:
          - chunk: ${args.chunk}
          - rows: []
    - guarded:
        try:
          steps:
            - grow:
                for:
                  value: i
                  range: [1, 80]
                  steps:
                    - add:
                        assign:
                          - rows: ${list.concat(rows, chunk)}
        except:
          as: e
          steps:
            - swallowed:
                return: "caught"
    - done:
        return: ${len(rows)}
"""


def test_variables_over_512_kb_fail_the_execution_and_cannot_be_caught() -> None:
    with pytest.raises(WorkflowFailed) as failed:
        execute(_wf(GROW), CHUNK, _conn())
    assert failed.value.payload["tags"] == ["ResourceLimitError"]
    assert "Memory usage limit exceeded" in failed.value.payload["message"]


def test_a_small_enough_execution_runs_and_reports_its_peak() -> None:
    limits = Budget()
    source = GROW.replace("range: [1, 80]", "range: [1, 5]")
    assert execute(_wf(source), CHUNK, _conn(), limits) == 5
    assert 50_000 < limits.peak_bytes < MAX_VARIABLE_BYTES


CHUNK = {"chunk": "x" * 10_000}

LOOP = """
main:
  steps:
    - init:
        assign:
          - n: 0
    - again:
        assign:
          - n: ${n + 1}
    - more:
        switch:
          - condition: ${n < 100000000}
            next: again
    - done:
        return: ${n}
"""


def test_steps_over_the_per_execution_limit_fail_with_resource_limit_error() -> None:
    with pytest.raises(WorkflowFailed) as failed:
        execute(_wf(LOOP), None, _conn(), Budget(max_steps=300))
    assert failed.value.payload["tags"] == ["ResourceLimitError"]
    assert "maximum number of steps" in failed.value.payload["message"]


def test_a_source_over_128_kb_is_refused_as_deploy_would() -> None:
    padding = "\n".join(f"# {'x' * 100}" for _ in range(1400))
    source = f"{padding}\nmain:\n  steps:\n    - a:\n        return: 1\n"
    assert len(source.encode()) > MAX_SOURCE_BYTES
    with pytest.raises(WorkflowSyntaxError, match=r"limits: source is [\d,]+ bytes; Workflows"):
        execute(_wf(source), None, _conn())


def test_execution_creations_are_limited_per_minute_per_location() -> None:
    now = [0.0]
    rate = CreationRate(per_minute=3, clock=lambda: now[0])
    assert [rate.admit("p/europe-west4") for _ in range(4)] == [True, True, True, False]
    assert rate.admit("p/us-central1")  # another location has its own budget
    now[0] = 60.0
    assert rate.admit("p/europe-west4")  # the window moved on
    assert rate.refused == 1


# ---- connector faults ---------------------------------------------------------------------
def test_the_connector_retries_what_its_policy_retries_then_surfaces_it() -> None:
    waits: list[float] = []
    faults = ConnectorFaults(FaultPlan(connector_error_rate=1.0), "s", waits.append)
    sent: list[int] = []
    with pytest.raises(InjectedHttpError) as err:
        faults.request("objects.get", True, lambda: sent.append(1))
    assert err.value.code in CODES
    # A GET retries 429/502/503/504 up to 5 times (backoff 1 s x 1.25); a 500 surfaces at once.
    assert len(waits) <= MAX_RETRIES and waits == [1.25 ** i for i in range(len(waits))]
    assert (err.value.code not in RETRY_IDEMPOTENT) or len(waits) == MAX_RETRIES
    assert sent == []  # a GET that failed was never answered: nothing to carry out
    assert RETRY_NON_IDEMPOTENT < RETRY_IDEMPOTENT


def test_faults_are_reproducible_from_the_seed() -> None:
    def trace(seed: int) -> list[int | None]:
        f = ConnectorFaults(FaultPlan(connector_error_rate=0.5, seed=seed), "s", lambda _: None)
        out: list[int | None] = []
        for _ in range(50):
            try:
                f.request("topics.publish", False, lambda: None)
                out.append(None)
            except InjectedHttpError as exc:
                out.append(exc.code)
        return out

    assert trace(3) == trace(3) and trace(3) != trace(4)
    assert any(trace(3)) and None in trace(3)


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    info = start_pubsub(tmp_path_factory.mktemp("pubsub"), [FIXTURE])
    mp = pytest.MonkeyPatch()
    mp.setenv("PUBSUB_EMULATOR_HOST", info["target"])
    try:
        yield info["target"]
    finally:
        mp.undo()
        terminate(info["pid"], 5)


def _publisher_source(n: int, retry: bool) -> str:
    args = json.dumps({"topic": TOPIC, "body": {"messages": [{"data": "eA=="}]}})
    retry_block = (
        "        retry:\n"
        "          predicate: ${transient}\n"
        "          max_retries: 10\n"
        "          backoff: {initial_delay: 1, max_delay: 60, multiplier: 2}\n"
    ) if retry else (
        "        except:\n          as: e\n          steps:\n"
        "            - up:\n                raise: ${e}\n"
    )
    return (
        "main:\n  steps:\n    - each:\n        for:\n          value: i\n"
        f"          range: [1, {n}]\n          steps:\n            - one:\n"
        "                call: publish_one\n    - done:\n        return: published\n"
        "publish_one:\n  steps:\n    - guarded:\n        try:\n          steps:\n"
        "            - publish:\n"
        "                call: googleapis.pubsub.v1.projects.topics.publish\n"
        f"                args: {args}\n"
        f"{retry_block}"
        "transient:\n  params: [e]\n  steps:\n    - check:\n"
        '        return: ${"HttpError" in e.tags and (e.code == 429 or e.code >= 500)}\n'
    )


def _drain(sub: Any) -> int:
    total = 0
    while got := sub.pull(subscription=SUB, max_messages=100, timeout=5).received_messages:
        sub.acknowledge(subscription=SUB, ack_ids=[m.ack_id for m in got])
        total += len(got)
    return total


def test_transient_connector_errors_reach_the_workflow_and_its_retry_recovers(
    pubsub: str,
) -> None:
    sub = subscriber_for(pubsub, ADMIN)  # the server enforces the stack's IAM
    _drain(sub)
    plan = FaultPlan(connector_error_rate=0.4, seed=11)
    conn = _conn(pubsub, plan, "with-retry")
    assert execute(_wf(_publisher_source(20, retry=True)), None, conn) == "published"
    assert conn.faults.surfaced > 0  # the workflow's retry policy had work to do
    # At least once: a publish whose answer was lost was sent anyway, so some came twice.
    assert _drain(sub) >= 20
    conn = _conn(pubsub, plan, "without-retry")
    with pytest.raises(WorkflowFailed) as failed:
        execute(_wf(_publisher_source(20, retry=False)), None, conn)
    assert failed.value.payload["tags"] == ["HttpError"]
    assert failed.value.payload["code"] in CODES
