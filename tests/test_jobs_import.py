"""Import of Batch job JSON: exact round trips, refusals naming the JSON path, the CLI."""

# ruff: noqa: E501  (one validation case per line reads better than wrapped tables)

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import batch_v1

from jobs import JobSpec, JobSpecError
from jobs.import_cli import main, to_python
from jobs.registry import ALL_JOBS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests/fixtures/batch_json").glob("*.json"))
L4 = ROOT / "tests/fixtures/batch_json/l4_spot_retries.json"


def test_fixtures_present() -> None:
    names = {p.stem for p in FIXTURES}
    assert {"seed_003_thg_template", "l4_spot_retries", "a100_secrets_notifications",
            "t4_n1_script_gcs", "numbers_as_strings"} <= names  # fmt: skip


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_round_trip_is_exact(path: Path) -> None:
    text = path.read_text()
    spec = JobSpec.from_batch_json(text)
    rendered = json.dumps(spec.to_batch_json())
    assert batch_v1.Job.from_json(rendered) == batch_v1.Job.from_json(text)


def test_imported_fields() -> None:
    spec = JobSpec.from_batch_json(L4.read_text(), name="spellcheck")
    assert spec.provisioning == "spot" and spec.retry_on_preemption is True
    assert spec.gpus is not None and (spec.gpus.type, spec.gpus.count) == ("nvidia-l4", 1)
    assert (spec.task_count, spec.parallelism, spec.batch_size) == (10, 2, 64)
    a100 = JobSpec.from_batch_json((L4.parent / "a100_secrets_notifications.json").read_text())
    assert a100.secrets["HF_TOKEN"] == "projects/ml/secrets/hf-token/versions/3"
    assert [n.job_state for n in a100.notifications] == ["FAILED", None, None]
    assert (a100.input_format, a100.failure_budget) == ("parquet", 0.02)
    assert a100.no_external_ip_address is True
    t4 = JobSpec.from_batch_json((L4.parent / "t4_n1_script_gcs.json").read_text())
    assert t4.script is not None and t4.image is None
    assert t4.retry_exit_codes == [50002, 50004]
    assert [v.mount_path for v in t4.volumes] == ["/mnt/share", "/mnt/models"]
    nums = JobSpec.from_batch_json((L4.parent / "numbers_as_strings.json").read_text())
    assert (nums.cpu_milli, nums.memory_mib, nums.max_retry_count) == (2000, 4096, 2)
    assert (nums.files_per_task, nums.tasks_per_node) == (25, 2)


def test_declared_jobs_round_trip_without_environment() -> None:
    for spec in ALL_JOBS.values():
        text = json.dumps(spec.to_batch_json())
        assert JobSpec.from_batch_json(text, name=spec.name).to_batch_json() == json.loads(text)


def _with(path: str, value: Any) -> str:
    job = json.loads(L4.read_text())
    node = job
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if last.isdigit():
        node.append(value)
    else:
        node[last] = value
    return json.dumps(job)


REFUSED = [
    ("allocationPolicy.instances.0.instanceTemplate", "tmpl",
     "allocationPolicy.instances[0].instanceTemplate", "instance template"),
    ("taskGroups.0.taskSpec.environment.encryptedVariables", {"A": "x"},
     "taskGroups[0].taskSpec.environment.encryptedVariables", "Secret Manager"),
    ("taskGroups.0.taskSpec.runnables.1", {"barrier": {}},
     "taskGroups[0].taskSpec.runnables[1]", "one runnables element"),
    ("taskGroups.1", {"taskSpec": {}}, "taskGroups[1]", "one taskGroups element"),
    ("taskGroups.0.taskSpec.runnables.0.container.options", "--gpus all",
     "taskGroups[0].taskSpec.runnables[0].container.options", "does not model"),
    ("allocationPolicy.instances.0.policy.disks", [], "allocationPolicy.instances[0].policy.disks",
     "does not model"),
    ("status", {"state": "RUNNING"}, "status", "output-only"),
    ("taskGroups.0.taskSpec.compute", {}, "taskGroups[0].taskSpec.compute",
     "not a field of Batch TaskSpec"),
    ("allocationPolicy.instances.0.installGpuDrivers", False,
     "allocationPolicy.instances[0].installGpuDrivers", "always renders true"),
    ("taskGroups.0.taskSpec.lifecyclePolicies.0.action", "FAIL_TASK",
     "taskGroups[0].taskSpec.lifecyclePolicies[0].action", "RETRY_TASK"),
    ("allocationPolicy.instances.0.policy.provisioningModel", "PREEMPTIBLE",
     "allocationPolicy.instances[0].policy.provisioningModel", "STANDARD and SPOT"),
    ("taskGroups.0.taskSpec.maxRunDuration", "1.5s", "taskGroups[0].taskSpec.maxRunDuration",
     "whole seconds"),
    ("taskGroups.0.taskSpec.maxRetryCount", 0, "taskGroups[0].taskSpec.maxRetryCount",
     "at least 1 retry"),
    ("taskGroups.0.taskSpec.environment.variables", {"GPUB_BATCH_SIZE": "many"},
     "taskGroups[0].taskSpec.environment.variables.GPUB_BATCH_SIZE", "must be a number"),
    ("allocationPolicy.instances.0.policy.accelerators", [{"type": "nvidia-l4", "count": "2"}],
     "allocationPolicy.instances[0].policy.accelerators[0]", "g2-standard-8 carries 1 nvidia-l4; got 2"),
    ("allocationPolicy.instances.0.policy.machineType", "z9-huge",
     "allocationPolicy.instances[0].policy.machineType", "unknown machine type"),
    ("taskGroups.0.taskSpec.computeResource", {"memoryMib": "90000"},
     "taskGroups[0].taskSpec.computeResource.memoryMib", "memoryMib 90000 exceeds g2-standard-8"),
    ("allocationPolicy.location", {"allowedLocations": ["zones/europe-west4-a", "regions/europe-west4"]},
     "allocationPolicy.location.allowedLocations[1]", "leading 'regions/<r>'"),
    ("taskGroups.0.taskCount", "ten", "taskGroups.taskCount", "invalid value"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "value", "path", "text"), REFUSED, ids=[r[2] for r in REFUSED])
