"""Reading synthesized Terraform JSON the way Terraform would: for_each resources expanded.

A `for_each` resource is one JSON object with a literal map; Terraform makes one instance per
key (`name["key"]`), with `each.key` and `each.value.x` resolved and the map's string values
read as templates (`$${` -> `${`). Tests look at instances, so a property checked on
"every grant" is checked on every map entry, not on the `${each.value.role}` placeholder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

Stack = dict[str, Any]
EACH_RE = re.compile(r"\$\{each\.(key|value)((?:\.[a-z_]+)*)\}")
# `${replace(local.L[each.value.k], "placeholder", each.value.c)}`: the workflow sources.
REPLACE_RE = re.compile(
    r'\$\{replace\(local\.([A-Za-z0-9_-]+)\[each\.value\.([a-z_]+)\], ("[^"]*"), '
    r"each\.value\.([a-z_]+)\)\}"
)


def unescape(text: str) -> str:
    """A Terraform template without interpolations: `$${` -> `${`, `%%{` -> `%{`."""
    return text.replace("$${", "${").replace("%%{", "%{")


def path_of(resource: dict[str, Any]) -> str:
    return str(resource["//"]["metadata"]["path"])


def _each(body: Any, key: str, entry: dict[str, Any], local: dict[str, Any]) -> Any:
    def value(kind: str, path: str) -> Any:
        if kind == "key":
            return key
        cur: Any = entry
        for part in filter(None, path.split(".")):
            cur = cur[part]
        return unescape(cur) if isinstance(cur, str) else cur

    if isinstance(body, str):
        call = REPLACE_RE.fullmatch(body)
        if call:
            name, template_field, literal, substitute_field = call.groups()
            template = unescape(local[name][entry[template_field]])
            return template.replace(json.loads(literal), entry[substitute_field])
        body = body.replace("[each.key]", json.dumps([key]))
        whole = EACH_RE.fullmatch(body)
        if whole:
            return value(whole.group(1), whole.group(2))
        assert "each." not in EACH_RE.sub("", body), f"unresolved for_each reference in {body!r}"
        return EACH_RE.sub(lambda m: str(value(m.group(1), m.group(2))), body)
    if isinstance(body, list):
        return [_each(b, key, entry, local) for b in body]
    if isinstance(body, dict):
        return {k: _each(v, key, entry, local) for k, v in body.items()}
    return body


def instances(
    items: dict[str, Any], local: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """{address name: body} of one resource type; `name["key"]` per for_each entry, whose
    construct path becomes `path["key"]`; `local` is the stack's `locals`."""
    out: dict[str, dict[str, Any]] = {}
    for name, body in items.items():
        if "for_each" not in body:
            out[name] = body
            continue
        assert isinstance(body["for_each"], dict), f"{name}: for_each is not a literal map"
        rest = {k: v for k, v in body.items() if k not in ("for_each", "//")}
        for key, entry in body["for_each"].items():
            instance = _each(rest, key, entry, local or {})
            instance["//"] = {"metadata": {"path": f"{path_of(body)}[{json.dumps(key)}]"}}
            out[f"{name}[{json.dumps(key)}]"] = instance
    return out


def all_resources(stack: Stack) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, address name, body) of every resource instance."""
    for rtype, items in stack.get("resource", {}).items():
        for name, body in instances(items, stack.get("locals", {})).items():
            yield rtype, name, body


def resources(stack: Stack, rtype: str) -> dict[str, dict[str, Any]]:
    return instances(stack.get("resource", {}).get(rtype, {}), stack.get("locals", {}))
