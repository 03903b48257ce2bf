"""Batch job documents in the shapes of Google's public samples (batch-samples and the Batch
docs; written for this repo, not copied) import into typed specs and render back exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import batch_v1

from jobs import from_batch_json, to_batch_json
from jobs.batch_proto import OUTPUT_ONLY, same_job
from jobs.importer import import_job

SAMPLES = Path(__file__).parent / "fixtures" / "batch_samples"
FILES = sorted(SAMPLES.iterdir())


def _expected(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())  # JSON is YAML too
    return {k: v for k, v in data.items() if k not in OUTPUT_ONLY}


def test_the_sample_shapes_are_all_here() -> None:
    assert {p.stem for p in FILES} >= {
        "gpu_driver_install", "gcs_volume_mount_options", "pubsub_notifications",
        "spot_retry_exit_codes", "custom_network", "boot_disk_image", "service_account",
        "run_in_order", "secret_manager_variable", "multi_runnable_barrier",
        "config_trailing_commas", "block_style_config", "flex_start_reservation",
        "no_machine_type_ops_agent",
    }  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_sample_round_trips_to_an_equal_proto(path: Path) -> None:
    spec = from_batch_json(path.read_text(), name="sample")
    rendered = json.dumps(to_batch_json(spec))
    assert batch_v1.Job.from_json(rendered) == batch_v1.Job.from_json(json.dumps(_expected(path)))


def load(name: str) -> Any:
    return from_batch_json((SAMPLES / name).read_text(), name="sample")


def test_gpu_with_driver_installation_is_typed() -> None:
    spec = load("gpu_driver_install.json")
    assert spec.gpus is not None and (spec.gpus.type, spec.gpus.count) == ("nvidia-tesla-t4", 1)
    assert spec.install_gpu_drivers is True and spec.boot_disk_gb is None
    assert (spec.region, spec.zones) == ("us-central1", ["us-central1-a", "us-central1-b"])
    assert spec.batch_overrides == {}


def test_spot_exit_codes_keep_their_order() -> None:
    spec = load("spot_retry_exit_codes.json")
    assert spec.provisioning == "spot" and spec.retry_on_preemption is True
    assert spec.retry_exit_codes == [1, 2, 50001]  # the renderer used to move 50001 first
    policy = to_batch_json(spec)["taskGroups"][0]["taskSpec"]["lifecyclePolicies"][0]
    assert policy["actionCondition"]["exitCodes"] == [1, 2, 50001]
    assert spec.batch_overrides == {}


def test_exit_codes_compare_regardless_of_order() -> None:
    job = _expected(SAMPLES / "spot_retry_exit_codes.json")
    reordered = json.loads(json.dumps(job))
    reordered["taskGroups"][0]["taskSpec"]["lifecyclePolicies"][0]["actionCondition"] = {
        "exitCodes": [50001, 2, 1]
    }
    assert same_job(job, reordered)
    reordered["taskGroups"][0]["taskSpec"]["lifecyclePolicies"][0]["actionCondition"] = {
        "exitCodes": [50001, 2]
    }
    assert not same_job(job, reordered)


def test_gcs_volume_mount_options_and_defaults() -> None:
    spec = load("gcs_volume_mount_options.json")
    [volume] = spec.volumes
    assert volume.mount_options == ["--implicit-dirs", "--file-mode=0644"]
    # requireHostsFile: false and permissiveSsh: false are proto defaults: nothing to keep.
    assert spec.batch_overrides == {}


def test_multi_runnable_job_has_a_typed_list_and_a_main_runnable() -> None:
    spec = load("multi_runnable_barrier.json")
    assert spec.image == "us-docker.pkg.dev/example-project/ml/trainer:1.4"  # the main one
    assert [r.display_name for r in spec.setup] == ["monitor", "fetch", None]
    assert spec.setup[0].background and spec.setup[1].timeout_s == 900
    assert spec.setup[2].barrier == "inputs-ready"
    assert [r.barrier for r in spec.teardown] == ["", None]
    assert spec.teardown[1].always_run and spec.teardown[1].ignore_exit_status
    # What the typed model lacks stays, at its index: the main runnable's options and env.
    main = spec.batch_overrides["taskGroups"][0]["taskSpec"]["runnables"][3]
    assert main == {
        "container": {"options": "--shm-size=16g"},
        "displayName": "train",
        "environment": {"variables": {"EPOCHS": "3"}},
    }


def test_flex_start_job_with_a_reservation_round_trips() -> None:
    spec = load("flex_start_reservation.json")
    assert (spec.provisioning, spec.reservation) == ("flex_start", "NO_RESERVATION")
    assert spec.retry_exit_codes == [50001, 50002, 50004]
    assert spec.batch_overrides == {}
    policy = to_batch_json(spec)["allocationPolicy"]["instances"][0]["policy"]
    assert (policy["provisioningModel"], policy["reservation"]) == ("FLEX_START", "NO_RESERVATION")


def test_yaml_with_trailing_commas_and_a_custom_machine() -> None:
    spec = load("config_trailing_commas.yaml")
    assert spec.machine_type == "e2-custom-32-98304"
    assert spec.commands == ["--preset", "slow"]
    assert spec.batch_overrides == {}  # volumes: [] is the proto default


def test_block_yaml_drops_output_only_fields_with_a_note() -> None:
    result = import_job((SAMPLES / "block_style_config.yaml").read_text(), name="wrf")
    assert [n for n in result.notes if "output-only" in n] == [
        "dropped output-only field name (Batch ignores it on create)",
        "dropped output-only field uid (Batch ignores it on create)",
        "dropped output-only field status (Batch ignores it on create)",
    ]
    overrides = result.spec.batch_overrides
    assert overrides["allocationPolicy"] == {"placement": {"collocation": "COLLOCATED"}}
    assert overrides["taskGroups"][0]["requireHostsFile"] is True


def test_no_machine_type_and_untyped_volumes_stay_exact() -> None:
    spec = load("no_machine_type_ops_agent.json")
    assert spec.machine_type is None and spec.provisioning == "spot"
    assert spec.volumes == []  # an NFS volume among them: the list stays in batch_overrides
    assert len(spec.batch_overrides["taskGroups"][0]["taskSpec"]["volumes"]) == 2
    assert spec.batch_overrides["allocationPolicy"]["instances"][0] == {"installOpsAgent": True}


def test_passthrough_survives_an_environment_render() -> None:
    from jobs import RenderContext

    env = RenderContext(
        env_name="prod", env_kind="prod", project_id="p", region="us-central1",
        registry_host="us-central1-docker.pkg.dev/p/batch-images",
        job_service_account_email="job-sample@p.iam.gserviceaccount.com",
    )  # fmt: skip
    job = to_batch_json(load("service_account.json"), env)
    assert job["priority"] == "10"
    sa = job["allocationPolicy"]["serviceAccount"]
    assert sa == {
        "email": "job-sample@p.iam.gserviceaccount.com",  # the environment's identity wins
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    }
    batch_v1.Job.from_json(json.dumps(job))  # still a valid job


def test_instance_template_job_stays_valid_in_an_environment() -> None:
    from jobs import RenderContext
    from jobs.batch_proto import problems

    text = json.dumps(
        {
            "taskGroups": [{"taskSpec": {"runnables": [{"script": {"text": "nvidia-smi"}}]}}],
            "allocationPolicy": {"instances": [{"instanceTemplate": "gpu-template-v3"}]},
        }
    )
    spec = from_batch_json(text)
    env = RenderContext(
        env_name="dev", env_kind="dev", project_id="p", region="us-central1",
        registry_host="us-central1-docker.pkg.dev/p/batch-images",
        job_service_account_email="job-x@p.iam.gserviceaccount.com",
    )  # fmt: skip
    job = to_batch_json(spec, env)
    assert job["allocationPolicy"]["instances"] == [{"instanceTemplate": "gpu-template-v3"}]
    assert problems(job) == []
