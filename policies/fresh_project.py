"""The fresh-project check: would the first apply of this stack succeed on a new project?

Terraform orders an apply by its dependency graph: a resource (or data source) waits for
everything in its `depends_on` and for every resource its expressions reference (a reference
in a `for_each` map counts, and a reference means the whole resource, all instances). This
module builds that graph from a synthesized `cdk.tf.json` and refuses, per resource:

- an API its type needs (`stacks.apis.RESOURCE_APIS`) whose `google_project_service` is not
  a transitive dependency behind a `time_sleep` (enablement propagates; SERVICE_DISABLED is not
  retried), or a type missing from the table;
- a grant to a service agent (`google_project_service_identity`, the storage agent data
  source) that does not wait behind a barrier after the agent;
- a CMEK resource not behind a barrier after its own agent's grant on its key;
- an Eventarc trigger not behind a barrier after every project grant of its service account
  and after the Eventarc agent;
- a storage notification not behind a barrier after the storage agent's publisher grant on
  its topic (for a `for_each` notification, on the topic of every entry);
- a workflow, trigger or schedule not behind a barrier after the act-as grant on the account
  it runs as (the deployer must act as it when it creates the resource);
- and, stack-wide, a provider without an exact version.

Pure Python (no checkov, no provider import): `bin/check` rules (CKV_GPUB_DEP_*) and the tests
call `findings(doc)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from stacks.apis import NO_API, RESOURCE_APIS, SERVICE_USAGE

# A reference inside an interpolation: `google_x.name`, `data.google_y.name`, `time_sleep.n`.
REF_RE = re.compile(r"(?<![\w.\"-])(data\.)?([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
EXACT_VERSION_RE = re.compile(r"^=?\s*\d+\.\d+\.\d+$")
BARRIER = "time_sleep"
# Resources encrypted with a key, the attribute naming it, and whose agent uses the key.
CMEK = {
    "google_storage_bucket": (("encryption", "default_kms_key_name"), "storage.googleapis.com"),
    "google_pubsub_topic": (("kms_key_name",), "pubsub.googleapis.com"),
    "google_workflows_workflow": (("crypto_key_name",), "workflows.googleapis.com"),
    "google_artifact_registry_repository": (("kms_key_name",),
                                            "artifactregistry.googleapis.com"),
}
STORAGE_AGENT = "data.google_storage_project_service_account"
EVENTARC = "eventarc.googleapis.com"


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


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, Mapping):
        for key, item in node.items():
            if key != "//":
                yield from _strings(item)


def _get(body: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = body
    for key in path:
        if isinstance(cur, list):
            cur = cur[0] if cur else None
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


@dataclass
class Graph:
    """Addresses (`type.name`, `data.type.name`) -> body, and their direct dependencies."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    default_project: str = ""  # the google provider's project

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Graph:
        providers = (doc.get("provider") or {}).get("google") or [{}]
        first = providers[0] if isinstance(providers, list) and providers else {}
        graph = cls(default_project=str((first or {}).get("project", "")))
        for prefix, section in (("", doc.get("resource") or {}), ("data.", doc.get("data") or {})):
            for rtype, named in section.items():
                for name, body in (named or {}).items():
                    graph.bodies[f"{prefix}{rtype}.{name}"] = body
        for address, body in graph.bodies.items():
            graph.edges[address] = graph._direct(body)
        return graph

    def _direct(self, body: Mapping[str, Any]) -> set[str]:
        deps = {d for d in body.get("depends_on") or [] if isinstance(d, str)}
        # A dangling address is Terraform's own error at validate; here it orders nothing.
        deps = {d[2:-1] if d.startswith("${") else d for d in deps} & self.bodies.keys()
        for text in _strings({k: v for k, v in body.items() if k != "depends_on"}):
            for expression in interpolations(text):
                for m in REF_RE.finditer(expression):
                    address = f"{m.group(1) or ''}{m.group(2)}.{m.group(3)}"
                    if address in self.bodies:
                        deps.add(address)
        return deps

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
        """What `address` waits for behind a barrier: the closures of its `time_sleep`s."""
        out: set[str] = set()
        for dep in self.closure(address):
            if dep.startswith(f"{BARRIER}."):
                out |= self.closure(dep)
        return frozenset(out)

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {a: b for a, b in self.bodies.items() if a.rsplit(".", 1)[0] == rtype}

    def refers(self, body: Mapping[str, Any], attribute: str) -> set[str]:
        """Addresses referenced by `attribute` of `body` (templates read, `$${` skipped)."""
        out = set()
        value = body.get(attribute)
        if isinstance(value, str) and value == f"${{each.value.{attribute}}}":
            # A for_each resource: the attribute of every entry of its map.
            entries = body.get("for_each")
            if isinstance(entries, Mapping):
                value = [e.get(attribute) for e in entries.values() if isinstance(e, Mapping)]
        for text in _strings(value):
            for expression in interpolations(text):
                for m in REF_RE.finditer(expression):
                    address = f"{m.group(1) or ''}{m.group(2)}.{m.group(3)}"
                    if address in self.bodies:
                        out.add(address)
        return out


