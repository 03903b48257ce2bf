"""What the environment's Cloud Monitoring watches, as plain data: log-based
metrics, alert policies and the dashboard. Pure (no provider import): `stacks/monitoring.py`
turns these into resources, tests parse every filter offline (tests/test_monitoring.py) and
`bin/check` (CKV_GPUB_15) finds each alert by its `gpub-alert` user label.

Facts relied on, with their sources:
- `sys.log` with `json` writes a jsonPayload entry under the `workflows.googleapis.com/Workflow`
  resource and the log `projects/<p>/logs/Workflows` (cloud.google.com/workflows/docs/reference/
  stdlib/sys/log): the job workflows log each poll (`gpub: run-state`) and each outcome
  (`gpub: run-outcome`), stacks/workflow_run.py.
- A preempted Spot/preemptible VM writes the system-event audit log entry with
  `protoPayload.methodName="compute.instances.preempted"` (cloud.google.com/compute/docs/
  instances/create-use-spot#detect-preemption).
- A log-based metric is `logging.googleapis.com/user/<name>` (cloud.google.com/logging/docs/
  logs-based-metrics); Pub/Sub's `topic/send_request_count` and `subscription/
  oldest_unacked_message_age` (resources `pubsub_topic`, `pubsub_subscription`) and Compute
  Engine's `instance/uptime` with `metadata.user_labels` (the VM's labels) are listed in
  cloud.google.com/monitoring/api/metrics_gcp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stacks.layout import INTAKE_DEAD_LETTER_TOPIC, INTAKE_TOPIC_PREFIX, SUBSCRIPTION_SUFFIX
from stacks.settings import EnvironmentSettings

ALERT_LABEL = "gpub-alert"  # user label naming each alert kind (the bin/check rule reads it)
ALERT_KINDS = ("failed-runs", "queued-runs", "preemptions", "dead-letters", "oldest-unacked")
RUN_STATE, RUN_OUTCOME = "run-state", "run-outcome"  # jsonPayload.gpub of the workflow's logs
WORKFLOW_LOG = 'resource.type="workflows.googleapis.com/Workflow"'
WAITING_STATES = ("QUEUED", "SCHEDULED")
# GPU-bundled machine families (a2/a3/a4: A100/H100/B200, g2/g4: L4/RTX): their VM hours are
# GPU-VM hours (jobs/machine_families.yaml lists the families).
GPU_FAMILIES_RE = "(a2|a3|a4|g2|g4)-.*"


@dataclass(frozen=True)
class LogMetric:
    name: str
    description: str
    filter: str
    labels: dict[str, str]  # label -> extractor
    value_extractor: str | None = None  # a distribution metric when set
    unit: str = "1"


@dataclass(frozen=True)
class Alert:
    kind: str
    display_name: str
    filter: str  # a Monitoring time-series filter
    threshold: float
    duration_s: int
    aligner: str
    reducer: str | None = None
    group_by: tuple[str, ...] = ()
    documentation: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def metric_type(name: str) -> str:
    return f"logging.googleapis.com/user/{name}"


def log_metrics(settings: EnvironmentSettings) -> list[LogMetric]:
    env = settings.name
    return [
        LogMetric(
            name=f"gpub-{env}-run-outcomes",
            description="Runs of the job workflows that ended, by client, job and state",
            filter=f'{WORKFLOW_LOG} AND jsonPayload.gpub="{RUN_OUTCOME}"',
            labels={"client": "EXTRACT(jsonPayload.client)", "job": "EXTRACT(jsonPayload.job)",
                    "state": "EXTRACT(jsonPayload.state)"},
        ),
        LogMetric(
            name=f"gpub-{env}-run-waiting-seconds",
            description="How long runs have waited in QUEUED or SCHEDULED, at each poll",
            filter=(f'{WORKFLOW_LOG} AND jsonPayload.gpub="{RUN_STATE}" AND '
                    f'(jsonPayload.state="{WAITING_STATES[0]}" OR '
                    f'jsonPayload.state="{WAITING_STATES[1]}")'),
            labels={"client": "EXTRACT(jsonPayload.client)", "job": "EXTRACT(jsonPayload.job)"},
            value_extractor="EXTRACT(jsonPayload.waited_s)",
            unit="s",
        ),
        LogMetric(
            name=f"gpub-{env}-preemptions",
            description="Spot/preemptible VMs Compute Engine preempted",
            filter=('resource.type="gce_instance" AND '
                    'protoPayload.methodName="compute.instances.preempted"'),
            labels={},
        ),
    ]


def alerts(settings: EnvironmentSettings) -> list[Alert]:
    obs = settings.observability
    outcomes, waiting, preempted = (m.name for m in log_metrics(settings))
    ops = "See docs/operations.md, section Alerts."
    return [
        Alert("failed-runs", f"gpu-batch {settings.name}: failed runs per client",
              f'metric.type="{metric_type(outcomes)}" AND metric.label.state="FAILED"',
              threshold=0, duration_s=0, aligner="ALIGN_DELTA", reducer="REDUCE_SUM",
              group_by=("metric.label.client", "metric.label.job"),
              documentation=f"A run of a client's job ended FAILED. {ops}"),
        Alert("queued-runs", f"gpu-batch {settings.name}: runs queued over "
              f"{obs.queued_alert_minutes} min",
              f'metric.type="{metric_type(waiting)}"',
              threshold=obs.queued_alert_minutes * 60, duration_s=0,
              aligner="ALIGN_PERCENTILE_99", reducer="REDUCE_MAX",
              group_by=("metric.label.client", "metric.label.job"),
              documentation=("A run has waited for VMs longer than the threshold (Batch fails "
                             f"a job QUEUED for 2 days). {ops}")),
        Alert("preemptions", f"gpu-batch {settings.name}: over {obs.preemptions_per_hour} "
              "preemptions per hour",
              f'metric.type="{metric_type(preempted)}" AND resource.type="gce_instance"',
              threshold=obs.preemptions_per_hour, duration_s=0, aligner="ALIGN_DELTA",
              reducer="REDUCE_SUM", extra={"alignment_period": "3600s"},
              documentation=f"Spot VMs are being preempted faster than usual. {ops}"),
        Alert("dead-letters", f"gpu-batch {settings.name}: intake events dead-lettered",
              ('metric.type="pubsub.googleapis.com/topic/send_request_count" AND '
               f'resource.type="pubsub_topic" AND '
               f'resource.label.topic_id="{INTAKE_DEAD_LETTER_TOPIC}"'),
              threshold=0, duration_s=0, aligner="ALIGN_DELTA", reducer="REDUCE_SUM",
              documentation=("An upload event could not be delivered to its job workflow and "
                             f"went to {INTAKE_DEAD_LETTER_TOPIC}. {ops}")),
        Alert("oldest-unacked", f"gpu-batch {settings.name}: intake message unacked over "
              f"{obs.oldest_unacked_alert_minutes} min",
              ('metric.type="pubsub.googleapis.com/subscription/oldest_unacked_message_age" '
               'AND resource.type="pubsub_subscription" AND resource.label.subscription_id='
               f'monitoring.regex.full_match("{INTAKE_TOPIC_PREFIX}.*{SUBSCRIPTION_SUFFIX}")'),
              threshold=obs.oldest_unacked_alert_minutes * 60, duration_s=300,
              aligner="ALIGN_MAX", reducer="REDUCE_MAX",
              group_by=("resource.label.subscription_id",),
              documentation=f"An intake subscription is not keeping up. {ops}"),
    ]


def dashboard(settings: EnvironmentSettings) -> dict[str, Any]:
    """The dashboard JSON (cloud.google.com/monitoring/api/ref_v3/rest/v1/projects.dashboards):
    runs, GPU-VM hours and cost per client."""
    outcomes = log_metrics(settings)[0].name

    def chart(title: str, flt: str, aligner: str, group_by: list[str]) -> dict[str, Any]:
        return {"title": title, "xyChart": {"dataSets": [{"timeSeriesQuery": {
            "timeSeriesFilter": {"filter": flt, "aggregation": {
                "alignmentPeriod": "3600s", "perSeriesAligner": aligner,
                "crossSeriesReducer": "REDUCE_SUM", "groupByFields": group_by}}},
            "plotType": "STACKED_BAR"}]}}

    view = settings.observability.views_dataset
    return {
        "displayName": f"gpu-batch {settings.name}: runs, GPU hours and cost per client",
        "gridLayout": {"columns": "2", "widgets": [
            chart("Runs per client (by outcome)", f'metric.type="{metric_type(outcomes)}"',
                  "ALIGN_DELTA", ["metric.label.client", "metric.label.state"]),
            chart("GPU-VM hours per client",
                  ('metric.type="compute.googleapis.com/instance/uptime" AND '
                   'resource.type="gce_instance" AND metadata.system_labels.machine_type='
                   f'monitoring.regex.full_match("{GPU_FAMILIES_RE}")'),
                  "ALIGN_DELTA", ['metadata.user_labels."client"']),
            {"title": "Cost per client", "text": {"format": "MARKDOWN", "content": (
                "Cloud Monitoring has no billing metrics: the cost per client, job and run is "
                f"the BigQuery view `{view}.cost_by_run` (`bin/submit costs --env "
                f"{settings.name}`); budgets per client notify the alert channels. See "
                "docs/costs.md.")}},
        ]},
    }