def test_refused_fields_name_their_path(where: str, value: Any, path: str, text: str) -> None:
    with pytest.raises(JobSpecError) as info:
        JobSpec.from_batch_json(_with(where, value))
    assert info.value.field == path, str(info.value)
    assert text in info.value.message, str(info.value)


def test_gpu_job_without_boot_disk_is_refused_not_changed() -> None:
    job = json.loads(L4.read_text())
    del job["allocationPolicy"]["instances"][0]["policy"]["bootDisk"]
    with pytest.raises(JobSpecError) as info:
        JobSpec.from_batch_json(json.dumps(job))
    assert info.value.field == "allocationPolicy.instances[0].policy.bootDisk"


def test_spot_without_preemption_retry_is_refused() -> None:
    job = json.loads(L4.read_text())
    del job["taskGroups"][0]["taskSpec"]["lifecyclePolicies"]
    with pytest.raises(JobSpecError) as info:
        JobSpec.from_batch_json(json.dumps(job))
    assert info.value.field == "taskGroups[0].taskSpec.lifecyclePolicies"
    assert "retry on preemption" in str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{\n  "taskGroups": [\n    {"taskCount": 1,}\n  ]\n}', "line 3, column 21"),
        ('{"labels": {"a": "b"}', "line 1, column 22"),
        ("", "line 1, column 1"),
    ],
)
def test_malformed_json_gives_line_and_column(text: str, where: str) -> None:
    with pytest.raises(JobSpecError) as info:
        JobSpec.from_batch_json(text)
    assert f"malformed JSON at {where}" in str(info.value)


def test_not_an_object_and_duplicates() -> None:
    with pytest.raises(JobSpecError, match="JSON object"):
        JobSpec.from_batch_json("[]")
    with pytest.raises(JobSpecError, match="duplicate key 'labels'"):
        JobSpec.from_batch_json('{"labels": {}, "labels": {}}')
    with pytest.raises(JobSpecError, match="one task group"):
        JobSpec.from_batch_json("{}")


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_import_job_prints_code_that_renders_the_input(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(path), "--name", "migrated"]) == 0
    code = capsys.readouterr().out
    namespace: dict[str, Any] = {}
    exec(compile(code, "<import-job>", "exec"), namespace)
    spec = namespace["SPEC"]
    assert spec.name == "migrated"
    rendered = json.dumps(spec.to_batch_json())
    assert batch_v1.Job.from_json(rendered) == batch_v1.Job.from_json(path.read_text())
    assert to_python(spec).count("SPEC = JobSpec(") == 1


def test_import_job_cli_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"taskGroups": [}')
    missing = tmp_path / "missing.json"
    for target in (bad, missing):
        out = subprocess.run(
            [str(ROOT / "bin/import-job"), str(target)], capture_output=True, text=True
        )
        assert out.returncode == 2
        assert out.stdout == ""
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = subprocess.run([str(ROOT / "bin/import-job"), str(bad)], capture_output=True, text=True)
    assert "line 1, column 17" in out.stderr


def test_import_job_cli_runs_from_elsewhere(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(ROOT / "bin/import-job"), str(L4)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert 'name="l4-spot-retries"' in out.stdout
    assert sys.executable  # the shim uses the repository's venv, not this interpreter
