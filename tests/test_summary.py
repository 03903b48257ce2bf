"""The synth summary counts resource instances the way Terraform plans them."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.summary import resource_counts


def _stack(tmp_path: Path, resource: dict[str, object]) -> Path:
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps({"resource": resource}))
    return path


def test_a_for_each_map_counts_one_instance_per_entry(tmp_path: Path) -> None:
    stack = _stack(tmp_path, {
        "google_service_account": {
            "clients-sa": {"for_each": {"acme": {}, "globex": {}, "initech": {}},
                           "account_id": "client-${each.key}"},
            "workflows": {"account_id": "gpub-workflows"},
        },
        "google_storage_bucket": {"data": {"name": "b"}},
    })
    assert resource_counts(stack) == {"google_service_account": 4, "google_storage_bucket": 1}


def test_count_and_non_literal_for_each(tmp_path: Path) -> None:
    stack = _stack(tmp_path, {
        "google_pubsub_topic": {"t": {"count": 3, "name": "t"}},
        "google_project_iam_member": {"m": {"for_each": "${var.members}", "role": "r"}},
        "google_storage_bucket": {"none": {"for_each": {}, "name": "b"}},
    })
    assert resource_counts(stack) == {"google_pubsub_topic": 3, "google_project_iam_member": 1,
                                      "google_storage_bucket": 0}