def _type_of(address: str) -> str:
    return address.rsplit(".", 1)[0]


def _project_of(body: Mapping[str, Any], default: str) -> str:
    """The project a resource is made in: its literal `project`, else the provider's."""
    project = body.get("project")
    if isinstance(project, str) and project and "${" not in project:
        return project
    return default


def _api_findings(graph: Graph, address: str, body: Mapping[str, Any]) -> list[str]:
    rtype = _type_of(address)
    if rtype in NO_API:
        return []
    if rtype not in RESOURCE_APIS:
        return [f"{rtype} has no entry in stacks/apis.py RESOURCE_APIS (which API it needs)"]
    needed = list(RESOURCE_APIS[rtype])
    if rtype == "google_project_service_identity" and isinstance(body.get("service"), str):
        needed.append(body["service"])
    behind = graph.behind_barrier(address)
    project = _project_of(body, graph.default_project)
    enabled = {(str(graph.bodies[a].get("project")), str(graph.bodies[a].get("service")))
               for a in behind if _type_of(a) == "google_project_service"}
    # Service Usage cannot enable itself: bin/bootstrap turns it on before the first deploy.
    missing = [api for api in needed if (project, api) not in enabled and api != SERVICE_USAGE]
    if missing:
        return [f"does not wait for the enablement of {', '.join(missing)} in {project} behind "
                "a time_sleep (SERVICE_DISABLED on a fresh project)"]
    return []


def _agents(graph: Graph) -> dict[str, str]:
    """Agent address -> the service it is the agent of."""
    out = {a: "storage.googleapis.com" for a in graph.of_type(STORAGE_AGENT)}
    for a, body in graph.of_type("google_project_service_identity").items():
        out[a] = str(body.get("service"))
    return out


def _agent_grant_findings(graph: Graph, address: str, body: Mapping[str, Any],
                          agents: Mapping[str, str]) -> list[str]:
    if not _type_of(address).endswith(("_iam_member", "_iam_binding")):
        return []
    granted = [a for a in graph.refers(body, "member") | graph.refers(body, "members")
               if a in agents]
    behind = graph.behind_barrier(address)
    late = [a for a in granted if a not in behind]
    if late:
        return [f"grants {', '.join(late)} without a time_sleep after it (a new agent "
                "propagates before it can be granted)"]
    return []


def _cmek_findings(graph: Graph, address: str, body: Mapping[str, Any],
                   agents: Mapping[str, str]) -> list[str]:
    spec = CMEK.get(_type_of(address))
    if spec is None:
        return []
    path, service = spec
    key = _get(body, path)
    keys = {a for a in graph.refers({"k": key}, "k") if _type_of(a) == "google_kms_crypto_key"}
    if not keys:
        return []
    behind = graph.behind_barrier(address)
    for grant, gbody in graph.of_type("google_kms_crypto_key_iam_member").items():
        if (graph.refers(gbody, "crypto_key_id") & keys and grant in behind
                and any(agents.get(a) == service for a in graph.refers(gbody, "member"))):
            return []
    return [f"encrypted with {', '.join(sorted(keys))} but not behind a time_sleep after "
            f"the {service} agent's grant on it"]


