"""Import of Batch job JSON: exact round trips, refusals naming the JSON path, the CLI."""

# ruff: noqa: E501  (one validation case per line reads better than wrapped tables)

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import batch_v1

from jobs import JobSpecError, from_batch_json, to_batch_json
from jobs.batch_proto import OUTPUT_ONLY
from jobs.registry import ALL_JOBS
from policies.import_cli import main, to_python

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
    spec = from_batch_json(text)
    rendered = json.dumps(to_batch_json(spec))
    assert batch_v1.Job.from_json(rendered) == batch_v1.Job.from_json(text)


def test_imported_fields() -> None:
    spec = from_batch_json(L4.read_text(), name="spellcheck")
    assert spec.provisioning == "spot" and spec.retry_on_preemption is True
    assert spec.gpus is not None and (spec.gpus.type, spec.gpus.count) == ("nvidia-l4", 1)
    assert (spec.task_count, spec.parallelism, spec.batch_size) == (10, 2, 64)
    a100 = from_batch_json((L4.parent / "a100_secrets_notifications.json").read_text())
    assert a100.secrets["HF_TOKEN"] == "projects/ml/secrets/hf-token/versions/3"
    assert [n.job_state for n in a100.notifications] == ["FAILED", None, None]
    assert (a100.input_format, a100.failure_budget) == ("parquet", 0.02)
    assert a100.no_external_ip_address is True
    t4 = from_batch_json((L4.parent / "t4_n1_script_gcs.json").read_text())
    assert t4.script is not None and t4.image is None
    assert t4.retry_exit_codes == [50001, 50002, 50004] and t4.retry_on_preemption
    assert [v.mount_path for v in t4.volumes] == ["/mnt/share", "/mnt/models"]
    nums = from_batch_json((L4.parent / "numbers_as_strings.json").read_text())
    assert (nums.cpu_milli, nums.memory_mib, nums.max_retry_count) == (2000, 4096, 2)
    assert (nums.files_per_task, nums.tasks_per_node) == (25, 2)


def test_declared_jobs_round_trip_without_environment() -> None:
    for spec in ALL_JOBS.values():
        text = json.dumps(to_batch_json(spec))
        assert to_batch_json(from_batch_json(text, name=spec.name)) == json.loads(text)


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


# Each of these used to be refused; Batch accepts them, so they import (typed or in
# batch_overrides) and render back to an equal proto.
ACCEPTED = [
    ("allocationPolicy.instances", [{"instanceTemplate": "tmpl", "installGpuDrivers": True}]),
    ("taskGroups.0.taskSpec.environment.encryptedVariables", {"keyName": "k", "cipherText": "x"}),
    ("taskGroups.0.taskSpec.runnables.1", {"barrier": {}}),
    ("taskGroups.1", {"taskSpec": {"runnables": [{"script": {"text": "echo 2"}}]}}),
    ("taskGroups.0.taskSpec.runnables.0.container.options", "--gpus all"),
    ("taskGroups.0.taskSpec.runnables.0.environment", {"variables": {"A": "1"}}),
    ("allocationPolicy.instances.0.policy.disks", []),
    ("taskGroups.0.taskSpec.volumes", []),
    ("taskGroups.0.requireHostsFile", False),
    ("taskGroups.0.permissiveSsh", False),
    ("allocationPolicy.instances.0.installGpuDrivers", False),
    ("taskGroups.0.taskSpec.lifecyclePolicies.0.action", "FAIL_TASK"),
    ("allocationPolicy.instances.0.policy.provisioningModel", "PREEMPTIBLE"),
    ("allocationPolicy.instances.0.policy.provisioningModel", "FLEX_START"),
    ("allocationPolicy.instances.0.policy.provisioningModel", "RESERVATION_BOUND"),
    ("allocationPolicy.instances.0.policy.reservation", "projects/my-proj/reservations/r-l4"),
    ("taskGroups.0.taskSpec.maxRunDuration", "1.5s"),
    ("taskGroups.0.taskSpec.maxRetryCount", 0),
    ("taskGroups.0.taskSpec.environment.variables", {"GPUB_BATCH_SIZE": "many"}),
    ("taskGroups.0.taskSpec.environment.variables", {"lower-case.name": "x"}),
    ("allocationPolicy.instances.0.policy.machineType", "z9-standard-8"),  # unknown: a warning
    ("allocationPolicy.instances.0.policy.bootDisk", {"sizeGb": "30"}),
    ("allocationPolicy.location", {"allowedLocations": ["zones/europe-west4-a", "regions/europe-west4"]}),
    ("labels", {"Team": "ML"}),
    ("taskGroups.0.taskSpec.computeResource.bootDiskMib", "102400"),
    ("allocationPolicy.instances.0.policy.accelerators",
     [{"type": "nvidia-l4", "count": "1"}, {"type": "nvidia-l4", "count": "1"}]),
]  # fmt: skip


