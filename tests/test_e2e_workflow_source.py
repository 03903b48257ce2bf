"""What the local Workflows interpreter needs to run the REAL synthesized dispatcher unchanged
(fast checks; the end-to-end runs are in test_e2e_tenancy.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from local.connectors import Connectors
from local.workflows import DeployedWorkflow, deployed_workflows, execute
from stacks.environments import dev

ENV = dev()


def _run(source: str, argument: Any, sleep_scale: float = 1.0,
         abandoned: threading.Event | None = None) -> Any:
    wf = DeployedWorkflow("x", "x", ENV.project_id, ENV.region, "wf@x.iam.gserviceaccount.com",
                          source)
    conn = Connectors(batch_target="127.0.0.1:9", gcs_endpoint="http://127.0.0.1:9",
                      pubsub_target="127.0.0.1:9", identity=wf.service_account,
                      sleep_scale=sleep_scale)
    if abandoned is not None:
        conn.abandoned = abandoned
    return execute(wf, argument, conn)


def test_get_type_of_a_map_argument_is_map() -> None:
    # The dispatcher routes on `get_type(args)`; workflows-emulator 1.10.0 raised
    # "Unknown type ContextDict" for every map.
    source = "main:\n  params: [args]\n  steps:\n    - t:\n        return: ${get_type(args)}\n"
    assert _run(source, {"data": {}}) == "map"
    assert _run(source, None) == "null"


def test_sys_sleep_is_scaled_locally() -> None:
    source = ("main:\n  steps:\n    - wait:\n        call: sys.sleep\n        args:\n"
              "          seconds: 60\n    - done:\n        return: 1\n")
    waits: list[float | None] = []

    class Recording(threading.Event):
        """The execution's `abandoned` event, recording how long each sleep waits on it."""

        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            return False

    assert _run(source, None, sleep_scale=0.001, abandoned=Recording()) == 1
    assert waits == [pytest.approx(60 * 0.001)]


def test_the_dispatchers_identity_is_the_workflow_service_account(
    stacks_json: dict[str, dict[str, Any]],
) -> None:
    # The stack names it by the service account's Terraform id
    # (projects/<p>/serviceAccounts/<email>): the workflow runs as that email.
    wfs = {w.name: w for w in deployed_workflows(stacks_json["dev"])}
    wf = wfs[ENV.job_workflow("uppercase")]
    assert wf.service_account == f"batch-workflows@{ENV.project_id}.iam.gserviceaccount.com"
    assert "skip_polling: true" in wf.source  # jobs.create returns at creation, then polls


def test_the_local_pubsub_creates_each_triggers_subscription_from_the_stack(
    stacks_json: dict[str, dict[str, Any]],
) -> None:
    from local.pubsub_stack import declared_topics_and_subscriptions

    _, subs = declared_topics_and_subscriptions([stacks_json["dev"]])
    for job in ("embed", "uppercase"):
        name = f"projects/{ENV.project_id}/subscriptions/eventarc-batch-{job}-uploads"
        # One trigger per job, on the job's own intake topic (issue 20).
        assert subs[name][0] == ENV.layout.topic_path(ENV.layout.intake_topic(job))
