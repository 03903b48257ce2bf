"""Eventarc, locally: each Pub/Sub-transport trigger in the stack gets a subscription on its
topic; every message becomes one execution of the trigger's workflow, with the CloudEvent as
its argument. As in Eventarc, an event counts as delivered once its execution starts, and a
failed execution is not retried
(https://cloud.google.com/workflows/docs/trigger-workflow-eventarc); an execution Workflows
refuses to create (over 6,000 creations per minute per location,
https://cloud.google.com/workflows/quotas) is not acknowledged, so Pub/Sub delivers the event
again (https://cloud.google.com/eventarc/docs/retry-events). Delivery is at least once and in no
particular order: what the local Pub/Sub hands out (duplicates and reordering with its knobs,
`local.faults`) reaches the workflows as it comes.

The triggers and workflows follow the stack file: a changed file is re-read before the next
delivery round (`local.topology`), so a trigger added to a running local cloud delivers its
first event.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.connectors import Connectors
from local.faults import FaultPlan, plan_from_env
from local.pubsub_stack import Trigger, deployed_triggers, eventarc_subscription
from local.topology import StackWatch
from local.workflow_limits import Budget, CreationRate
from local.workflows import (
    DeployedWorkflow,
    WorkflowFailed,
    WorkflowSyntaxError,
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


@dataclass
class Round:
    """What one delivery round did."""

    executions: list[Execution] = field(default_factory=list)
    refused: int = 0  # events left unacknowledged: over the execution-creation rate

    @property
    def failed(self) -> int:
        return sum(1 for r in self.executions if r.error is not None)


class LocalEventarc:
    def __init__(self, stacks: Sequence[Path], *, batch_target: str, gcs_endpoint: str,
                 pubsub_target: str, sleep_scale: float | None = None,
                 connector_timeout_s: float | None = None, plan: FaultPlan | None = None,
                 limits: Budget | None = None, creations: CreationRate | None = None,
                 on_reload: Callable[[], Any] | None = None,
                 delivery: FaultPlan | None = None) -> None:
        """`sleep_scale` and `connector_timeout_s` go to each execution's connectors
        (`local.connectors`: None reads LOCAL_WORKFLOWS_SLEEP_SCALE / ..._CONNECTOR_TIMEOUT_S);
        `plan` the fault knobs (None: from the environment); `limits` and `creations` the
        Workflows limits (default: Workflows' own); `on_reload` runs after the stack was
        re-read (`python -m local events` creates the buckets it added); `delivery` adds
        duplicates and reordering in this loop itself, on top of what the local Pub/Sub hands
        out (for a test on a shared cloud whose Pub/Sub runs without knobs; default: none)."""
        self.sleep_scale = sleep_scale
        self.connector_timeout_s = connector_timeout_s
        self.plan = plan or plan_from_env()
        self.limits = limits
        self.creations = creations or CreationRate()
        self.on_reload = on_reload
        self.delivery = delivery
        self._delivery_rng = delivery.stream("eventarc") if delivery else None
        self._live: list[Connectors] = []
        self._runs: dict[str, int] = {}
        self.endpoints = {"batch_target": batch_target, "gcs_endpoint": gcs_endpoint,
                          "pubsub_target": pubsub_target}
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_target
        from local.grpc_identity import subscriber_for
        from local.identity import EVENTARC_AGENT_EMAIL

        # Eventarc's service agent owns each trigger's subscription (local.pubsub_iam).
        self.subscriber = subscriber_for(pubsub_target, EVENTARC_AGENT_EMAIL)
        self.watch = StackWatch(stacks)
        self.docs: list[dict[str, Any]] = []
        self.workflows: list[DeployedWorkflow] = []
        self.triggers: list[Trigger] = []
        self.routes: list[tuple[Trigger, DeployedWorkflow, str]] = []
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the stack when its file changed: triggers, workflows, their subscriptions."""
        docs = self.watch.changed()
        if docs is None:
            return False
        from google.api_core import exceptions as gexc

        try:
            workflows = [w for d in docs for w in deployed_workflows(d)]
            triggers = [t for d in docs for t in deployed_triggers(d)]
            pairs = [(t, workflow_for(t, workflows)) for t in triggers]
        except (WorkflowSyntaxError, LookupError) as exc:
            if not self.routes:
                raise
            print(f"local eventarc: the changed stack is not applied: {exc}", file=sys.stderr)
            return False
        routes = []
        for trigger, wf in pairs:
            sub = eventarc_subscription(trigger.topic, trigger.name)
            with contextlib.suppress(gexc.AlreadyExists):
                self.subscriber.create_subscription(name=sub, topic=trigger.topic)
            routes.append((trigger, wf, sub))
        self.docs, self.workflows, self.triggers, self.routes = docs, workflows, triggers, routes
        if self.on_reload is not None:
            self.on_reload()
        return True

    def connectors(self, wf: DeployedWorkflow, fault_key: str = "") -> Connectors:
        ep = self.endpoints
        conn = Connectors(batch_target=ep["batch_target"], gcs_endpoint=ep["gcs_endpoint"],
                          pubsub_target=ep["pubsub_target"], identity=wf.service_account,
                          sleep_scale=self.sleep_scale, timeout_s=self.connector_timeout_s,
                          plan=self.plan, fault_key=fault_key)
        self._live.append(conn)
        return conn

    def abandon(self) -> None:
        """Give up on the executions still running (their next `sys.sleep` raises)."""
        for conn in self._live:
            conn.abandoned.set()

    def deliver(self, timeout_s: float = 2.0) -> list[Execution]:
        """Run one execution per pending event (as the subscription hands them out)."""
        return self.deliver_round(timeout_s).executions

    def deliver_round(self, timeout_s: float = 2.0) -> Round:
        self.refresh()
        done = Round()
        for trigger, wf, sub in self.routes:
            resp = self.subscriber.pull(subscription=sub, max_messages=100, timeout=timeout_s)
            started: list[Any] = []
            refused: list[Any] = []
            for received in self._as_delivered(list(resp.received_messages)):
                ok = self.creations.admit(f"{wf.project}/{wf.region}")
                (started if ok else refused).append(received)
            if started:  # delivered once its execution starts
                self.subscriber.acknowledge(subscription=sub,
                                            ack_ids=[m.ack_id for m in started])
            if refused:  # Workflows answered 429: Pub/Sub delivers the event again
                self.subscriber.modify_ack_deadline(
                    subscription=sub, ack_ids=[m.ack_id for m in refused], ack_deadline_seconds=0)
                done.refused += len(refused)
            for received in started:
                done.executions.append(self._run(trigger, wf, sub, received))
        return done

    def pending(self) -> dict[str, int]:
        """Events still held by each trigger's subscription (ready or under a lease)."""
        from local.pubsub_admin import backlog

        target = self.endpoints["pubsub_target"]
        counts = {sub: backlog(target, sub) for _, _, sub in self.routes}
        return {sub: c["ready"] + c["leased"] for sub, c in counts.items() if any(c.values())}

    def _as_delivered(self, received: list[Any]) -> list[Any]:
        """The pulled events as this loop delivers them (its own `delivery` knobs)."""
        plan, rng = self.delivery, self._delivery_rng
        if plan is None or rng is None:
            return received
        out = [copy for m in received
               for copy in ([m, m] if rng.random() < plan.duplicate_rate else [m])]
        if plan.reorder:
            rng.shuffle(out)
        return out

    def _run(self, trigger: Trigger, wf: DeployedWorkflow, sub: str, received: Any) -> Execution:
        event = pubsub_cloudevent(trigger.topic, sub, received.message)
        run = Execution(trigger.address, wf.name, event)
        key = f"{trigger.name}:{event['id']}"
        self._runs[key] = self._runs.get(key, 0) + 1  # a duplicate draws faults of its own
        conn = self.connectors(wf, f"{key}:{self._runs[key]}")
        try:
            run.result = execute(wf, event, conn, self.limits)
        except WorkflowFailed as exc:
            run.error = exc.payload
        return run


def summary(executions: Sequence[Execution]) -> str:
    ok = sum(1 for r in executions if r.error is None)
    return f"{len(executions)} executions ({ok} SUCCEEDED, {len(executions) - ok} FAILED)"


def describe(run: Execution) -> str:
    attrs = run.event["data"]["message"].get("attributes", {})
    what = run.result if run.error is None else run.error
    return (f"{run.workflow} <- gs://{attrs.get('bucketId')}/{attrs.get('objectId')}: "
            f"{run.state} {json.dumps(what, default=str)[:200]}")
