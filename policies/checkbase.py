"""Base class of the CKV_GPUB rules: a checkov resource check that knows its stack's facts and
takes its title and severity from the rule registry (policies/terraform_rules.yaml)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from checkov.common.bridgecrew.severities import Severities
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.terraform_rules import REGISTRY, rules
from tfjson import (
    StackFacts,
    facts_for_scanned_file,
    facts_from_document,
    flat_strings,
    for_each_entries,
    instances,
    value,
)

# Every IAM grant resource of the google provider, present and future.
IAM_GRANTS = ("google_*_iam_member", "google_*_iam_binding", "google_*_iam_policy")
GUIDELINE = "docs/policies.md"
# Every GpubCheck instantiated in this process, by id (checkov instantiates each rule file's
# checks when it loads policies/checks): what tests compare with the registry.
LOADED: dict[str, GpubCheck] = {}
# (id of a parsed stack file, type, name) -> (the document, [(key, instance)]): a for_each
# resource is expanded once per file, not once per rule.
_EXPANDED: dict[tuple[int, str, str], tuple[Any, list[tuple[str, dict[str, Any]]]]] = {}


def expanded(facts: StackFacts, rtype: str, name: str) -> list[tuple[str, dict[str, Any]]] | None:
    """The instances of `rtype.name` from the stack file itself (raw JSON, `each.*`
    resolved), keyed by their `for_each` key; None when the file has no such map."""
    doc = facts.document
    cache_key = (id(doc), rtype, name)
    hit = _EXPANDED.get(cache_key)
    if hit is not None and hit[0] is doc:
        return hit[1]
    raw = (doc.get("resource") or {}).get(rtype, {}).get(name) if doc else None
    if not isinstance(raw, dict) or not isinstance(raw.get("for_each"), dict):
        return None
    prefix = len(name) + 2  # `name["key"]`
    entries = [(address[prefix:-2], body) for address, body in instances(name, raw)]
    _EXPANDED[cache_key] = (doc, entries)
    return entries


# ---- the whole stack, for rules that count or cross-reference ---------------------------
_INDEX: dict[int, tuple[Any, dict[str, list[tuple[str, dict[str, Any]]]]]] = {}


def by_type(facts: StackFacts) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """type -> [(address name, body)] of every instance in the file, expanded once per file."""
    doc = facts.document
    hit = _INDEX.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    index: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for rtype, named in (doc.get("resource") or {}).items():
        if not isinstance(named, dict):
            continue
        items = index[rtype] = []
        for name, conf in named.items():
            if not isinstance(conf, dict):
                continue
            entries = expanded(facts, rtype, name)  # shared with GpubCheck: once per file
            if entries is None:
                items.extend(instances(name, conf))
            else:
                items.extend((f'{name}["{key}"]', body) for key, body in entries)
    _INDEX[id(doc)] = (doc, index)
    return index


# ---- the whole environment: a platform stack and its client shards ------------------------
_MEMBERS: dict[int, tuple[Any, StackFacts]] = {}


def group_facts(facts: StackFacts) -> list[StackFacts]:
    """Facts of every stack file of `facts`'s group (tfjson.groups), this file's own among
    them: what a project-wide count runs over (each file counted once, whichever is asked)."""
    out = []
    for doc in facts.group_documents:
        if doc is facts.document:
            out.append(facts)
            continue
        hit = _MEMBERS.get(id(doc))
        if hit is None or hit[0] is not doc:
            hit = _MEMBERS[id(doc)] = (doc, facts_from_document(doc))
        out.append(hit[1])
    return out


def declared_quotas(facts: StackFacts) -> dict[str, Any]:
    """The quotas the environment declares (`gpub_declared_quotas`, a local of its platform
    stack: a client shard's own file has none)."""
    for doc in facts.group_documents:
        declared = (doc.get("locals") or {}).get("gpub_declared_quotas")
        if isinstance(declared, dict):
            return declared
    return {}


def group_instances(facts: StackFacts, rtype_glob: str
                    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """`raw_instances` over every file of the group."""
    for member in group_facts(facts):
        yield from raw_instances(member, rtype_glob)


def raw_instances(facts: StackFacts, rtype_glob: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, address name, body) of every instance of matching types in the whole file."""
    suffix = rtype_glob.lstrip("*")
    for rtype, items in by_type(facts).items():
        if rtype == rtype_glob or (rtype_glob.startswith("*") and rtype.endswith(suffix)):
            for address, body in items:
                yield rtype, address, body


def condition_of(conf: dict[str, Any]) -> str:
    return str(value(conf, "condition", "expression", default="") or "")


def depends_on(conf: dict[str, Any]) -> set[str]:
    return set(flat_strings(conf.get("depends_on")))


class GpubCheck(BaseResourceCheck):
    """A rule of our pack; `fail()` records why, so the console and SARIF say what to fix."""

    def __init__(
        self,
        id: str,  # checkov's keyword
        categories: Iterable[CheckCategories],
        supported_resources: Iterable[str],
        name: str | None = None,
    ) -> None:
        """`name` defaults to the registry's title; a rule missing from the registry still
        loads (with its own `name`) and fails tests/test_policies_rules.py until declared."""
        rule = rules().get(id)
        title = name or (rule.title if rule else None)
        if title is None:
            raise KeyError(f"{id} is not declared in {REGISTRY} (one line: id, severity, "
                           "title, checks, why, source)")
        super().__init__(
            name=title,
            id=id,
            categories=categories,
            supported_resources=supported_resources,
            guideline=f"{GUIDELINE}#{id.lower().replace('_', '-')}",
        )
        if rule is not None:
            self.severity = Severities[rule.severity]  # type: ignore[assignment]
        LOADED[id] = self

    @property
    def facts(self) -> StackFacts:
        # checkov sets entity_path = "<scanned_file>:<type>:<name>" before scanning.
        scanned_file = self.entity_path.rsplit(":", 2)[0]
        return facts_for_scanned_file(scanned_file)

    def fail(self, message: str) -> CheckResult:
        self.details.append(message)
        return CheckResult.FAILED

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        """The rule on the resource, or on every entry of its `for_each` map.

        A `for_each` resource fails when any entry fails (the details name the key), passes
        when some entry passes and none fails, and fails when its map cannot be read.
        """
        if "for_each" not in conf:
            return self.scan_entry(conf)
        _, rtype, name = self.entity_path.rsplit(":", 2)
        entries = expanded(self.facts, rtype, name)
        if entries is None:  # not in the file's own JSON (a hand-made conf): expand it here
            entries = for_each_entries(conf)
        if entries is None:
            return self.scan_entry(conf)
        if not entries:
            return self.fail("for_each is not a literal map; its entries cannot be checked")
        results = []
        by_message: dict[str, list[str]] = {}
        for key, entry in entries:
            seen = len(self.details)
            result = self.scan_entry(entry)
            for message in self.details[seen:]:
                by_message.setdefault(message, []).append(key)
            del self.details[seen:]
            results.append(result)
        # One line per distinct finding, naming its keys (a stack-wide limit fails every
        # entry the same way: say it once).
        for message, keys in by_message.items():
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            self.details.append(f"[{shown}] {message}")
        if CheckResult.FAILED in results:
            return CheckResult.FAILED
        if CheckResult.PASSED in results:
            return CheckResult.PASSED
        return CheckResult.UNKNOWN

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        """The rule on one resource (or one `for_each` instance of it)."""
        raise NotImplementedError
