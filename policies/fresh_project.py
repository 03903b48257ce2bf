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

A client shard (`tfjson.groups`) is judged with its platform stack as applied before it
(`findings(shard, before=[platform])`, `policies.fresh_graph`): every platform resource and
barrier precedes every shard resource, and the shard's literal names of platform topics,
accounts and keys stand for those resources. A shard judged alone fails, saying so.

Pure Python (no checkov, no provider import): `bin/check` rules (CKV_GPUB_DEP_*) and the tests
call `findings(doc)` (`findings(shard, before=[platform])`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from policies.fresh_graph import BARRIER, NS, REF_RE, Graph, get, interpolations
from policies.fresh_graph import type_of as _type_of
from stacks.apis import NO_API, RESOURCE_APIS, SERVICE_USAGE
from tfjson import shard_of_document
from tfjson.iam import policy_bindings

__all__ = ["BARRIER", "NS", "REF_RE", "Finding", "Graph", "findings", "interpolations",
           "provider_findings"]

EXACT_VERSION_RE = re.compile(r"^=?\s*\d+\.\d+\.\d+$")
TOPIC_NAME_RE = re.compile(r"projects/[^/]+/topics/[^/]+")
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
    if not _type_of(address).endswith(("_iam_member", "_iam_binding", "_iam_policy")):
        return []
    granted = [a for a in graph.refers(body, "member") | graph.refers(body, "members")
               | graph.refers(body, "policy_data") if a in agents]
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
    key = get(body, path)
    keys = {a for a in graph.refers({"k": key}, "k") if _type_of(a) == "google_kms_crypto_key"}
    if not keys:
        return []
    behind = graph.behind_barrier(address)
    for grant in graph.of_type("google_kms_crypto_key_iam_member"):
        if (graph.refs(grant, "crypto_key_id") & keys and grant in behind
                and any(agents.get(a) == service for a in graph.refs(grant, "member"))):
            return []
    return [f"encrypted with {', '.join(sorted(keys))} but not behind a time_sleep after "
            f"the {service} agent's grant on it"]


def _trigger_findings(graph: Graph, address: str, body: Mapping[str, Any],
                      agents: Mapping[str, str]) -> list[str]:
    if _type_of(address) != "google_eventarc_trigger":
        return []
    accounts = graph.refers(body, "service_account")
    grants = {a for a in graph.of_type("google_project_iam_member")
              if graph.refs(a, "member") & accounts}
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
    # A client shard names its platform's topics by their full names (Graph.literals).
    topics = {a for a in graph.refers(body, "topic") if _type_of(a) == "google_pubsub_topic"}
    unknown = graph.unnamed(body, "topic", TOPIC_NAME_RE)
    behind = graph.behind_barrier(address)
    granted: set[str] = set()
    for grant, gbody in graph.of_type("google_pubsub_topic_iam_member").items():
        if (gbody.get("role") == "roles/pubsub.publisher" and grant in behind
                and any(_type_of(a) == STORAGE_AGENT for a in graph.refs(grant, "member"))):
            granted |= graph.refs(grant, "topic")
    out = [f"publishes to {t}, which neither this stack nor a stack applied before it "
           "declares (nothing grants the storage agent publishing there first)"
           for t in unknown]
    missing = sorted(topics - granted) if topics or unknown else ["its topic"]
    if missing:
        out.append(f"not behind a time_sleep after the storage agent's publisher grant on "
                   f"{', '.join(missing)}")
    return out


# Resources that run as a service account: creating one asks iam.serviceAccounts.actAs on it.
RUNS_AS = {
    "google_workflows_workflow": ("service_account",),
    "google_eventarc_trigger": ("service_account",),
    "google_cloud_scheduler_job": ("http_target",),
}
ACT_AS = "roles/iam.serviceAccountUser"


def _roles(body: Mapping[str, Any]) -> set[str]:
    """The roles a member grant or an authoritative policy grants (a `for_each` policy: any
    of its entries'; tfjson.iam reads `policy_data`)."""
    if "policy_data" not in body:
        return {str(body.get("role"))}
    entries = body.get("for_each")
    texts = ([e.get("policy_data") for e in entries.values() if isinstance(e, Mapping)]
             if isinstance(entries, Mapping) else [body.get("policy_data")])
    return {b.role for t in texts if isinstance(t, str) for b in policy_bindings(t) or []}


def _act_as_findings(graph: Graph, address: str, body: Mapping[str, Any],
                     agents: Mapping[str, str]) -> list[str]:
    attributes = RUNS_AS.get(_type_of(address))
    if attributes is None:
        return []
    accounts = {a for attr in attributes for a in graph.refers(body, attr)
                if _type_of(a) == "google_service_account"}
    behind = graph.behind_barrier(address)
    missing = []
    grants = {**graph.of_type("google_service_account_iam_member"),
              **graph.of_type("google_service_account_iam_policy")}
    for account in sorted(accounts):
        if not any(ACT_AS in _roles(gbody) and account in graph.refs(
                grant, "service_account_id") and grant in behind
                for grant, gbody in grants.items()):
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


def findings(doc: Mapping[str, Any], before: Sequence[Mapping[str, Any]] = ()
             ) -> dict[str, list[Finding]]:
    """Address -> why its first apply would fail (only addresses with findings). `before`:
    the stacks applied before this one (a client shard's platform stack), whole."""
    graph = Graph.of(doc, before)
    agents = _agents(graph)
    out: dict[str, list[Finding]] = {}
    alone = shard_of_document(doc) if not before else None
    for address in graph.own:
        body = graph.bodies[address]
        found = [Finding("api", m) for m in _api_findings(graph, address, body)] + [
            Finding("grant", m)
            for rule in (_agent_grant_findings, _cmek_findings, _trigger_findings,
                         _notification_findings, _act_as_findings)
            for m in rule(graph, address, body, agents)
        ]
        if found and alone is not None:  # the reason the rest fails, said first
            found.insert(0, Finding("api", f"a client shard of {alone[0]}, judged without it: "
                                    f"check it with {alone[0]}, which is applied first (its "
                                    "APIs, service agents and barriers)"))
        if found:
            out[address] = found
    return out
