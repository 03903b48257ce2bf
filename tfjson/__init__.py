"""Reading CDKTF output (`cdk.tf.json`): the one Terraform-JSON reader.

A neutral package below `stacks`, `policies` and `local` (it imports none of them): the policy
checks (bin/check), the local cloud (IAM, workflows, Pub/Sub, apply) and the tests read the
synthesized stack through it.

Two views of the same file:
- checkov's per-resource configuration, where every scalar is wrapped in a list and every
  block is a list of dicts (`{"role": ["roles/x"], "condition": [{"expression": ["..."]}]}`);
  `value`, `block` and `members` unwrap it whatever the nesting.
- `StackFacts`, read once per file from the raw JSON: the environment (`env` default label of
  the google provider), whether it declares CMEK, and the names behind `${...}` references
  (service account ids, bucket names, `data.google_iam_policy` bindings). A check sees one
  resource at a time; the facts are how it resolves `"serviceAccount:${google_service_account.
  x.email}"` to `client-acme`, which checkov's own CKV_GCP_42 cannot.

Every IAM resource reads as bindings (`StackFacts.grants`): a member's or binding's one, an
authoritative `_iam_policy`'s from its `policy_data` (`tfjson.iam`), conditions included.

No checkov import here: the facts are also built by `policies.check_cli` before the scan,
and by the local cloud. An environment with client shards is a group of stack files
(`tfjson.groups`: `stack_group`, `expand_groups`); readers read the whole group.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfjson.iam import PolicyBinding as PolicyBinding
from tfjson.iam import policy_bindings, read_bindings

# "${google_service_account.sa_1A.email}" -> (None, "google_service_account", "sa_1A", "email");
# a for_each instance keeps its key in the name: ("...", 'clients-sa["acme"]', "email").
REF_RE = re.compile(
    r"\$\{(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+(?:\[\"[^\"\]]*\"\])?)\.([a-z_]+)(?:\[\d+\])?\}"
)
# "${each.key}", "${each.value}", "${each.value.member}", "${each.value.condition.title}"
EACH_RE = re.compile(r"\$\{each\.(key|value)((?:\.[A-Za-z0-9_-]+)*)\}")
BARE_EACH_RE = re.compile(r"(?<![\w.])each\.(key|value)((?:\.[A-Za-z0-9_-]+)*)")
INTERPOLATION_RE = re.compile(r"(?<!\$)\$\{[^{}]*\}")
SA_EMAIL_RE = re.compile(r"^([a-z][a-z0-9-]{4,28}[a-z0-9])@[a-z0-9-]+\.iam\.gserviceaccount\.com$")
DEFAULT_COMPUTE_SA_RE = re.compile(r"-compute@developer\.gserviceaccount\.com")
TRUE_WORDS = {"1", "on", "true", "yes"}


def value(conf: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    """The scalar at `path` in a checkov-wrapped configuration (blocks: first element)."""
    cur: Any = conf
    for key in path:
        if isinstance(cur, list):
            cur = cur[0] if cur else None
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    # Scalars come as [v]; lists of scalars as [[a, b]].
    if isinstance(cur, list) and len(cur) == 1:
        cur = cur[0]
    return default if cur is None else cur


def block(conf: Mapping[str, Any] | None, *path: str) -> list[dict[str, Any]]:
    """Every block at `path` (`cleanup_policies` -> list of dicts), [] when absent."""
    cur: Any = conf
    for i, key in enumerate(path):
        if not isinstance(cur, Mapping) or key not in cur:
            return []
        cur = cur[key]
        if i < len(path) - 1 and isinstance(cur, list):
            cur = cur[0] if cur else None
    if isinstance(cur, Mapping):
        return [dict(cur)]
    if isinstance(cur, list):
        return [b for b in cur if isinstance(b, dict)]
    return []


def flat_strings(raw: Any) -> list[str]:
    """Strings in an arbitrarily nested list (`members` comes as [["a", "b"]] or ["a"])."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list | tuple):
        return [s for item in raw for s in flat_strings(item)]
    return [str(raw)]


