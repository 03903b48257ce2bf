"""Reading synthesized Terraform JSON the way Terraform would: for_each resources expanded.

A `for_each` resource is one JSON object with a literal map; Terraform makes one instance per
key (`name["key"]`), with `each.key` and `each.value.x` resolved and the map's string values
read as templates (`$${` -> `${`). Tests look at instances, so a property checked on
"every grant" is checked on every map entry, not on the `${each.value.role}` placeholder.

The expansion is `tfjson.instances`, the one for_each evaluator the policy checks
use too (docs/contracts.md); this module only shapes its answer for the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from tfjson import EACH_RE
from tfjson import instances as tf_instances
from tfjson.iam import PolicyBinding, policy_bindings, policy_data

Stack = dict[str, Any]


def unescape(text: str) -> str:
    """A Terraform template without interpolations: `$${` -> `${`, `%%{` -> `%{`."""
    return text.replace("$${", "${").replace("%%{", "%{")


def path_of(resource: dict[str, Any]) -> str:
    return str(resource["//"]["metadata"]["path"])


def _unresolved(body: Any) -> list[str]:
    if isinstance(body, str):
        return [body] if EACH_RE.search(body) or "each." in body else []
    if isinstance(body, list):
        return [s for b in body for s in _unresolved(b)]
    if isinstance(body, dict):
        return [s for k, v in body.items() if k != "//" for s in _unresolved(v)]
    return []


def instances(
    items: dict[str, Any], local: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """{address name: body} of one resource type; `name["key"]` per for_each entry, whose
    construct path becomes `path["key"]`. (`local` is accepted for old callers: no resource
    reads a Terraform local any more.)"""
    out: dict[str, dict[str, Any]] = {}
    for name, body in items.items():
        if "for_each" not in body:
            out[name] = body
            continue
        assert isinstance(body["for_each"], dict), f"{name}: for_each is not a literal map"
        for address, instance in tf_instances(name, body):
            key = json.loads(address[len(name) + 1 : -1])
            assert not _unresolved(instance), f"unresolved for_each reference in {address}"
            instance["//"] = {"metadata": {"path": f"{path_of(body)}[{json.dumps(key)}]"}}
            out[f"{name}[{json.dumps(key)}]"] = instance
    return out


def all_resources(stack: Stack) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, address name, body) of every resource instance."""
    for rtype, items in stack.get("resource", {}).items():
        for name, body in instances(items).items():
            yield rtype, name, body


def resources(stack: Stack, rtype: str) -> dict[str, dict[str, Any]]:
    return instances(stack.get("resource", {}).get(rtype, {}))


def member_grants(stack: Stack, target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(address name, grant) of every grant on resources of type `target`
    ("google_storage_bucket"): each `<target>_iam_member` instance as it is, and each member
    of each binding of a `<target>_iam_policy` instance (its `policy_data`, conditions
    included, read by tfjson.iam) as the member grant it stands for. Tests that ask who may
    do what read both forms alike."""
    yield from resources(stack, f"{target}_iam_member").items()
    for address, body in resources(stack, f"{target}_iam_policy").items():
        rest = {k: v for k, v in body.items() if k != "policy_data"}
        bindings = policy_bindings(body["policy_data"])
        assert bindings is not None, f"{address}: policy_data is not a policy"
        for b in bindings:
            cond = {} if b.condition is None else {"condition": {
                "title": b.title, "description": b.description, "expression": b.condition}}
            for member in b.members:
                yield address, {**rest, "role": b.role, "member": member, **cond}


def edit_policies(doc: Stack, rtype: str, name: str,
                  edit: Callable[[str, list[PolicyBinding]], list[PolicyBinding]]) -> None:
    """Rewrite the `policy_data` of every entry of the `for_each` policy `rtype.name` in
    `doc` (in place): `edit(key, bindings)` returns the entry's new bindings (a copy of a
    stack with a grant taken away or changed, as a defect would synthesize it)."""
    for key, entry in doc["resource"][rtype][name]["for_each"].items():
        bindings = policy_bindings(entry["policy_data"])
        assert bindings is not None, f"{rtype}.{name}[{key!r}]: policy_data is not a policy"
        entry["policy_data"] = policy_data(edit(key, bindings))