def _trigger_findings(graph: Graph, address: str, body: Mapping[str, Any],
                      agents: Mapping[str, str]) -> list[str]:
    if _type_of(address) != "google_eventarc_trigger":
        return []
    accounts = graph.refers(body, "service_account")
    grants = {a for a, b in graph.of_type("google_project_iam_member").items()
              if graph.refers(b, "member") & accounts}
    eventarc_agents = {a for a, s in agents.items() if s == EVENTARC}
    behind = graph.behind_barrier(address)
    out = []
    if not grants:
        out.append("its service account holds no project role (eventarc.eventReceiver)")
    if grants - behind:
        out.append(f"not behind a time_sleep after {', '.join(sorted(grants - behind))}")
    if not eventarc_agents & behind:
        out.append("not behind a time_sleep after the Eventarc agent "
                   "(google_project_service_identity of eventarc.googleapis.com)")
    return out


def _notification_findings(graph: Graph, address: str, body: Mapping[str, Any],
                           agents: Mapping[str, str]) -> list[str]:
    if _type_of(address) != "google_storage_notification":
        return []
    # A for_each notification names one topic per entry: each must have its grant.
    topics = {a for a in graph.refers(body, "topic") if _type_of(a) == "google_pubsub_topic"}
    behind = graph.behind_barrier(address)
    granted: set[str] = set()
    for grant, gbody in graph.of_type("google_pubsub_topic_iam_member").items():
        if (gbody.get("role") == "roles/pubsub.publisher" and grant in behind
                and any(_type_of(a) == STORAGE_AGENT for a in graph.refers(gbody, "member"))):
            granted |= graph.refers(gbody, "topic")
    missing = sorted(topics - granted) if topics else ["its topic"]
    if missing:
        return [f"not behind a time_sleep after the storage agent's publisher grant on "
                f"{', '.join(missing)}"]
    return []


# Resources that run as a service account: creating one asks iam.serviceAccounts.actAs on it.
RUNS_AS = {
    "google_workflows_workflow": ("service_account",),
    "google_eventarc_trigger": ("service_account",),
    "google_cloud_scheduler_job": ("http_target",),
}
ACT_AS = "roles/iam.serviceAccountUser"


def _act_as_findings(graph: Graph, address: str, body: Mapping[str, Any],
                     agents: Mapping[str, str]) -> list[str]:
    attributes = RUNS_AS.get(_type_of(address))
    if attributes is None:
        return []
    accounts = {a for attr in attributes for a in graph.refers(body, attr)
                if _type_of(a) == "google_service_account"}
    behind = graph.behind_barrier(address)
    missing = []
    for account in sorted(accounts):
        if not any(gbody.get("role") == ACT_AS and account in graph.refers(
                gbody, "service_account_id") and grant in behind
                for grant, gbody in graph.of_type("google_service_account_iam_member").items()):
            missing.append(account)
    if missing:
        return [f"runs as {', '.join(missing)} but is not behind a time_sleep after the "
                "deployer's act-as grant on it (iam.serviceAccounts.actAs is checked at "
                "creation)"]
    return []


def provider_findings(doc: Mapping[str, Any]) -> list[str]:
    """Every required provider pinned to one exact version."""
    required = (doc.get("terraform") or {}).get("required_providers") or {}
    out = []
    for name, spec in required.items():
        version = str((spec or {}).get("version", "")) if isinstance(spec, Mapping) else ""
        if not EXACT_VERSION_RE.match(version.strip()):
            out.append(f"provider {name} is not pinned to an exact version (got {version!r})")
    for name in doc.get("provider") or {}:
        if name not in required:
            out.append(f"provider {name} is configured but not in required_providers")
    return out


class Finding(NamedTuple):
    kind: str  # "api" (CKV_GPUB_DEP_1) or "grant" (CKV_GPUB_DEP_2)
    message: str

    def __str__(self) -> str:
        return self.message


def findings(doc: Mapping[str, Any]) -> dict[str, list[Finding]]:
    """Address -> why its first apply would fail (only addresses with findings)."""
    graph = Graph.of(doc)
    agents = _agents(graph)
    out: dict[str, list[Finding]] = {}
    for address, body in graph.bodies.items():
        found = [Finding("api", m) for m in _api_findings(graph, address, body)] + [
            Finding("grant", m)
            for rule in (_agent_grant_findings, _cmek_findings, _trigger_findings,
                         _notification_findings, _act_as_findings)
            for m in rule(graph, address, body, agents)
        ]
        if found:
            out[address] = found
    return out
