"""Issue 22: client settings are validated and never reach Terraform as templates.

Today's code accepted every one of the refused values below and wrote it verbatim into the
stack, where Terraform would evaluate `${file("...")}` at plan time.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs import one_line
from stacks.environments import dev
from stacks.settings import ClientSettings, Schedule
from stacks.validation import (
    SA_DESCRIPTION_MAX_BYTES,
    check_cron,
    client_sa_description,
    terraform_escape,
)

INJECTION = '${file("/etc/passwd")}'


def refused(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        ClientSettings(name="acme", jobs=["embed"], **fields)
    return one_line(info.value)


@pytest.mark.parametrize("fields, says", [
    ({"labels": {"team": INJECTION}}, "values are 0-63 lowercase"),
    ({"labels": {"Team": "ml"}}, "key 'Team'"),
    ({"labels": {"client": "other"}}, "client is set by the platform"),
    ({"labels": {f"k{i}": "v" for i in range(65)}}, "Google allows 64"),
    ({"contact": f"{INJECTION}@example.com"}, "contact"),
    ({"contact": "not-an-email"}, "contact must be an email address"),
    ({"principal": f"group:{INJECTION}@example.com"}, "Terraform evaluates as a template"),
    ({"principal": "allUsers"}, "not an allowed IAM principal"),
    ({"principal": "allAuthenticatedUsers"}, "not an allowed IAM principal"),
    ({"principal": "deleted:user:a@example.com?uid=1"}, "not an allowed IAM principal"),
    ({"principal": "principalSet://cloudresourcemanager.googleapis.com/projects/1/type/"
                   "ServiceAccount"}, "not an allowed IAM principal"),
    ({"principal": "group:team@example.com "}, "principal must be an email address"),
])
def test_client_fields_are_refused(fields: dict[str, Any], says: str) -> None:
    assert says in refused(**fields)


@pytest.mark.parametrize("principal", [
    "user:ana@example.com",
    "group:batch-users@acme.example",
    "serviceAccount:uploader@acme-prod.iam.gserviceaccount.com",
    "domain:acme.example",
    "principal://iam.googleapis.com/locations/global/workforcePools/acme-pool/subject/ana",
    "principalSet://iam.googleapis.com/locations/global/workforcePools/acme-pool/group/data",
    "principalSet://iam.googleapis.com/projects/123456789/locations/global/"
    "workloadIdentityPools/github/attribute.repository/acme/uploader",
])
def test_iam_principal_forms_are_accepted(principal: str) -> None:
    assert ClientSettings(name="acme", jobs=["embed"], principal=principal).principal == principal


@pytest.mark.parametrize("schedule, says", [
    ({"time_zone": INJECTION}, "not an IANA time zone"),
    ({"time_zone": "Mars/Olympus"}, "not an IANA time zone"),
    ({"cron": "61 2 * * *"}, "minute field '61'"),
    ({"cron": "0 2 * * MON-XYZ"}, "day of week"),
    ({"cron": "0 2 * *"}, "5 fields"),
    ({"cron": "*/0 * * * *"}, "minute field"),
    ({"input_prefix": INJECTION}, "Terraform evaluates as a template"),
    ({"input_prefix": "../other"}, "relative"),
])
def test_schedule_fields_are_refused(schedule: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as info:
        Schedule(job="embed", **{"cron": "0 2 * * *", **schedule})
    assert says in one_line(info.value)


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 2-4 1,15 JAN-MAR MON-FRI", "0 0 1 1 0",
                                  "5 4 * * 7", "0 9-17/2 * * 1-5"])
def test_unix_cron_is_accepted(cron: str) -> None:
    check_cron(cron)


def test_description_stays_within_256_bytes() -> None:
    """Defect: a service-account description over 256 bytes synthesized."""
    longest = "a" * 64 + "@" + "b" * 160 + ".example"  # a valid address, 233 chars
    with pytest.raises(ValidationError) as info:
        ClientSettings(name="acme", jobs=["embed"], contact=longest)
    assert f"IAM allows {SA_DESCRIPTION_MAX_BYTES}" in one_line(info.value)
    fits = client_sa_description("acme", "data@acme.example")
    assert len(fits.encode()) <= SA_DESCRIPTION_MAX_BYTES


def test_environment_checks_merged_client_labels() -> None:
    base = dev()
    many = {f"k{i}": "v" for i in range(62)}  # + env, managed-by, team, cost-center, client
    client = ClientSettings(name="acme", jobs=["embed"], labels=many)
    with pytest.raises(ValidationError) as info:
        base.model_copy(update={"clients": [client]}).model_validate(
            {**base.model_dump(), "clients": [client.model_dump()]})
    assert "Google allows 64" in one_line(info.value)


def test_environment_emails_refuse_templates() -> None:
    with pytest.raises(ValidationError) as info:
        dev().model_validate({**dev().model_dump(),
                              "quota_contact_email": f"{INJECTION}@example.com"})
    assert "quota_contact_email" in one_line(info.value)


def test_terraform_escape() -> None:
    assert terraform_escape("a ${b} %{c} $${d}") == "a $${b} %%{c} $$${d}"
