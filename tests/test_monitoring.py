"""The environment's alerts, log-based metrics and dashboard, checked offline: every filter
parses (stacks/filter_lang.py), the log filters match recorded log entries of the events they
count and nothing else, the label extractors find their fields, the alerts read metrics that
exist with labels those metrics have, and the prod and dev stacks synthesize all of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks import filter_lang as fl
from stacks import monitoring_specs as specs
from stacks.environments import dev, prod
from stacks.workflow_params import WorkflowParams
from stacks.workflow_report import report_steps
from stacks.workflow_run import run_steps

ENV = prod()
METRICS = {m.name: m for m in specs.log_metrics(ENV)}
# GCP metrics the alerts and dashboard read (cloud.google.com/monitoring/api/metrics_gcp),
# with the resource type each is written against.
GCP_METRICS = {
    "pubsub.googleapis.com/topic/send_request_count": "pubsub_topic",
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": "pubsub_subscription",
    "compute.googleapis.com/instance/uptime": "gce_instance",
}


def _workflow_payloads() -> dict[str, dict[str, Any]]:
    """The `sys.log` payloads the job workflow writes, with sample values for its variables
    (the shape Workflows stores as jsonPayload: cloud.google.com/workflows/docs/reference/
    stdlib/sys/log)."""
    p = WorkflowParams(job="embed", env=ENV.name, project_id=ENV.project_id,
                       job_region=ENV.region, job_json={},
                       files_per_task=None, max_parallelism=4)
    values: dict[str, Any] = {"${client}": "acme", "${job_id}": "embed-20261202t101500-7c1d2e3f",
              "${state}": "FAILED", "${batch}": "b1", "${reason}": "task 0 exited 3",
              "${sys.now() - created_at}": 5400.0}
    out: dict[str, dict[str, Any]] = {}
    for step in [*run_steps(p), *report_steps(p)]:
        ((_, body),) = step.items()
        if body.get("call") == "sys.log":
            payload = {k: values.get(v, v) for k, v in body["args"]["json"].items()}
            out[str(payload["gpub"])] = payload
    return out


def _workflow_entry(payload: dict[str, Any]) -> dict[str, Any]:
    return {"logName": f"projects/{ENV.project_id}/logs/Workflows", "severity": "INFO",
            "resource": {"type": "workflows.googleapis.com/Workflow",
                         "labels": {"workflow_id": "batch-embed", "location": ENV.region}},
            "jsonPayload": payload}


PREEMPTED = {  # a Compute Engine system-event audit entry (recorded shape)
    "logName": f"projects/{ENV.project_id}/logs/cloudaudit.googleapis.com%2Fsystem_event",
    "resource": {"type": "gce_instance", "labels": {"instance_id": "1", "zone": "europe-west4-a"}},
    "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                     "serviceName": "compute.googleapis.com",
                     "methodName": "compute.instances.preempted",
                     "resourceName": "projects/example-ml-prod/zones/europe-west4-a/instances/x"},
}


def test_the_workflow_writes_both_entries_the_metrics_count() -> None:
    assert set(_workflow_payloads()) == {specs.RUN_STATE, specs.RUN_OUTCOME}


@pytest.mark.parametrize(("metric", "entry_kind", "state", "counted"), [
    ("run-outcomes", specs.RUN_OUTCOME, "FAILED", True),
    ("run-outcomes", specs.RUN_STATE, "FAILED", False),
    ("run-waiting-seconds", specs.RUN_STATE, "QUEUED", True),
    ("run-waiting-seconds", specs.RUN_STATE, "SCHEDULED", True),
    ("run-waiting-seconds", specs.RUN_STATE, "RUNNING", False),
    ("run-waiting-seconds", specs.RUN_OUTCOME, "QUEUED", False),
])
def test_log_metric_filters_count_their_workflow_entries(
        metric: str, entry_kind: str, state: str, counted: bool) -> None:
    m = METRICS[f"gpub-{ENV.name}-{metric}"]
    entry = _workflow_entry({**_workflow_payloads()[entry_kind], "state": state})
    assert fl.matches(fl.parse(m.filter), entry) is counted
    if counted:  # every label and the value come out of the entry
        for extractor in [*m.labels.values(), *([m.value_extractor] if m.value_extractor else [])]:
            assert fl.lookup(entry, fl.extractor_field(extractor)) is not None, extractor
        assert fl.lookup(entry, "jsonPayload.client") == "acme"


def test_the_preemption_metric_counts_preemptions_only() -> None:
    flt = fl.parse(METRICS[f"gpub-{ENV.name}-preemptions"].filter)
    assert fl.matches(flt, PREEMPTED)
    other = json.loads(json.dumps(PREEMPTED))
    other["protoPayload"]["methodName"] = "v1.compute.instances.insert"
    assert not fl.matches(flt, other)
    assert not fl.matches(flt, _workflow_entry(_workflow_payloads()[specs.RUN_OUTCOME]))


def _metric_of(flt: str) -> tuple[str, dict[str, Any]]:
    types = [c.value for c in fl.comparisons(fl.parse(flt)) if c.field == "metric.type"]
    assert len(types) == 1, flt
    return types[0], {c.field: c.value for c in fl.comparisons(fl.parse(flt))}


def _check_monitoring_filter(flt: str, group_by: tuple[str, ...] | list[str]) -> None:
    metric, fields = _metric_of(flt)
    if metric.startswith("logging.googleapis.com/user/"):
        m = METRICS[metric.rsplit("/", 1)[1]]  # a metric this stack declares
        used = [f for f in [*fields, *group_by] if f.startswith("metric.label.")]
        assert {f.split(".", 2)[2] for f in used} <= set(m.labels), (flt, group_by)
    else:
        assert metric in GCP_METRICS, metric
        assert fields.get("resource.type") == GCP_METRICS[metric], flt


@pytest.mark.parametrize("alert", specs.alerts(ENV), ids=lambda a: a.kind)
def test_alert_filters_parse_and_read_existing_metrics_and_labels(alert: specs.Alert) -> None:
    _check_monitoring_filter(alert.filter, alert.group_by)
    assert alert.aligner.startswith("ALIGN_") and (alert.reducer or "REDUCE_").startswith(
        "REDUCE_")


def test_every_alert_kind_is_declared_once() -> None:
    assert [a.kind for a in specs.alerts(ENV)] == list(specs.ALERT_KINDS)


def test_dashboard_filters_parse_and_cover_runs_gpu_hours_and_cost() -> None:
    board = specs.dashboard(ENV)
    titles = [w["title"] for w in board["gridLayout"]["widgets"]]
    assert any("Runs per client" in t for t in titles)
    assert any("GPU" in t for t in titles) and any("Cost" in t for t in titles)
    for w in board["gridLayout"]["widgets"]:
        for ds in w.get("xyChart", {}).get("dataSets", []):
            f = ds["timeSeriesQuery"]["timeSeriesFilter"]
            _check_monitoring_filter(f["filter"], f["aggregation"]["groupByFields"])


@pytest.mark.parametrize("bad", ['metric.type="x" AND', 'metric.type=', '(a="b"',
                                 'a="b" OR OR c="d"', 'AND="x"'])
def test_the_parser_refuses_malformed_filters(bad: str) -> None:
    with pytest.raises(fl.FilterSyntaxError):
        fl.parse(bad)


def test_not_binds_tighter_than_and_and_and_than_or() -> None:
    tree = fl.parse('a="1" OR NOT b="2" AND c="3"')
    assert isinstance(tree, fl.BoolOp) and tree.op == "OR"
    assert tree.args[1].op == "AND" and tree.args[1].args[0].op == "NOT"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_environment_synthesizes_alerts_dashboard_and_channels(
        stacks_json: dict[str, dict[str, Any]], env: str) -> None:
    res = stacks_json[env]["resource"]
    kinds = {a["user_labels"][specs.ALERT_LABEL]
             for a in res["google_monitoring_alert_policy"].values()}
    assert kinds == set(specs.ALERT_KINDS)
    assert len(res["google_monitoring_dashboard"]) == 1
    assert {m["name"] for m in res["google_logging_metric"].values()} == {
        m.name for m in specs.log_metrics(dev() if env == "dev" else ENV)}
    emails = {c["labels"]["email_address"]
              for c in res["google_monitoring_notification_channel"].values()}
    assert "ml-platform@example.com" in emails
    for a in res["google_monitoring_alert_policy"].values():
        assert a["notification_channels"], a["display_name"]