def members(conf: Mapping[str, Any]) -> list[str]:
    """All principals of an IAM member/binding resource, `member` and `members` alike."""
    return flat_strings(conf.get("member")) + flat_strings(conf.get("members"))


def is_true(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    return isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS


def is_false(raw: Any) -> bool:
    if isinstance(raw, bool):
        return not raw
    return isinstance(raw, str) and raw.strip().lower() in {"0", "off", "false", "no"}


def _unwrap(raw: Any) -> Any:
    """checkov wraps scalars and blocks in one-element lists; the raw JSON does not."""
    while isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    return raw


def _each_value(key: str, entry: Any, kind: str, path: str) -> Any:
    if kind == "key":
        return key
    cur = _unwrap(entry)
    for part in filter(None, path.split(".")):
        cur = _unwrap(cur.get(part)) if isinstance(cur, Mapping) else None
    if isinstance(cur, str):
        # Map values are Terraform string templates: `$${` and `%%{` are escapes.
        return cur.replace("$${", "${").replace("%%{", "%{")
    return cur


def _substitute(raw: Any, key: str, entry: Any) -> Any:
    if isinstance(raw, str):
        whole = EACH_RE.fullmatch(raw)
        if whole:
            return _each_value(key, entry, whole.group(1), whole.group(2))

        def interpolation(m: re.Match[str]) -> str:
            alone = EACH_RE.fullmatch(m.group(0))
            if alone:  # "a/${each.key}" -> "a/acme"
                return str(_each_value(key, entry, alone.group(1), alone.group(2)))
            # Inside an expression: `local.x[each.value.k]` -> `local.x["embed"]`.
            return BARE_EACH_RE.sub(
                lambda b: json.dumps(_each_value(key, entry, b.group(1), b.group(2))),
                m.group(0),
            )

        return INTERPOLATION_RE.sub(interpolation, raw)
    if isinstance(raw, list):
        return [_substitute(item, key, entry) for item in raw]
    if isinstance(raw, Mapping):
        return {k: _substitute(v, key, entry) for k, v in raw.items()}
    return raw


def for_each_entries(conf: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]] | None:
    """One configuration per `for_each` entry, `${each.key}`/`${each.value.x}` resolved.

    None when the resource has no `for_each`; [] when its `for_each` is not a literal map
    (a variable, a function call) and so cannot be checked entry by entry.
    """
    if "for_each" not in conf:
        return None
    mapping = _unwrap(conf["for_each"])
    if not isinstance(mapping, Mapping):
        return []
    rest = {k: v for k, v in conf.items() if k != "for_each"}
    return [
        (str(key), _substitute(rest, str(key), entry))
        for key, entry in mapping.items()
        if not str(key).startswith("__")  # checkov's __startline__/__endline__
    ]


