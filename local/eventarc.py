"""Eventarc, locally: each Pub/Sub-transport trigger in the stack gets a subscription on its
topic; every message becomes one execution of the trigger's workflow, with the CloudEvent as
its argument. As in Eventarc, an event counts as delivered once its execution starts, and a
failed execution is not retried
(https://cloud.google.com/workflows/docs/trigger-workflow-eventarc).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.connectors import Connectors
from local.pubsub_stack import Trigger, deployed_triggers, eventarc_subscription
from local.workflows import (
    DeployedWorkflow,
    WorkflowFailed,
    deployed_workflows,
    execute,
    pubsub_cloudevent,
    workflow_for,
)


@dataclass
class Execution:
    trigger: str
    workflow: str
    event: dict[str, Any]
    result: Any = None
    error: Any = None  # the uncaught error's payload when the execution FAILED

    @property
    def state(self) -> str:
        return "FAILED" if self.error is not None else "SUCCEEDED"


class LocalEventarc:
    def __init__(self, stacks: Sequence[Path], *, batch_target: str, gcs_endpoint: str,
                 pubsub_target: str, sleep_scale: float | None = None,
                 connector_timeout_s: float | None = None) -> None:
        """`sleep_scale` and `connector_timeout_s` go to each execution's connectors
        (`local.connectors`: None reads LOCAL_WORKFLOWS_SLEEP_SCALE / ..._CONNECTOR_TIMEOUT_S)."""
        self.sleep_scale = sleep_scale
        self.connector_timeout_s = connector_timeout_s
        self.docs = docs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in stacks]
        self._live: list[Connectors] = []
        self.workflows = [w for d in docs for w in deployed_workflows(d)]
        self.triggers = [t for d in docs for t in deployed_triggers(d)]
        self.endpoints = {"batch_target": batch_target, "gcs_endpoint": gcs_endpoint,
                          "pubsub_target": pubsub_target}
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_target
        from google.api_core import exceptions as gexc

        from local.grpc_identity import subscriber_for
        from local.identity import EVENTARC_AGENT_EMAIL

        # Eventarc's service agent owns each trigger's subscription (local.pubsub_iam).
        self.subscriber = subscriber_for(pubsub_target, EVENTARC_AGENT_EMAIL)
        self.routes: list[tuple[Trigger, DeployedWorkflow, str]] = []
        for trigger in self.triggers:
            wf = workflow_for(trigger, self.workflows)
            sub = eventarc_subscription(trigger.topic, trigger.name)
            with contextlib.suppress(gexc.AlreadyExists):
                self.subscriber.create_subscription(name=sub, topic=trigger.topic)
            self.routes.append((trigger, wf, sub))

    def connectors(self, wf: DeployedWorkflow) -> Connectors:
        ep = self.endpoints
        conn = Connectors(batch_target=ep["batch_target"], gcs_endpoint=ep["gcs_endpoint"],
                          pubsub_target=ep["pubsub_target"], identity=wf.service_account,
                          sleep_scale=self.sleep_scale, timeout_s=self.connector_timeout_s)
        self._live.append(conn)
        return conn

    def abandon(self) -> None:
        """Give up on the executions still running (their next `sys.sleep` raises)."""
        for conn in self._live:
            conn.abandoned.set()

    def deliver(self, timeout_s: float = 2.0) -> list[Execution]:
        """Run one execution per pending event (in arrival order); the executions."""
        done: list[Execution] = []
        for trigger, wf, sub in self.routes:
            resp = self.subscriber.pull(subscription=sub, max_messages=100, timeout=timeout_s)
            if resp.received_messages:
                self.subscriber.acknowledge(
                    subscription=sub, ack_ids=[m.ack_id for m in resp.received_messages])
            for received in resp.received_messages:
                event = pubsub_cloudevent(trigger.topic, sub, received.message)
                run = Execution(trigger.address, wf.name, event)
                try:
                    run.result = execute(wf, event, self.connectors(wf))
                except WorkflowFailed as exc:
                    run.error = exc.payload
                done.append(run)
        return done
