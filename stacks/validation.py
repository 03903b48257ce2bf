"""Checks of the strings settings hand to Google and to Terraform (pure; one-line errors).

Every check raises ValueError naming the field and what is allowed. Strings from settings end
up in Terraform JSON, where `${...}` and `%{...}` are template sequences evaluated at plan time
(developer.hashicorp.com/terraform/language/expressions/strings: "$${" and "%%{" are the
literal escapes; in JSON syntax every string is a template, developer.hashicorp.com/terraform/
language/syntax/json). So the fields with a grammar (labels, emails, principals, time zones,
cron) refuse `$`, `{` and `%` outright, and free text is escaped with `terraform_escape`.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from functools import lru_cache

from stacks.layout import CLIENT_SA_PREFIX, INPUTS

# Labels (cloud.google.com/resource-manager/docs/labels-overview#requirements): at most 64 per
# resource; keys 1-63 characters, starting with a lowercase letter, of lowercase letters,
# digits, `_` and `-`; values 0-63 of the same (international letters are allowed by Google,
# not by us: they would not survive every API that echoes labels).
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
LABELS_MAX = 64
# A conservative address: none of `$`, `{`, `%` (template characters) nor spaces.
EMAIL_RE = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
EMAIL_MAX = 254  # RFC 5321 forward-path limit
DOMAIN_RE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")
# A service account's description: "must be less than or equal to 256 UTF-8 bytes"
# (cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts#ServiceAccount).
SA_DESCRIPTION_MAX_BYTES = 256
# Principal identifiers a client's people may be (cloud.google.com/iam/docs/
# principal-identifiers): Google accounts, groups, service accounts, a Workspace/Cloud
# Identity domain, and federated identities of workforce or workload identity pools. Never
# allUsers/allAuthenticatedUsers, deleted principals, or "all service accounts of a project"
# (principalSet://cloudresourcemanager...: every account, client-<c> of other clients too).
_SEGMENT = r"[A-Za-z0-9._:@+=-]+"
_POOL = (r"(locations/global/workforcePools/[a-z0-9-]{4,63}"
         r"|projects/[0-9]{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32})")
PRINCIPAL_FORMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("user:EMAIL", re.compile(r"^user:(?P<email>.+)$")),
    ("group:EMAIL", re.compile(r"^group:(?P<email>.+)$")),
    ("serviceAccount:EMAIL", re.compile(r"^serviceAccount:(?P<email>.+)$")),
    ("domain:DOMAIN", re.compile(r"^domain:(?P<domain>.+)$")),
    ("principal://iam.googleapis.com/<pool>/subject/SUBJECT",
     re.compile(rf"^principal://iam\.googleapis\.com/{_POOL}/subject/{_SEGMENT}(/{_SEGMENT})*$")),
    ("principalSet://iam.googleapis.com/<pool>/group/GROUP",
     re.compile(rf"^principalSet://iam\.googleapis\.com/{_POOL}/group/{_SEGMENT}$")),
    ("principalSet://iam.googleapis.com/<pool>/attribute.NAME/VALUE",
     re.compile(rf"^principalSet://iam\.googleapis\.com/{_POOL}/attribute\.[a-z0-9_]+/"
                rf"{_SEGMENT}(/{_SEGMENT})*$")),
)
# unix-cron (cloud.google.com/scheduler/docs/configuring/cron-job-schedules): minute, hour,
# day of month, month, day of week; `*`, lists, ranges, steps; month and day names.
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
               ("month", 1, 12), ("day of week", 0, 7))
MONTHS = {m: i + 1 for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
TEMPLATE_MARKS = ("${", "%{")


def terraform_escape(text: str) -> str:
    """`text` as a Terraform template literal: `${` -> `$${`, `%{` -> `%%{`."""
    return text.replace("${", "$${").replace("%{", "%%{")


def check_no_template(field: str, value: str) -> None:
    for mark in TEMPLATE_MARKS:
        if mark in value:
            raise ValueError(f"{field}: {value!r} holds {mark!r}, which Terraform evaluates as "
                             "a template; remove it")


def check_labels(field: str, labels: Mapping[str, str], reserved: Iterable[str] = ()) -> None:
    taken = sorted(set(labels) & set(reserved))
    if taken:
        raise ValueError(f"{field}: {', '.join(taken)} is set by the platform; choose another "
                         "key")
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key):
            raise ValueError(f"{field}: key {key!r} is not a valid GCP label: keys are 1-63 "
                             "lowercase letters, digits, '_' or '-', starting with a letter")
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            raise ValueError(f"{field}: {key}={value!r} is not a valid GCP label: values are "
                             "0-63 lowercase letters, digits, '_' or '-'")
    if len(labels) > LABELS_MAX:
        raise ValueError(f"{field}: {len(labels)} labels; Google allows {LABELS_MAX} per "
                         "resource (the platform's own included)")


def check_email(field: str, value: str) -> None:
    if len(value) > EMAIL_MAX or not EMAIL_RE.match(value):
        raise ValueError(f"{field} must be an email address (letters, digits, '.', '_', "
                         f"'+', '-' before '@'; at most {EMAIL_MAX} characters); got {value!r}")


def check_principal(value: str) -> None:
    check_no_template("principal", value)
    for _, pattern in PRINCIPAL_FORMS:
        m = pattern.match(value)
        if m is None:
            continue
        groups = m.groupdict()
        if groups.get("email") is not None:
            check_email("principal", groups["email"])
        if groups.get("domain") is not None and not DOMAIN_RE.match(groups["domain"]):
            raise ValueError(f"principal: {groups['domain']!r} is not a domain")
        return
    forms = "; ".join(form for form, _ in PRINCIPAL_FORMS)
    raise ValueError(f"principal: {value!r} is not an allowed IAM principal ({forms})")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_time_zone(value: str) -> None:
    """An IANA time zone (Cloud Scheduler: "the time zone name from the tz database")."""
    if value not in _zones():
        raise ValueError(f"time_zone: {value!r} is not an IANA time zone (such as "
                         "'Europe/Amsterdam' or 'Etc/UTC')")


def _cron_value(token: str, low: int, high: int, names: Mapping[str, int]) -> int:
    number = names.get(token.upper()) if token.isalpha() else None
    if number is None:
        if not token.isdigit():
            raise ValueError(token)
        number = int(token)
    if not low <= number <= high:
        raise ValueError(token)
    return number


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int]) -> None:
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ValueError(item)
        if base == "*":
            continue
        start, _, end = base.partition("-")
        first = _cron_value(start, low, high, names)
        if end and _cron_value(end, low, high, names) < first:
            raise ValueError(item)


def check_cron(value: str) -> None:
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"cron must have 5 fields (minute hour day month weekday); got "
                         f"{value!r}")
    for text, (name, low, high) in zip(fields, CRON_FIELDS, strict=True):
        names = MONTHS if name == "month" else DAYS if name == "day of week" else {}
        try:
            _cron_field(text, low, high, names)
        except ValueError:
            raise ValueError(f"cron: {name} field {text!r} of {value!r} is not unix-cron "
                             f"({low}-{high}, '*', lists, ranges and '/steps')") from None


def check_input_prefix(value: str) -> None:
    check_no_template("input_prefix", value)
    if value.startswith("/") or ".." in value.split("/") or any(c in value for c in "\n\r"):
        raise ValueError(f"input_prefix: {value!r} must be relative to {INPUTS}<job>/ (no "
                         "leading '/', no '..')")


def client_sa_description(name: str, contact: str | None) -> str:
    """The client account's description; at most 256 UTF-8 bytes."""
    extra = f" (contact {contact})" if contact else ""
    text = f"Client {name}{extra}: uploads inputs, reads outputs and results"
    size = len(text.encode("utf-8"))
    if size > SA_DESCRIPTION_MAX_BYTES:
        raise ValueError(f"contact: {contact!r} makes {CLIENT_SA_PREFIX}{name}'s description "
                         f"{size} "
                         f"bytes; IAM allows {SA_DESCRIPTION_MAX_BYTES}")
    return text
