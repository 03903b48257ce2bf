"""Each defect of the deployability issue, reintroduced into a copy of
the synthesized stack (bucket IAM or the deployed workflow source), makes an end-to-end
scenario fail. The same scenarios pass on the stack as synthesized (test_e2e_tenancy.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._helpers.e2e_cloud import (
    Cloud,
    blocking_jobs_create,
    cancelled_not_final,
    check_cancel,
    check_rerun,
    check_story,
    no_delete_for_run_identity,
    no_list_for_run_identity,
    start_cloud,
)

pytestmark = pytest.mark.slow

Scenario = Callable[..., Any]
DEFECTS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], Scenario, str]] = {
    # defect -> (the stack mutation, the scenario that must notice it, what the failure names)
    "no-list-grant-for-run-identity": (no_list_for_run_identity, check_story,
                                       "storage.objects.list"),
    "no-delete-permission": (no_delete_for_run_identity, check_rerun, "storage.objects.delete"),
    "blocking-jobs-create": (blocking_jobs_create, check_story, "still SCHEDULED after"),
    "cancelled-not-final": (cancelled_not_final, check_cancel, "still waits"),
}


@pytest.fixture(scope="module")
def cloud(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    yield from start_cloud(synth_dir, tmp_path_factory.mktemp("e2e-defects"))


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_a_reintroduced_defect_fails_an_end_to_end_scenario(cloud: Cloud, defect: str) -> None:
    mutate, scenario, names = DEFECTS[defect]
    cloud.set_stack(mutate(json.loads(cloud.pristine)))
    arc = cloud.eventarc()  # reads the mutated workflow source
    try:
        with pytest.raises(AssertionError) as failed:
            scenario(cloud, arc)
    finally:
        arc.abandon()
        cloud.set_stack(None)
    assert names in str(failed.value), str(failed.value)[-2000:]
