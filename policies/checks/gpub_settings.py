"""Settings as data: CKV_GPUB_SET_1 (no Terraform interpolation but the platform's own),
CKV_GPUB_SET_2 (labels follow Google's rules). Sources in docs/policies.md.

Strings from settings (labels, contacts, principals, time zones, descriptions) reach the
stack as literals, mostly as `for_each` map values, which Terraform reads as templates: a
`${file("...")}` there is evaluated at plan time. The platform itself writes only references
to declared resources (`${google_x.name.attr}`, `${each.value.k}`) and the quota expression
(tonumber/contains/max/lookup over a data source). Anything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import GpubCheck
from policies.fresh_project import interpolations
from stacks.validation import LABEL_KEY_RE, LABEL_VALUE_RE, LABELS_MAX
from tfjson import value

# The functions the platform's own expressions call (stacks/quotas.py).
ALLOWED_FUNCTIONS = frozenset({"tonumber", "contains", "max", "lookup"})
KEYWORDS = frozenset({"for", "in", "if", "true", "false", "null"})
# A map value may only be a reference: `${google_x.name["key"].attr}` or `${data.x.y.attr}`.
REFERENCE_RE = re.compile(
    r'^(data\.)?[a-z][a-z0-9_]*\.[A-Za-z0-9_-]+(\["[^"]*"\])?(\.[A-Za-z_][A-Za-z0-9_]*'
    r"(\[\d+\])?)+$")
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
TOKEN_RE = re.compile(r"(?<![\w.-])([A-Za-z_][A-Za-z0-9_]*)(\s*\()?")
FOR_VARS_RE = re.compile(r"\bfor\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b")


def expression_problem(expression: str, roots: frozenset[str]) -> str | None:
    """Why `expression` is not the platform's own (None: it is)."""
    bare = STRING_RE.sub('""', expression)
    bound = {v for m in FOR_VARS_RE.finditer(bare) for v in m.groups() if v}
    for m in TOKEN_RE.finditer(bare):
        name, call = m.group(1), m.group(2)
        if call:
            if name not in ALLOWED_FUNCTIONS:
                return f"calls {name}()"
        elif name not in roots and name not in bound and name not in KEYWORDS:
            return f"reads {name}"
    return None


def _strings(node: Any, in_map: bool = False) -> list[tuple[str, bool]]:
    if isinstance(node, str):
        return [(node, in_map)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item, in_map)]
    if isinstance(node, Mapping):
        return [s for k, v in node.items() if k != "//"
                for s in _strings(v, in_map or k == "for_each")]
    return []


def interpolation_findings(body: Mapping[str, Any], roots: frozenset[str]) -> list[str]:
    out = []
    for text, in_map in _strings(body):
        for expression in interpolations(text):
            if in_map and not REFERENCE_RE.match(expression.strip()):
                out.append(f"for_each value holds ${{{expression}}}: map values are "
                           "templates; settings must be data (escape `$${`)")
            elif not in_map and (problem := expression_problem(expression, roots)):
                out.append(f"${{{expression}}} {problem}: not an expression the platform "
                           "writes")
    return out


class NoSettingsInterpolation(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="No Terraform interpolation in values from settings (only the "
                         "platform's own references and expressions)", id="CKV_GPUB_SET_1",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_*", "time_sleep"])

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        _, rtype, name = self.entity_path.rsplit(":", 2)
        doc = self.facts.document
        body = ((doc.get("resource") or {}).get(rtype) or {}).get(name)
        if not isinstance(body, Mapping):
            return CheckResult.UNKNOWN
        roots = frozenset({*(doc.get("resource") or {}), "data", "each", "local"})
        found = interpolation_findings(body, roots)
        for message in found[:5]:
            self.fail(message)
        return CheckResult.FAILED if found else CheckResult.PASSED

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:  # pragma: no cover - unused
        return CheckResult.UNKNOWN


def label_findings(labels: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    # checkov marks parsed blocks with __startline__/__endline__: not labels.
    # and wraps each scalar in a one-element list.
    labels = {k: v[0] if isinstance(v, list) and len(v) == 1 else v
              for k, v in labels.items() if not str(k).startswith("__")}
    out = []
    for key, val in labels.items():
        if not LABEL_KEY_RE.match(str(key)):
            out.append(f"label key {key!r} breaks Google's rules (1-63 lowercase letters, "
                       "digits, '_', '-', starting with a letter)")
        if not isinstance(val, str) or not LABEL_VALUE_RE.match(val):
            out.append(f"label {key}={val!r} breaks Google's rules (0-63 lowercase letters, "
                       "digits, '_', '-')")
    total = len({*labels, *defaults})
    if total > LABELS_MAX:
        out.append(f"{total} labels with the provider's default_labels; Google allows "
                   f"{LABELS_MAX}")
    return out


class LabelsFollowGoogleRules(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Labels follow Google's rules (keys, values, at most 64)",
                         id="CKV_GPUB_SET_2", categories=[CheckCategories.CONVENTION],
                         supported_resources=["google_*"])

    # `labels` of a notification channel is the channel's configuration (`email_address`,
    # ...; registry.terraform.io/providers/hashicorp/google/latest/docs/resources/
    # monitoring_notification_channel), not resource labels: user_labels are those.
    CONFIG_LABELS = frozenset({"google_monitoring_notification_channel"})

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        rtype = str(getattr(self, "entity_path", "")).rsplit(":", 2)[-2:-1]
        key = "user_labels" if set(rtype) & self.CONFIG_LABELS else "labels"
        labels = value(conf, key)
        if not isinstance(labels, Mapping):
            return CheckResult.UNKNOWN
        providers = self.facts.document.get("provider", {}).get("google", [{}])
        first = providers[0] if isinstance(providers, list) and providers else {}
        defaults = first.get("default_labels") or {} if isinstance(first, Mapping) else {}
        found = label_findings(labels, defaults)
        for message in found:
            self.fail(message)
        return CheckResult.FAILED if found else CheckResult.PASSED


check_set_1 = NoSettingsInterpolation()
check_set_2 = LabelsFollowGoogleRules()
