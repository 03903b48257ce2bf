"""Each name limit lives in one place, and the model refuses what the stack would refuse.

The service-account id limit was checked three times, and JobSpec accepted names
the stack then refused. Now: `stacks.settings.check_service_account_id` is the one check of
IAM's account id rule, client names are sized from it, and the longest name JobSpec accepts
synthesizes in a stack (its workflow, trigger and a client's schedule included).
"""

from __future__ import annotations

import tempfile

import pytest
from pydantic import ValidationError

from jobs.declared import uppercase
from jobs.spec import NAME_MAX
from stacks.app import synth
from stacks.batch_job import WORKFLOW_ID_MAX
from stacks.environments import dev
from stacks.settings import (
    CLIENT_NAME_MAX,
    SA_ID_MAX,
    ClientSettings,
    Schedule,
    check_client_name,
    check_service_account_id,
)


@pytest.mark.parametrize("account_id", ["run-acme", "client-" + "a" * 23, "abcdef"])
def test_service_account_ids_iam_accepts(account_id: str) -> None:
    check_service_account_id(account_id)


@pytest.mark.parametrize("account_id", ["abcde", "a" * 31, "run-acme-", "1run-acme", "Run-acme",
                                        "run_acme"])
def test_service_account_ids_iam_refuses(account_id: str) -> None:
    with pytest.raises(ValueError, match="service account id"):
        check_service_account_id(account_id)


def test_client_names_are_sized_by_the_service_account_limit() -> None:
    longest = "a" * CLIENT_NAME_MAX
    check_client_name(longest)
    check_service_account_id(dev().client_sa_id(longest))
    check_service_account_id(dev().run_sa_id(longest))
    assert len(dev().client_sa_id(longest)) == SA_ID_MAX
    with pytest.raises(ValueError, match="client name"):
        check_client_name(longest + "a")


def test_the_longest_job_name_the_model_accepts_synthesizes() -> None:
    name = "j" * NAME_MAX
    assert len(dev().job_workflow(name)) <= WORKFLOW_ID_MAX
    spec = uppercase.SPEC.model_copy(update={"name": name})
    env = dev().model_copy(update={"jobs": [spec], "clients": [ClientSettings(
        name="acme", jobs=[name], schedules=[Schedule(job=name, cron="0 2 * * *")])]})
    out = synth([env], tempfile.mkdtemp())
    assert (out / "jobs" / env.stack_name / f"{name}.json").is_file()


def test_one_character_more_is_refused_by_the_model() -> None:
    with pytest.raises(ValidationError, match="name"):
        uppercase.SPEC.model_validate({**uppercase.SPEC.model_dump(), "name": "j" * (NAME_MAX + 1)})
