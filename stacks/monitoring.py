"""Alerts and a dashboard per environment, as Cloud Monitoring resources.

What is watched lives in `stacks/monitoring_specs.py` (plain data, checked offline); this
module declares it: notification channels from the settings (the environment's alert emails,
each client's contact), the log-based metrics, one alert policy per kind and the dashboard.
The budget-burn alert is each client's budget (stacks/budget.py), which notifies the same
channels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from constructs import Construct

from stacks import monitoring_specs as specs
from stacks.provider import (
    LoggingMetric,
    LoggingMetricMetricDescriptor,
    LoggingMetricMetricDescriptorLabels,
    MonitoringAlertPolicy,
    MonitoringAlertPolicyAlertStrategy,
    MonitoringAlertPolicyConditions,
    MonitoringAlertPolicyConditionsConditionThreshold,
    MonitoringAlertPolicyConditionsConditionThresholdAggregations,
    MonitoringAlertPolicyDocumentation,
    MonitoringDashboard,
    MonitoringNotificationChannel,
    TerraformResource,
)
from stacks.settings import ClientSettings, EnvironmentSettings


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def env_channel_name(settings: EnvironmentSettings, email: str) -> str:
    """The display name of an environment alert channel (client shards find it by this)."""
    return f"gpu-batch {settings.name} alerts ({email})"


def client_channel_name(settings: EnvironmentSettings, client: ClientSettings) -> str:
    return f"gpu-batch {settings.name} client {client.name} ({client.contact})"


class NotificationChannels(Construct):
    """The environment's alert email channels: `env` (channel names, for this stack's alert
    policies) and `env_refs` (the same as Terraform references, for the client budgets' maps).
    Each client's channel is an entry of the client resources (stacks/client_resources.py)."""

    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings) -> None:
        super().__init__(scope, id_)
        self.env: list[str] = []
        self.env_refs: list[str] = []
        for email in settings.observability.alert_emails:
            channel = MonitoringNotificationChannel(
                self, f"ops-{_key(email)}", project=settings.project_id, type="email",
                display_name=env_channel_name(settings, email),
                labels={"email_address": email}, user_labels=settings.all_labels())
            self.env.append(channel.name)  # projects/<p>/notificationChannels/<id>
            self.env_refs.append(f"${{{channel.terraform_resource_type}."
                                 f"{channel.friendly_unique_id}.name}}")


class Monitoring(Construct):
    """The log-based metrics, the alert policies (one per `specs.ALERT_KINDS`) and the
    dashboard of one environment."""

    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings,
                 channels: list[str], depends_on: Sequence[TerraformResource]) -> None:
        super().__init__(scope, id_)
        project = settings.project_id
        self.metrics = {
            m.name: LoggingMetric(
                self, m.name, project=project, name=m.name, description=m.description,
                filter=m.filter, label_extractors=m.labels or None,
                value_extractor=m.value_extractor,
                bucket_options=None,
                metric_descriptor=LoggingMetricMetricDescriptor(
                    metric_kind="DELTA",
                    value_type="DISTRIBUTION" if m.value_extractor else "INT64",
                    unit=m.unit,
                    labels=[LoggingMetricMetricDescriptorLabels(key=k) for k in m.labels],
                ),
                depends_on=list(depends_on),
            )
            for m in specs.log_metrics(settings)
        }
        for m in specs.log_metrics(settings):
            if m.value_extractor:  # a distribution needs buckets: 1 min .. ~3 days
                self.metrics[m.name].add_override(
                    "bucket_options", {"exponential_buckets": {
                        "num_finite_buckets": 24, "growth_factor": 1.6, "scale": 60}})
        self.alerts = {a.kind: self._alert(settings, a, channels)
                       for a in specs.alerts(settings)}
        self.dashboard = MonitoringDashboard(
            self, "dashboard", project=project,
            dashboard_json=json.dumps(specs.dashboard(settings), sort_keys=True),
            depends_on=list(self.metrics.values()))

    def _alert(self, settings: EnvironmentSettings, a: specs.Alert,
               channels: list[str]) -> MonitoringAlertPolicy:
        aggregation = MonitoringAlertPolicyConditionsConditionThresholdAggregations(
            alignment_period=a.extra.get("alignment_period", "300s"),
            per_series_aligner=a.aligner,
            cross_series_reducer=a.reducer,
            group_by_fields=list(a.group_by) or None,
        )
        return MonitoringAlertPolicy(
            self, f"alert-{a.kind}",
            project=settings.project_id,
            display_name=a.display_name,
            combiner="OR",
            conditions=[MonitoringAlertPolicyConditions(
                display_name=a.display_name,
                condition_threshold=MonitoringAlertPolicyConditionsConditionThreshold(
                    filter=a.filter, comparison="COMPARISON_GT", threshold_value=a.threshold,
                    duration=f"{a.duration_s}s", aggregations=[aggregation]),
            )],
            notification_channels=channels or None,
            alert_strategy=MonitoringAlertPolicyAlertStrategy(auto_close="86400s"),
            documentation=MonitoringAlertPolicyDocumentation(
                content=a.documentation, mime_type="text/markdown"),
            user_labels={**settings.all_labels(), specs.ALERT_LABEL: a.kind},
            depends_on=list(self.metrics.values()),
        )
