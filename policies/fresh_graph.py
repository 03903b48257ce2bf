"""The dependency graph of a stack's first apply, as Terraform orders it (pure Python).

A resource (or data source) waits for everything in its `depends_on` and for every resource
its expressions reference (a reference in a `for_each` map counts, and a reference means the
whole resource, all instances). `Graph.of(doc)` builds that graph from a synthesized
`cdk.tf.json`; `policies.fresh_project` judges each resource over it.

A client shard (`tfjson.groups`) is applied after its whole platform stack (the shard stack
depends on it): `Graph.of(shard, before=[platform])` holds the platform's nodes too, named
`<platform stack>::<address>`, and every node of the shard depends on all of them, so every
platform barrier has elapsed and every platform resource exists before a shard resource is
made. The shard names platform resources by literal names (topics, accounts, the key), not
references: `refers` maps those names to the platform resource they name (`literals`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tfjson import instances

# A reference inside an interpolation: `google_x.name`, `data.google_y.name`, `time_sleep.n`.
REF_RE = re.compile(r"(?<![\w.\"-])(data\.)?([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
BARRIER = "time_sleep"
NS = "::"  # "<stack>::<address>": a node of a stack applied before this one


def interpolations(text: str) -> Iterator[str]:
    """The expressions of `${...}` in a Terraform template (`$${` is a literal, skipped)."""
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return
        if start > 0 and text[start - 1] == "$":
            i = start + 2
            continue
        depth, j = 1, start + 2
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        yield text[start + 2 : j - 1]
        i = j


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, Mapping):
        for key, item in node.items():
            if key != "//":
                yield from strings(item)


def get(body: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = body
    for key in path:
        if isinstance(cur, list):
            cur = cur[0] if cur else None
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def type_of(address: str) -> str:
    """`google_x` of `google_x.name`, `data.google_y` of `data.google_y.n`, whatever stack."""
    return address.rpartition(NS)[2].rsplit(".", 1)[0]


def namespace(address: str) -> str:
    """"" for this stack's own node, `<stack>::` for a node of a stack applied before."""
    head, sep, _ = address.rpartition(NS)
    return head + sep


def _provider_project(doc: Mapping[str, Any]) -> str:
    providers = (doc.get("provider") or {}).get("google") or [{}]
    first = providers[0] if isinstance(providers, list) and providers else {}
    return str((first or {}).get("project", ""))


def _stack_name(doc: Mapping[str, Any], fallback: str) -> str:
    meta = (doc.get("//") or {}).get("metadata") or {}
    return str(meta.get("stackName") or fallback) if isinstance(meta, Mapping) else fallback


