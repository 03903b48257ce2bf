"""Bucket IAM policies read from synthesized stacks, and GCS-style authorization over them.

The bindings come from every `cdk.tf.json` the local backend was given, with the client
shards of each platform stack (`tfjson.expand_groups`):
`google_storage_bucket_iam_member` / `_binding` / `_policy` (bucket level) and
`google_project_iam_member` / `_binding` (project level, inherited by the project's buckets).
`for_each` is expanded and `${...}` references to service accounts and buckets are resolved by
`tfjson`, the evaluator `bin/check` uses, so the checks and the local cloud read the
stack the same way.

Authorization follows GCS:
- object requests are checked on `projects/_/buckets/B/objects/O`
  (type `storage.googleapis.com/Object`); a list is checked on the bucket
  (`projects/_/buckets/B`, type `storage.googleapis.com/Bucket`) with the request's prefix as
  the API attribute `storage.googleapis.com/objectListPrefix`
  (https://cloud.google.com/iam/docs/conditions-attribute-reference#resource-name,
  https://cloud.google.com/storage/docs/access-control/iam#conditions);
- a role grants the permissions listed in `data/storage_roles.json` (source cited there);
- a condition is CEL, evaluated with cel-python; an evaluation error counts as false, as in IAM
  (https://cloud.google.com/iam/docs/conditions-overview#cel).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celpy
import celpy.celtypes as ct

from tfjson import StackFacts, expand_groups, facts_from_document, flat_strings, instances

log = logging.getLogger(__name__)

ROLES_FILE = Path(__file__).with_name("data") / "storage_roles.json"
OBJECT_TYPE = "storage.googleapis.com/Object"
BUCKET_TYPE = "storage.googleapis.com/Bucket"
LIST_PREFIX_ATTR = "storage.googleapis.com/objectListPrefix"

_BUCKET_RESOURCES = (
    "google_storage_bucket_iam_member",
    "google_storage_bucket_iam_binding",
    "google_storage_bucket_iam_policy",
)
_PROJECT_RESOURCES = ("google_project_iam_member", "google_project_iam_binding")


@functools.cache
def roles_in(path: Path) -> Mapping[str, tuple[str, ...]]:
    """A role table (local/data/*_roles.json): role -> the permissions it carries."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {role: tuple(perms) for role, perms in data["roles"].items()}


def role_grants(role: str, permission: str, roles_file: Path = ROLES_FILE) -> bool:
    """Whether a predefined role carries `permission` (entries may end in `.*`)."""
    return any(fnmatch.fnmatchcase(permission, p) for p in roles_in(roles_file).get(role, ()))


@dataclass(frozen=True)
class Binding:
    role: str
    members: frozenset[str]
    condition: str | None = None  # CEL expression
    source: str = ""  # the Terraform address it came from, for messages

    def names(self, email: str) -> bool:
        return bool(
            {f"serviceAccount:{email}", f"user:{email}", "allUsers", "allAuthenticatedUsers"}
            & self.members
        )


@dataclass(frozen=True)
class Request:
    """One permission check: who, what, on which bucket/object."""

    principal: str
    permission: str
    bucket: str
    object: str | None = None  # None: the check is on the bucket (get, list, ...)
    list_prefix: str | None = None  # storage.objects.list: the request's `prefix`

    @property
    def resource_name(self) -> str:
        base = f"projects/_/buckets/{self.bucket}"
        return base if self.object is None else f"{base}/objects/{self.object}"

    @property
    def resource_type(self) -> str:
        return BUCKET_TYPE if self.object is None else OBJECT_TYPE


@dataclass
class Policy:
    """Bindings per bucket and per project, and which project each bucket belongs to."""

    buckets: dict[str, list[Binding]] = field(default_factory=dict)
    projects: dict[str, list[Binding]] = field(default_factory=dict)
    bucket_projects: dict[str, str] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)  # addresses we could not read

    def bindings_for(self, bucket: str) -> list[Binding]:
        project = self.bucket_projects.get(bucket)
        return [*self.buckets.get(bucket, []), *self.projects.get(project or "", [])]

    def allows(self, req: Request) -> bool:
        for b in self.bindings_for(req.bucket):
            if not (b.names(req.principal) and role_grants(b.role, req.permission)):
                continue
            if b.condition is None or condition_holds(
                b.condition, req.resource_name, req.resource_type, req.list_prefix
            ):
                return True
        return False

    def allows_project(self, principal: str, permission: str, project: str) -> bool:
        """A project-level permission (bucket list/create): project bindings only."""
        return any(
            b.names(principal) and role_grants(b.role, permission) and b.condition is None
            for b in self.projects.get(project, [])
        )

    def explain(self, req: Request) -> str:
        """Which bindings name the principal on this bucket (for denial logs)."""
        mine = [b for b in self.bindings_for(req.bucket) if b.names(req.principal)]
        if not mine:
            return f"no binding names {req.principal} on bucket {req.bucket}"
        return "; ".join(f"{b.role}{' if ' + b.condition if b.condition else ''}" for b in mine)


# ---- CEL --------------------------------------------------------------------------------
# The compiled runner (CEL transpiled to Python) is ~6x faster than the interpreted one, but
# in cel-python 0.5.0 it cannot call custom functions (`api.getAttribute` fails with a
# NameError), so expressions that use them run interpreted. Order matters: built the other way
# round, the compiled environment gets parse trees it cannot run (cel-python keeps the tree
# class per process); test_local_iam evaluates both kinds interleaved.
_CEL_COMPILED = celpy.Environment(runner_class=celpy.CompiledRunner)
_CEL = celpy.Environment()


def _get_attribute(api: Any, name: Any, default: Any) -> Any:
    # `api.getAttribute(name, default)`: the receiver comes first.
    return api.get(name, default) if isinstance(api, Mapping) else default


@functools.lru_cache(maxsize=256)
def _program(expression: str) -> Any:
    if "getAttribute" not in expression:
        return _CEL_COMPILED.program(_CEL_COMPILED.compile(expression))
    return _CEL.program(_CEL.compile(expression), functions={"getAttribute": _get_attribute})


@functools.lru_cache(maxsize=65536)
def _evaluate(expression: str, name: str, rtype: str, list_prefix: str | None) -> bool:
    s = ct.StringType
    activation = {
        "resource": ct.MapType(
            {s("name"): s(name), s("type"): s(rtype), s("service"): s("storage.googleapis.com")}
        ),
        "api": ct.MapType({} if list_prefix is None else {s(LIST_PREFIX_ATTR): s(list_prefix)}),
        "request": ct.MapType(
            {s("time"): ct.TimestampType(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))}
        ),
    }
    try:
        result = _program(expression).evaluate(activation)
    except Exception as exc:  # CELParseError, CELEvalError: IAM treats an error as false
        log.warning("IAM condition %r did not evaluate: %s", expression, exc)
        return False
    return isinstance(result, bool | ct.BoolType) and bool(result)


def condition_holds(expression: str, name: str, rtype: str, list_prefix: str | None) -> bool:
    if "request.time" in expression:  # time-dependent: never cached
        return _evaluate.__wrapped__(expression, name, rtype, list_prefix)
    return _evaluate(expression, name, rtype, list_prefix)


# ---- reading stacks ---------------------------------------------------------------------
def _str(raw: Any) -> str:
    while isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    return raw if isinstance(raw, str) else ""


def _condition(conf: Mapping[str, Any]) -> str | None:
    cond = conf.get("condition")
    while isinstance(cond, list) and cond:
        cond = cond[0]
    if isinstance(cond, Mapping):
        expr = _str(cond.get("expression"))
        return expr or None
    return None


def _section(doc: Mapping[str, Any], rtype: str) -> Iterable[tuple[str, dict[str, Any]]]:
    section = doc.get("resource", {}).get(rtype, {})
    for name, conf in (section.items() if isinstance(section, dict) else ()):
        if isinstance(conf, dict):
            yield from ((f"{rtype}.{n}", c) for n, c in instances(name, conf))


def _members(facts: StackFacts, conf: Mapping[str, Any]) -> frozenset[str]:
    raw = flat_strings(conf.get("member")) + flat_strings(conf.get("members"))
    return frozenset(facts.resolve_text(m) for m in raw)


def add_document(policy: Policy, doc: Mapping[str, Any]) -> None:
    """Add one stack's bucket and project bindings to `policy`."""
    facts = facts_from_document(doc)
    for _address, conf in _section(doc, "google_storage_bucket"):
        name, project = facts.resolve_text(_str(conf.get("name"))), _str(conf.get("project"))
        if name and project and "${" not in name + project:
            policy.bucket_projects[name] = project
    for rtype in _BUCKET_RESOURCES:
        for address, conf in _section(doc, rtype):
            bucket = facts.resolve_text(_str(conf.get("bucket")))
            if not bucket or "${" in bucket:
                policy.unresolved.append(address)
                continue
            if rtype.endswith("_policy"):  # authoritative: conditions included (tfjson.iam)
                found = [Binding(b.role, frozenset(facts.resolve_text(m) for m in b.members),
                                 b.condition, address)
                         for b in facts.policy_grants(_str(conf.get("policy_data"))) or []]
            else:
                found = [Binding(_str(conf.get("role")), _members(facts, conf), _condition(conf),
                                 address)]
            policy.buckets.setdefault(bucket, []).extend(found)
    for rtype in _PROJECT_RESOURCES:
        for address, conf in _section(doc, rtype):
            project = _str(conf.get("project"))
            if not project or "${" in project:
                policy.unresolved.append(address)
                continue
            binding = Binding(_str(conf.get("role")), _members(facts, conf), _condition(conf),
                              address)
            policy.projects.setdefault(project, []).append(binding)


def load_policy(stack_files: Iterable[Path]) -> Policy:
    """The bindings of the given stacks' groups (a platform stack and its client shards)."""
    policy = Policy()
    for path in expand_groups(stack_files):
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            add_document(policy, doc)
    return policy