def instances(name: str, conf: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(address name, configuration) of each instance: `name`, or `name["key"]` per entry."""
    entries = for_each_entries(conf)
    if entries is None:
        return [(name, dict(conf))]
    return [(f'{name}["{key}"]', entry) for key, entry in entries]


@dataclass(frozen=True)
class StackFacts:
    """What a single-resource check needs to know about the rest of its stack file."""

    env: str | None = None
    cmek: bool = False
    # resource name (the part after the type) -> service account id / bucket name
    service_accounts: Mapping[str, str] = field(default_factory=dict)
    # resource name -> the service account's literal `project` (its email's domain part)
    service_account_projects: Mapping[str, str] = field(default_factory=dict)
    buckets: Mapping[str, str] = field(default_factory=dict)
    # data.google_iam_policy name -> its bindings (conditions included)
    iam_policies: Mapping[str, list[PolicyBinding]] = field(default_factory=dict)
    # the file's `locals` (`gpub_declared_quotas`: the quotas the environment declares)
    locals: Mapping[str, Any] = field(default_factory=dict)
    # the whole parsed file, for rules that count across resources (CKV_GPUB_LIM_*)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # every document of the file's stack group (tfjson.groups: the platform stack first, then
    # its client shards; this file's among them): what project-wide counts and the shard's
    # apply order are judged over. Empty: the file alone.
    group: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def prod(self) -> bool:
        return self.env == "prod"

    @property
    def group_documents(self) -> tuple[Mapping[str, Any], ...]:
        return self.group or (self.document,)

    @property
    def applied_before(self) -> tuple[Mapping[str, Any], ...]:
        """The documents of the group applied before this one: a shard's platform stack."""
        docs = self.group_documents
        return () if docs[0] is self.document else (docs[0],)

    def resolve_text(self, text: str) -> str:
        """Replace resolvable `${...}` references (SA emails, bucket names) by their values."""

        def sub(m: re.Match[str]) -> str:
            data, rtype, name, attr = m.groups()
            if data:
                return m.group(0)
            if rtype == "google_service_account" and name in self.service_accounts:
                account_id = self.service_accounts[name]
                # The email Google derives: <account_id>@<project>.iam.gserviceaccount.com.
                project = self.service_account_projects.get(name) or "resolved"
                if attr == "email":
                    return f"{account_id}@{project}.iam.gserviceaccount.com"
                if attr == "member":
                    return f"serviceAccount:{account_id}@{project}.iam.gserviceaccount.com"
                if attr in {"account_id", "name", "id", "unique_id"}:
                    return account_id
            if rtype == "google_storage_bucket" and name in self.buckets and attr in {"name", "id"}:
                return self.buckets[name]
            return m.group(0)

        return REF_RE.sub(sub, text)

    def service_account_id(self, member: str) -> str | None:
        """`client-acme` for "serviceAccount:client-acme@p.iam..." or a reference to that SA."""
        resolved = self.resolve_text(member).removeprefix("serviceAccount:")
        m = SA_EMAIL_RE.match(resolved)
        return m.group(1) if m else None

    def policy_bindings(self, policy_data: str) -> list[tuple[str, list[str]]] | None:
        """(role, members) of an `_iam_policy` resource's `policy_data`; None: not readable."""
        found = self.policy_grants(policy_data)
        return None if found is None else [(b.role, b.members) for b in found]

    def policy_grants(self, policy_data: str) -> list[PolicyBinding] | None:
        """The bindings of a `policy_data` (a `data.google_iam_policy` reference or a JSON
        template, tfjson.iam), conditions included; None when not readable."""
        m = REF_RE.fullmatch(policy_data.strip())
        if m and m.group(1) and m.group(2) == "google_iam_policy":
            return self.iam_policies.get(m.group(3))
        return policy_bindings(policy_data)

    def grants(self, conf: Mapping[str, Any]) -> list[PolicyBinding] | None:
        """The bindings of any IAM resource (or instance): a `_policy`'s, or the one of a
        `_member`/`_binding` (raw or checkov-wrapped); None: an unreadable `policy_data`."""
        data = value(conf, "policy_data")
        if data is not None:
            return self.policy_grants(str(data))
        cond = value(conf, "condition", "expression", default="") or None
        return [PolicyBinding(str(value(conf, "role", default="")), members(conf),
                              None if cond is None else str(cond),
                              str(value(conf, "condition", "title", default="")),
                              str(value(conf, "condition", "description", default="")))]


def _entries(section: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    if isinstance(section, dict):
        for name, conf in section.items():
            if isinstance(conf, dict):
                yield name, conf


def facts_from_document(
    doc: Mapping[str, Any], *, env: str | None = None, cmek: bool | None = None
) -> StackFacts:
    """Facts read from a parsed `cdk.tf.json`; `env`/`cmek` given here win over the file.

    Without an explicit value, the environment is the google provider's `env` default label
    and CMEK is on when that provider carries the label `cmek: on` or GPUB_ENV_CMEK=1 is set
    (bin/check passes both from the environment settings, so the labels are a fallback for
    running checkov by hand).
    """
    labels: dict[str, Any] = {}
    providers = doc.get("provider", {}).get("google", [])
    for p in providers if isinstance(providers, list) else [providers]:
        if isinstance(p, dict) and isinstance(p.get("default_labels"), dict):
            labels = p["default_labels"]
            break
    if env is None:
        env = labels.get("env") if isinstance(labels.get("env"), str) else None
    if cmek is None:
        cmek = is_true(labels.get("cmek")) or is_true(os.environ.get("GPUB_ENV_CMEK", ""))
    resources = doc.get("resource", {})
    sas = {
        n: str(c.get("account_id", ""))
        for name, conf in _entries(resources.get("google_service_account"))
        for n, c in instances(name, conf)
    }
    sa_projects = {
        n: project
        for name, conf in _entries(resources.get("google_service_account"))
        for n, c in instances(name, conf)
        if isinstance(project := c.get("project"), str) and "${" not in project
    }
    buckets = {
        n: str(c.get("name", ""))
        for name, conf in _entries(resources.get("google_storage_bucket"))
        for n, c in instances(name, conf)
    }
    policies = {name: read_bindings(conf.get("binding", []))
                for name, conf in _entries(doc.get("data", {}).get("google_iam_policy"))}
    local = doc.get("locals", {})
    return StackFacts(
        env=env,
        cmek=bool(cmek),
        service_accounts=sas,
        service_account_projects=sa_projects,
        buckets=buckets,
        iam_policies=policies,
        locals=local if isinstance(local, dict) else {},
        document=doc,
    )


# Facts per stack file, registered by bin/check before the scan (from the environment
# settings); files nobody registered get facts from their own content on first use.
_REGISTERED: dict[str, StackFacts] = {}
_CACHE: dict[str, StackFacts] = {}
# (scanned_file, root) -> facts: a scan asks once per resource and rule (tens of thousands
# of times at 1,000 clients); forgotten whenever the registrations change.
_LOOKUPS: dict[tuple[str, str | None], StackFacts] = {}


def register_facts(path: Path | str, facts: StackFacts) -> None:
    _REGISTERED[str(Path(path).resolve())] = facts
    _LOOKUPS.clear()


def facts_for_scanned_file(scanned_file: str, root: str | None = None) -> StackFacts:
    """Facts for checkov's `scanned_file` ("/<path relative to the scan root or cwd>")."""
    hit = _LOOKUPS.get((scanned_file, root))
    if hit is None:
        hit = _LOOKUPS[(scanned_file, root)] = _facts_for_scanned_file(scanned_file, root)
    return hit


def _facts_for_scanned_file(scanned_file: str, root: str | None) -> StackFacts:
    rel = scanned_file.lstrip("/")
    candidates = [Path(scanned_file), Path(root or os.getcwd()) / rel]
    for registered, facts in _REGISTERED.items():
        if registered.endswith("/" + rel) or registered == scanned_file:
            return facts
    for cand in candidates:
        key = str(cand.resolve()) if cand.is_file() else ""
        if not key:
            continue
        if key in _REGISTERED:
            return _REGISTERED[key]
        if key not in _CACHE:
            try:
                doc = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                doc = {}
            _CACHE[key] = facts_from_document(doc if isinstance(doc, dict) else {})
        return _CACHE[key]
    return StackFacts()



# The groups reader needs nothing above; its names are part of this package's interface.
from tfjson.groups import expand_groups as expand_groups  # noqa: E402
from tfjson.groups import group_heads as group_heads  # noqa: E402
from tfjson.groups import group_of as group_of  # noqa: E402
from tfjson.groups import shard_of_document as shard_of_document  # noqa: E402
from tfjson.groups import split_groups as split_groups  # noqa: E402
from tfjson.groups import stack_group as stack_group  # noqa: E402
from tfjson.groups import synthesized_stacks as synthesized_stacks  # noqa: E402
from tfjson.groups import watched_paths as watched_paths  # noqa: E402