@dataclass
class Graph:
    """Addresses (`type.name`, `data.type.name`) -> body, and their direct dependencies."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    default_project: str = ""  # the google provider's project
    own: list[str] = field(default_factory=list)  # this stack's addresses (what is judged)
    # a literal name of a resource of a stack applied before -> its address (`<stack>::...`)
    literals: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, doc: Mapping[str, Any], before: Sequence[Mapping[str, Any]] = ()) -> Graph:
        graph = cls(default_project=_provider_project(doc))
        graph._add(doc, "")
        graph.own = list(graph.bodies)
        spaces = [f"{_stack_name(earlier, f'before-{i}')}{NS}" for i, earlier in
                  enumerate(before)]
        for earlier, ns in zip(before, spaces, strict=True):
            graph._add(earlier, ns)
            graph._literals(earlier, ns)
        for address, body in graph.bodies.items():
            graph.edges[address] = graph._direct(body, namespace(address))
        applied = set(graph.bodies) - set(graph.own)
        for address in graph.own:  # the stacks before are applied whole, first
            graph.edges[address] |= applied
        return graph

    def _add(self, doc: Mapping[str, Any], ns: str) -> None:
        for prefix, section in (("", doc.get("resource") or {}), ("data.", doc.get("data") or {})):
            for rtype, named in section.items():
                for name, body in (named or {}).items():
                    self.bodies[f"{ns}{prefix}{rtype}.{name}"] = body

    def _literals(self, doc: Mapping[str, Any], ns: str) -> None:
        """The names by which a later stack can name this stack's topics, accounts and keys."""
        project = _provider_project(doc)
        resources = doc.get("resource") or {}

        def each(rtype: str) -> Iterator[tuple[str, dict[str, Any], str]]:
            for name, conf in (resources.get(rtype) or {}).items():
                for _, body in instances(name, conf):
                    literal = body.get("project")
                    where = literal if isinstance(literal, str) and "${" not in literal else project
                    yield f"{ns}{rtype}.{name}", body, where

        for address, body, where in each("google_pubsub_topic"):
            self.literals[f"projects/{where}/topics/{body.get('name')}"] = address
        for address, body, where in each("google_service_account"):
            self.literals[f"{body.get('account_id')}@{where}.iam.gserviceaccount.com"] = address
        rings = {address: f"projects/{where}/locations/{body.get('location')}/keyRings/"
                          f"{body.get('name')}" for address, body, where in each(
                              "google_kms_key_ring")}
        for address, body, _ in each("google_kms_crypto_key"):
            ring = str(body.get("key_ring", ""))  # a reference to the ring, or its full name
            for expression in list(interpolations(ring)):
                for m in REF_RE.finditer(expression):
                    ring = rings.get(f"{ns}{m.group(2)}.{m.group(3)}", ring)
            self.literals[f"{ring}/cryptoKeys/{body.get('name')}"] = address

    def literal(self, text: str) -> str | None:
        """The earlier stack's address a literal name stands for (an account as a member,
        an email or `projects/P/serviceAccounts/E`; a topic's or key's full name)."""
        if not self.literals or "${" in text:
            return None
        name = text.removeprefix("serviceAccount:")
        if "/serviceAccounts/" in name:
            name = name.rsplit("/", 1)[1]
        return self.literals.get(name)

    def _direct(self, body: Mapping[str, Any], ns: str) -> set[str]:
        deps = {d for d in body.get("depends_on") or [] if isinstance(d, str)}
        # A dangling address is Terraform's own error at validate; here it orders nothing.
        deps = {ns + (d[2:-1] if d.startswith("${") else d) for d in deps} & self.bodies.keys()
        for text in strings({k: v for k, v in body.items() if k != "depends_on"}):
            deps |= self._references(text, ns)
        return deps

    def _references(self, text: str, ns: str) -> set[str]:
        """The declared addresses a Terraform template references (`$${` skipped)."""
        out = set()
        for expression in interpolations(text):
            for m in REF_RE.finditer(expression):
                address = f"{ns}{m.group(1) or ''}{m.group(2)}.{m.group(3)}"
                if address in self.bodies:
                    out.add(address)
        return out

    @cached_property
    def _closures(self) -> dict[str, frozenset[str]]:
        return {}

    def closure(self, address: str) -> frozenset[str]:
        """Every transitive dependency of `address` (iterative; the graph may be large)."""
        memo = self._closures
        if address in memo:
            return memo[address]
        seen: set[str] = set()
        stack = list(self.edges.get(address, ()))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node in memo:
                seen |= memo[node]
                continue
            stack.extend(self.edges.get(node, ()))
        memo[address] = frozenset(seen)
        return memo[address]

    def behind_barrier(self, address: str) -> frozenset[str]:
        """What `address` waits for behind a barrier: the closures of its `time_sleep`s (a
        shard: every barrier of its platform stack, applied before it, counts)."""
        out: set[str] = set()
        for dep in self.closure(address):
            if type_of(dep) == BARRIER:
                out |= self.closure(dep)
        return frozenset(out)

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {a: b for a, b in self.bodies.items() if type_of(a) == rtype}

    def refs(self, address: str, attribute: str) -> set[str]:
        """`refers` on the node at `address`, in its own stack's names."""
        return self.refers(self.bodies[address], attribute, namespace(address))

    def refers(self, body: Mapping[str, Any], attribute: str, ns: str = "") -> set[str]:
        """Addresses referenced by `attribute` of `body` (templates read, `$${` skipped), and
        for this stack's own nodes the earlier stacks' resources named by literal names."""
        out = set()
        for text in strings(_attribute(body, attribute)):
            if not ns and (named := self.literal(text)) is not None:
                out.add(named)
            out |= self._references(text, ns)
        return out

    def unnamed(self, body: Mapping[str, Any], attribute: str, pattern: re.Pattern[str]
                ) -> list[str]:
        """Literal names of the form `pattern` in `attribute` that no stack declares."""
        return sorted({t for t in strings(_attribute(body, attribute)) if pattern.fullmatch(t)
                       and self.literal(t) is None})


def _attribute(body: Mapping[str, Any], attribute: str) -> Any:
    """`attribute` of `body`; of a `for_each` resource whose attribute is
    `${each.value.<attribute>}`, the attribute of every entry of its map."""
    value = body.get(attribute)
    if isinstance(value, str) and value == f"${{each.value.{attribute}}}":
        entries = body.get("for_each")
        if isinstance(entries, Mapping):
            value = [e.get(attribute) for e in entries.values() if isinstance(e, Mapping)]
    return value
