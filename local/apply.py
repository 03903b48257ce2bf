"""The local `terraform apply` of what the IAM layer cannot stand in for: the buckets a
synthesized stack declares are created in fake-gcs-server (directly, as the deployer; nothing
a client identity could do: creating a bucket needs storage.buckets.create on the project).

    created = apply_buckets(upstream_endpoint, [Path("cdktf.out/stacks/platform-dev/cdk.tf.json")])
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfjson import expand_groups, facts_from_document, instances


def declared_buckets(doc: Mapping[str, Any]) -> list[str]:
    """Bucket names of every `google_storage_bucket` instance (for_each expanded)."""
    facts = facts_from_document(doc)
    section = doc.get("resource", {}).get("google_storage_bucket", {})
    names: list[str] = []
    for name, conf in (section.items() if isinstance(section, dict) else ()):
        for _, inst in instances(name, conf) if isinstance(conf, dict) else ():
            value = inst.get("name")
            text = facts.resolve_text(value) if isinstance(value, str) else ""
            if text and "${" not in text and text not in names:
                names.append(text)
    return names


def _existing(endpoint: str) -> set[str]:
    with urllib.request.urlopen(f"{endpoint}/storage/v1/b?project=local", timeout=10) as resp:
        return {str(b["name"]) for b in json.load(resp).get("items", [])}


def apply_buckets(endpoint: str, stacks: Sequence[Path] | Iterable[Path]) -> list[str]:
    """Create the buckets of the stacks and their client shards missing from fake-gcs-server
    at `endpoint` (its own address, not the IAM layer's); the names created."""
    wanted: list[str] = []
    for path in expand_groups(stacks):
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        wanted += [b for b in declared_buckets(doc) if b not in wanted]
    have = _existing(endpoint)
    created = []
    for name in wanted:
        if name in have:
            continue
        req = urllib.request.Request(
            f"{endpoint}/storage/v1/b?project=local", data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10):
            created.append(name)
    return created
