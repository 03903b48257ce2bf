"""The Pub/Sub message a GCS notification configuration publishes for an object event.

Shape from https://cloud.google.com/storage/docs/pubsub-notifications (Attributes and Payload):
attributes `notificationConfig` (`projects/_/buckets/B/notificationConfigs/ID`), `eventType`
(`OBJECT_FINALIZE`, `OBJECT_DELETE`, ...), `payloadFormat`, `bucketId`, `objectId`,
`objectGeneration`, `eventTime` (RFC 3339), plus the configuration's custom attributes; the
data is the object's JSON API resource for `JSON_API_V1`, empty for `NONE`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.pubsub_stack import Notification, declared_notifications
from local.topology import StackWatch

FINALIZE, DELETE = "OBJECT_FINALIZE", "OBJECT_DELETE"


def notification_message(
    n: Notification, config_id: int, event_type: str, obj: Mapping[str, Any],
    when: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """(data, attributes) for one event on one object."""
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    attributes = {
        **dict(n.custom_attributes),
        "notificationConfig": f"projects/_/buckets/{n.bucket}/notificationConfigs/{config_id}",
        "eventType": event_type,
        "payloadFormat": n.payload_format,
        "bucketId": n.bucket,
        "objectId": str(obj.get("name", "")),
        "objectGeneration": str(obj.get("generation", "")),
        "eventTime": stamp,
    }
    data = b"" if n.payload_format == "NONE" else json.dumps(dict(obj)).encode()
    return data, attributes


def notifications_key(notifications: Sequence[Notification]) -> str:
    """A short digest of what the stack's notification configurations publish (servers.json
    records it, so a changed set is noticed without comparing whole stack files)."""
    text = json.dumps([dataclasses.astuple(n) for n in notifications], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LiveNotifications:
    """The stacks' GCS notification configurations, re-read when a stack file changes
    (`local.topology.StackWatch`): `current()` on each request gives what the stack declares
    now, so a bucket notification added to a running local cloud publishes its first event."""

    def __init__(self, stack_files: Sequence[Path]) -> None:
        self.watch = StackWatch(stack_files)
        self._current: list[Notification] = []

    def current(self) -> list[Notification]:
        docs = self.watch.changed()
        if docs is not None:
            self._current = declared_notifications(docs)
        return self._current