@pytest.mark.parametrize(("where", "value"), ACCEPTED, ids=[f"{a[0]}={a[1]}" for a in ACCEPTED])
def test_valid_batch_jobs_import_exactly(where: str, value: Any) -> None:
    text = _with(where, value)
    spec = from_batch_json(text)
    assert batch_v1.Job.from_json(json.dumps(to_batch_json(spec))) == batch_v1.Job.from_json(text)


REFUSED = [
    ("taskGroups.0.taskSpec.compute", {}, "taskGroups[0].taskSpec.compute",
     "not a field of Batch TaskSpec; did you mean 'computeResource'?"),
    ("allocationPolicy.instances.0.policy.accelerators", [{"type": "nvidia-l4", "count": "2"}],
     "allocationPolicy.instances[0].policy.accelerators[0]", "g2-standard-8 carries 1 nvidia-l4; got 2"),
    ("taskGroups.0.taskSpec.computeResource", {"memoryMib": "90000"},
     "taskGroups[0].taskSpec.computeResource.memoryMib", "memoryMib 90000 exceeds g2-standard-8"),
    ("taskGroups.0.taskCount", "ten", "taskGroups[0].taskCount", "must be an integer"),
    ("taskGroups.0.taskSpec.maxRetryCount", 11, "taskGroups[0].taskSpec.maxRetryCount",
     "less than or equal to 10"),
    ("allocationPolicy.instances.0.policy.provisioningModel", "CHEAP",
     "allocationPolicy.instances[0].policy.provisioningModel", "FLEX_START"),
    ("taskGroups.0.taskSpec.runnables.0.script", {"text": "echo"},
     "taskGroups[0].taskSpec.runnables[0]", "sets container and script"),
    ("taskGroups.0.taskSpec.maxRunDuration", "an hour", "taskGroups[0].taskSpec.maxRunDuration",
     "duration"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "value", "path", "text"), REFUSED, ids=[r[2] for r in REFUSED])
def test_invalid_jobs_are_refused_with_their_path(
    where: str, value: Any, path: str, text: str
) -> None:
    with pytest.raises(JobSpecError) as info:
        from_batch_json(_with(where, value))
    assert info.value.field == path, str(info.value)
    assert text in info.value.message, str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    job = json.loads(L4.read_text())
    job["taskGroups"][0]["taskCount"] = "ten"
    job["taskGroups"][0]["taskSpec"]["runnables"][0]["container"]["imageUri"] = 7
    job["allocationPolicy"]["instances"][0]["policy"]["machinType"] = "x"
    with pytest.raises(JobSpecError) as info:
        from_batch_json(json.dumps(job))
    paths = [p for p, _ in info.value.problems]
    assert paths == [
        "taskGroups[0].taskSpec.runnables[0].container.imageUri",
        "taskGroups[0].taskCount",
        "allocationPolicy.instances[0].policy.machinType",
    ]
    assert str(info.value).startswith("3 problems: ") and "\n" not in str(info.value)
    # Batch-level refusals are collected too: a GPU count and a retry budget at once.
    job = json.loads(L4.read_text())
    job["allocationPolicy"]["instances"][0]["policy"]["accelerators"][0]["count"] = "4"
    job["taskGroups"][0]["taskSpec"]["maxRetryCount"] = 12
    with pytest.raises(JobSpecError) as info:
        from_batch_json(json.dumps(job))
    assert {p for p, _ in info.value.problems} == {
        "allocationPolicy.instances[0].policy.accelerators[0]",
        "taskGroups[0].taskSpec.maxRetryCount",
    }


