"""Alerts and a dashboard per environment, as Cloud Monitoring resources (issue 24).

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
from stacks.observability_settings import EMAIL_RE
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


class NotificationChannels(Construct):
    """Email channels: `env` for the environment's alert emails, `clients[c]` for each client
    whose `contact` is an email address (its budget mails go there). A client shard stack
    declares its clients' channels only (`env_channels=False`) and reads the platform's."""

    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings, *,
                 env_channels: bool = True) -> None:
        super().__init__(scope, id_)
        self.settings = settings
        self.env: list[str] = []
        self.clients: dict[str, str] = {}
        for email in settings.observability.alert_emails if env_channels else ():
            self.env.append(self._email(settings, f"ops-{_key(email)}", email,
                                        f"gpu-batch {settings.name} alerts ({email})"))

    def add_client(self, client: ClientSettings) -> list[str]:
        """The client's channel (none without an email contact), as a list of channel names."""
        settings = self.settings
        if client.contact and EMAIL_RE.match(client.contact):
            self.clients[client.name] = self._email(
                settings, settings.client_sa_id(client.name), client.contact,
                f"gpu-batch {settings.name} client {client.name} ({client.contact})")
            return [self.clients[client.name]]
        return []

    def _email(self, settings: EnvironmentSettings, id_: str, email: str, name: str) -> str:
        channel = MonitoringNotificationChannel(
            self, id_, project=settings.project_id, type="email", display_name=name,
            labels={"email_address": email}, user_labels=settings.all_labels())
        name_ref: str = channel.name  # projects/<p>/notificationChannels/<id>
        return name_ref


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
