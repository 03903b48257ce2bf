"""Which project-wide grants of a stack reach a service account (pure; no checkov).

A principal is reached by a grant that names it (`serviceAccount:<email>`) or by a principal
set that contains it. "All service accounts of a project",
`principalSet://cloudresourcemanager.googleapis.com/projects/<number>/type/ServiceAccount`
(cloud.google.com/iam/docs/principal-identifiers), contains every service account whose email
is `<id>@<that project>.iam.gserviceaccount.com`, whatever resource the grant is on. Counted
as project-wide: every `google_project_iam_member`/`_binding`, and any grant to such a
principal set (an Artifact Registry reader on the repository reaches the whole set), a
member's, a binding's or a binding of an authoritative `_iam_policy`; over an environment's
client shards too (`group_wide_roles`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tfjson import StackFacts, facts_from_document, instances

SA_DOMAIN_RE = re.compile(r"^[^@]+@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$")
PROJECT_SET_RE = re.compile(
    r"^principalSet://cloudresourcemanager\.googleapis\.com/projects/(?P<number>[^/]+)"
    r"/type/ServiceAccount$")
NUMBER_REF_RE = re.compile(r"^\$\{data\.google_project\.([A-Za-z0-9_-]+)\.number\}$")


def _grants(doc: Mapping[str, Any], facts: StackFacts) -> Iterator[tuple[str, str, str]]:
    """(address, role, member) of every IAM member/binding/policy instance of the stack (a
    policy's bindings read by tfjson.iam)."""
    for rtype, named in (doc.get("resource") or {}).items():
        if not rtype.endswith(("_iam_member", "_iam_binding", "_iam_policy")):
            continue
        for name, conf in (named or {}).items():
            for address, body in instances(name, conf):
                for binding in facts.grants(body) or []:
                    for member in binding.members:
                        yield f"{rtype}.{address}", binding.role, member


def _set_project(doc: Mapping[str, Any], number: str) -> str | None:
    """The project id a principal set's number stands for; None: unknown (counts as any)."""
    m = NUMBER_REF_RE.match(number)
    if m is None:
        return None
    data = ((doc.get("data") or {}).get("google_project") or {}).get(m.group(1)) or {}
    project = data.get("project_id")
    return str(project) if project else None


def project_wide_roles(doc: Mapping[str, Any], email: str) -> list[tuple[str, str]]:
    """(role, grant address) of every project-wide grant that reaches `email`."""
    facts = facts_from_document(doc)
    m = SA_DOMAIN_RE.match(email)
    project = m.group(1) if m else None
    out = []
    for address, role, raw in _grants(doc, facts):
        member = facts.resolve_text(raw)
        project_level = address.startswith(("google_project_iam_member.",
                                            "google_project_iam_binding."))
        if member == f"serviceAccount:{email}" and project_level:
            out.append((role, address))
            continue
        s = PROJECT_SET_RE.match(member)
        if s is None:
            continue
        set_project = _set_project(doc, s.group("number"))
        if set_project is None or set_project == project:
            out.append((role, address))
    return out


def group_wide_roles(docs: Iterable[Mapping[str, Any]], email: str) -> list[tuple[str, str]]:
    """`project_wide_roles` over every stack of an environment (its platform stack and client
    shards, `tfjson.stack_group`): a project grant reaches the account from any state."""
    return [found for doc in docs for found in project_wide_roles(doc, email)]
