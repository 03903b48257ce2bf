"""The `policy_data` of authoritative `google_*_iam_policy` resources: written by the stacks and
read by every reader of the synthesized IAM (the checks, the local cloud, the tests), one rule.

A `policy_data` is a Terraform string template whose value is the policy's JSON
(`{"bindings": [{"role", "members", "condition"?}]}`, no `version` and no `etag`): the google
provider sets version 3 itself on every setIamPolicy (`tpgiamresource.setIamPolicyData`:
`policy.Version = IamPolicyVersion`, 3), and reads the policy back without a version
(`marshalIamPolicy`), so a `"version"` in `policy_data` would differ from the state on every
plan (`compareIamPolicies` compares versions). Members may be `${...}` references (a client's
account email); inside such an interpolation the quotes of a `for_each` key stay raw
(`${google_service_account.clients-sa["acme"].email}`, as Terraform's template parser needs
them), everywhere else the text is plain JSON. Terraform evaluates the interpolations and gets
JSON; a reader escapes the quotes inside interpolations back and parses it with `json`, the
references kept as text for `StackFacts.resolve_text`. Chosen over `jsonencode(...)`: an
HCL expression would need an HCL evaluator in every reader (checkov, `tfjson`); a string
template needs none. Terraform parses a JSON string as a template where only `$${` and `%%{`
are escapes (hclsyntax `ParseTemplate`: bare string literals), so the JSON's own backslashes
(the quotes of a CEL condition) reach the provider as written.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

INTERPOLATION_RE = re.compile(r"(?<!\$)\$\{[^{}]*\}")


class PolicyBinding(NamedTuple):
    """One binding: a role, its members (as written, references unresolved), a condition."""

    role: str
    members: list[str]
    condition: str | None = None  # the CEL expression
    title: str = ""
    description: str = ""


def policy_data(bindings: Iterable[PolicyBinding]) -> str:
    """The `policy_data` template of `bindings`: one binding per (role, condition), in their
    first order, members in theirs (the provider compares policies as sets of members per
    role and condition, `tpgiamresource.compareIamPolicies`, so order never shows in a plan;
    kept, a shard's literal names and the platform's references give the same text)."""
    merged: dict[tuple[str, str | None, str, str], dict[str, None]] = {}
    for b in bindings:
        fixed = (b.role, b.condition or "", b.title, b.description)
        if any("${" in t or "%{" in t for t in fixed) or any("%{" in m for m in b.members):
            raise ValueError(f"{b.role}: only members may hold ${{...}} references")
        merged.setdefault((b.role, b.condition, b.title, b.description), {}).update(
            dict.fromkeys(b.members))
    out = []
    for (role, condition, title, description), members in merged.items():
        entry: dict[str, Any] = {"role": role, "members": list(members)}
        if condition is not None:
            entry["condition"] = {"title": title, "description": description,
                                  "expression": condition}
        out.append(entry)
    text = json.dumps({"bindings": out}, separators=(",", ":"))
    return INTERPOLATION_RE.sub(lambda m: m.group(0).replace('\\"', '"'), text)


def policy_document(text: str) -> dict[str, Any] | None:
    """The policy a `policy_data` template stands for (references as text); None: not JSON."""
    escaped = INTERPOLATION_RE.sub(lambda m: m.group(0).replace('"', '\\"'), text)
    try:
        doc = json.loads(escaped)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def read_bindings(raw: Any) -> list[PolicyBinding]:
    """Bindings of a parsed policy's `bindings` (or of `binding` blocks of a
    `data.google_iam_policy`), conditions included."""
    out = []
    for b in raw if isinstance(raw, list) else [raw]:
        if not isinstance(b, Mapping):
            continue
        cond = b.get("condition")
        cond = cond[0] if isinstance(cond, list) and cond else cond
        members = b.get("members")
        out.append(PolicyBinding(
            str(b.get("role", "")),
            [str(m) for m in (members if isinstance(members, list) else [members] if members
                              else [])],
            str(cond.get("expression") or "") or None if isinstance(cond, Mapping) else None,
            str(cond.get("title", "")) if isinstance(cond, Mapping) else "",
            str(cond.get("description", "")) if isinstance(cond, Mapping) else ""))
    return out


def policy_bindings(text: str) -> list[PolicyBinding] | None:
    """The bindings of a `policy_data` template; None when it is not a readable policy."""
    found = _parsed(text)
    return None if found is None else list(found)


@functools.lru_cache(maxsize=8192)
def _parsed(text: str) -> tuple[PolicyBinding, ...] | None:
    # Read once per text: every rule of bin/check asks for the same policies.
    doc = policy_document(text)
    return None if doc is None else tuple(read_bindings(doc.get("bindings", [])))