def test_opinions_are_kept_not_refused() -> None:
    """A GPU job without a boot disk and a Spot job without a preemption retry import as they
    are (guardrails report them; see test_policies_guardrails.py)."""
    job = json.loads(L4.read_text())
    del job["allocationPolicy"]["instances"][0]["policy"]["bootDisk"]
    del job["taskGroups"][0]["taskSpec"]["lifecyclePolicies"]
    spec = from_batch_json(json.dumps(job))
    assert spec.boot_disk_gb is None and spec.retry_on_preemption is False
    assert batch_v1.Job.from_json(json.dumps(to_batch_json(spec))) == batch_v1.Job.from_json(
        json.dumps(job)
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{\n  "taskGroups": [\n    {"taskCount": 1,,}\n  ]\n}', "JSON at line 3, column 21"),
        ('{"labels": {"a": "b"}', "JSON at line 1, column 22"),
        ("taskGroups:\n  - taskCount: 1\n labels: {}\n", "YAML at line 3, column 2"),
    ],
)
def test_malformed_input_gives_line_and_column(text: str, where: str) -> None:
    with pytest.raises(JobSpecError) as info:
        from_batch_json(text)
    assert f"malformed {where}" in str(info.value)


def test_empty_and_deep_input() -> None:
    with pytest.raises(JobSpecError, match="empty"):
        from_batch_json(" \n")
    with pytest.raises(JobSpecError, match="nested 100000 levels deep"):
        from_batch_json("[" * 100_000 + "]" * 100_000)


def test_not_an_object_and_duplicates() -> None:
    with pytest.raises(JobSpecError, match="JSON object"):
        from_batch_json("[]")
    with pytest.raises(JobSpecError, match="duplicate key 'labels'"):
        from_batch_json('{"labels": {}, "labels": {}}')
    with pytest.raises(JobSpecError, match="needs a task group"):
        from_batch_json("{}")


SAMPLES = sorted((ROOT / "tests/fixtures/batch_samples").iterdir())


@pytest.mark.parametrize("path", FIXTURES + SAMPLES, ids=[p.name for p in FIXTURES + SAMPLES])
def test_import_job_prints_code_that_renders_the_input(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(path), "--name", "migrated"]) == 0
    code = capsys.readouterr().out
    namespace: dict[str, Any] = {}
    exec(compile(code, "<import-job>", "exec"), namespace)
    spec = namespace["SPEC"]
    assert spec.name == "migrated"
    rendered = json.dumps(to_batch_json(spec))
    source = yaml.safe_load(path.read_text())  # JSON or YAML
    expected = json.dumps({k: v for k, v in source.items() if k not in OUTPUT_ONLY})
    assert batch_v1.Job.from_json(rendered) == batch_v1.Job.from_json(expected)
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
    assert "name='l4-spot-retries'" in out.stdout
    assert sys.executable  # the shim uses the repository's venv, not this interpreter


def test_empty_list_elements_after_typed_ones_are_kept() -> None:
    """Found by the property test: a second, empty lifecycle policy was lost."""
    job = json.loads(L4.read_text())
    job["taskGroups"][0]["taskSpec"]["lifecyclePolicies"].append({})
    spec = from_batch_json(json.dumps(job))
    assert spec.batch_overrides["taskGroups"][0]["taskSpec"]["lifecyclePolicies"] == [{}, {}]
    assert batch_v1.Job.from_json(json.dumps(to_batch_json(spec))) == batch_v1.Job.from_json(
        json.dumps(job)
    )


def test_two_problems_in_one_soft_group_drop_it_once() -> None:
    """Found by the property test: two bad notifications made the import refuse."""
    job = json.loads(L4.read_text())
    job["notifications"] = [{}, {"pubsubTopic": "x"}]
    spec = from_batch_json(json.dumps(job))
    assert spec.notifications == [] and len(spec.batch_overrides["notifications"]) == 2
