"""Unit tests of the submit helper's pure parts: ids, URIs, manifest, planner, cost, CLI shape."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from jobs import to_batch_json
from submit import cli, costing, ids, manifest, planner, synth
from submit.errors import SubmitError
from submit.manifest import ObjectInfo
from submit.uris import GcsPrefix, check_disjoint, parse_prefix

# ---------------------------------------------------------------------------------- ids


def test_job_id_is_deterministic_per_run_and_numbered_per_attempt() -> None:
    base = ids.run_base("uppercase", "acme", "gs://b/outputs/uppercase/x/", "h1")
    assert base == ids.run_base("uppercase", "acme", "gs://b/outputs/uppercase/x/", "h1")
    assert re.fullmatch(r"uppercase-[0-9a-f]{10}", base)
    for other in (("embed", "acme", "gs://b/outputs/uppercase/x/", "h1"),
                  ("uppercase", "globex", "gs://b/outputs/uppercase/x/", "h1"),
                  ("uppercase", "acme", "gs://b/outputs/uppercase/y/", "h1"),
                  ("uppercase", "acme", "gs://b/outputs/uppercase/x/", "h2")):
        assert ids.run_base(*other) != base
    job_id = ids.run_job_id(base, 2)
    assert job_id == f"{base}-2" and ids.JOB_ID_RE.match(job_id)
    assert ids.attempt_of(job_id, base) == 2
    assert ids.attempt_of(f"{base}x-2", base) is None


def test_job_id_too_long_names_the_limit() -> None:
    with pytest.raises(SubmitError, match=r"too long.*limit is 63"):
        ids.run_job_id(ids.run_base("x" * 50, "c", "o", "h"), 10)
    assert len(ids.run_job_id(ids.run_base("x" * 50, "c", "o", "h"), 9)) == 63


def test_labels_are_sanitized() -> None:
    labels = ids.build_labels(job="embed", env="dev", client="acme", submitter="Jane.Doe@EX.com",
                              manifest_hash="ab" * 16, key="k")
    assert labels["submitter"] == "jane-doe-ex-com"
    assert ids.sanitize_label("!!!") == "unknown"
    assert len(ids.sanitize_label("a" * 100)) == 63


def test_request_id_is_a_stable_uuid_per_attempt() -> None:
    a = ids.request_id("uppercase-0123456789-1")
    assert a == ids.request_id("uppercase-0123456789-1")
    assert a != ids.request_id("uppercase-0123456789-2")  # a resume is a new request
    assert uuid.UUID(a).version == 5


# --------------------------------------------------------------------------------- URIs


def test_parse_prefix_normalizes_the_trailing_slash() -> None:
    assert parse_prefix("gs://bkt/a/b", "--input") == GcsPrefix("bkt", "a/b/")
    assert parse_prefix("gs://bkt/a/b/", "--input") == GcsPrefix("bkt", "a/b/")
    assert str(parse_prefix("gs://bkt", "--input")) == "gs://bkt/"


@pytest.mark.parametrize("value", [
    "s3://bkt/a/", "bkt/a/", "gs://", "gs://B/a/", "gs://-bkt/a/", "gs://bkt//a/",
    "gs://bkt/a/../b/", "gs://bkt/a*/", "gs://bkt/a\n/",
])
def test_parse_prefix_refuses_malformed_uris(value: str) -> None:
    with pytest.raises(SubmitError, match=r"^--output: "):
        parse_prefix(value, "--output")


def test_input_and_output_must_not_overlap() -> None:
    with pytest.raises(SubmitError, match="overlaps"):
        check_disjoint(GcsPrefix("b", "in/"), GcsPrefix("b", "in/out/"))
    check_disjoint(GcsPrefix("b", "in/"), GcsPrefix("b", "input2/"))


# ----------------------------------------------------------------------------- manifest


def test_manifest_round_trip_and_contract_shape() -> None:
    objs = [ObjectInfo('a "quoted".jsonl', 3, "17"), ObjectInfo("sub/é.jsonl", 0, "18")]
    data = manifest.encode(objs)
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert lines[0] == {"name": 'a "quoted".jsonl', "size": 3, "generation": "17"}
    assert manifest.decode(data) == objs
    assert len(manifest.manifest_hash(data)) == 32


# ------------------------------------------------------------------------------ planner


def _objs(n: int, size: int = 10) -> list[ObjectInfo]:
    return [ObjectInfo(f"f{i:07d}.jsonl", size, str(i)) for i in range(n)]


def test_format_filter_skips_other_files_and_bookkeeping() -> None:
    names = ["a.jsonl", "b.csv", "dir/", "_manifest.jsonl", "x/_done/a.jsonl", "C.JSONL"]
    got = planner.select_inputs((ObjectInfo(n, 1, "1") for n in names), "jsonl")
    assert [o.name for o in got] == ["a.jsonl", "C.JSONL"]


def test_files_per_task_packing() -> None:
    plan = planner.plan_tasks(_objs(25), files_per_task=10,
                              parallelism_caps=[("--parallelism", 2)])
    assert (plan.task_count, plan.parallelism, plan.files_per_task) == (3, 2, 10)
    assert [plan.task_size(i) for i in range(3)] == [10, 10, 5]
    assert plan.limited_by == "--parallelism"


def test_task_count_stays_under_the_batch_limit() -> None:
    plan = planner.plan_tasks(_objs(250), files_per_task=1, max_tasks=100)
    assert plan.task_count <= 100 and plan.files_per_task == 3
    assert sum(plan.task_size(i) for i in range(plan.task_count)) == 250
    assert plan.notes


def test_size_balanced_plan_matches_the_runner_split() -> None:
    from gpub_runner.config import task_share

    objs = [ObjectInfo(f"f{i:03d}.jsonl", size, str(i))
            for i, size in enumerate([1000, 1, 1, 1, 500, 500, 2, 3, 999, 7, 8])]
    plan = planner.plan_tasks(objs, files_per_task=None, parallelism_caps=[("job max", 3)])
    assert plan.task_count == 3 and plan.files_per_task is None
    loads = []
    for k in range(3):
        share = task_share(len(plan.objects), k, plan.task_count, None)
        assert list(plan.objects[share.start:share.stop]) == list(plan.task_files(k))
        loads.append(sum(o.size for o in plan.task_files(k)))
    assert max(loads) < 1600  # the naive contiguous split puts 1000+500+500 in one task
    assert sorted(plan.objects) == sorted(objs)


def test_parallelism_takes_the_smallest_cap() -> None:
    plan = planner.plan_tasks(_objs(1000), files_per_task=1, parallelism_caps=[
        ("--parallelism", 50), ("job max", 10), ("GPU quota", 4), ("budget", None)])
    assert (plan.parallelism, plan.limited_by) == (4, "GPU quota")
    with pytest.raises(SubmitError, match="GPU quota"):
        planner.plan_tasks(_objs(3), files_per_task=1, parallelism_caps=[("GPU quota", 0)])


def test_empty_input_is_refused() -> None:
    with pytest.raises(SubmitError, match="--input"):
        planner.plan_tasks([], files_per_task=None)


def test_planner_and_manifest_handle_a_million_objects() -> None:
    # Timing lives in bench/submit.py; this checks the shapes at that scale.
    objs = [ObjectInfo(f"data/part-{i:07d}.jsonl", 1000 + i % 977, str(i))
            for i in range(1_000_000)]
    selected = planner.select_inputs(objs, "jsonl")
    balanced = planner.plan_tasks(selected, files_per_task=None,
                                  parallelism_caps=[("job max", 5000)])
    packed = planner.plan_tasks(selected, files_per_task=7)
    data = manifest.encode(balanced.objects)
    assert balanced.task_count == 5000 and packed.task_count == 100_000
    assert data.count(b"\n") == 1_000_000


# --------------------------------------------------------------------------------- cost


def _job_json(**policy: object) -> dict[str, object]:
    return {"taskGroups": [{"taskSpec": {"maxRunDuration": "1800s", "environment": {
        "variables": {"GPUB_FILE_TIMEOUT_S": "60"}}}}],
        "allocationPolicy": {"instances": [{"policy": {"machineType": "g2-standard-8",
                                                       **policy}}]}}


def test_cost_is_an_upper_bound_at_catalog_prices() -> None:
    shape = costing.job_shape(_job_json(provisioningModel="SPOT"))
    assert shape.spot and shape.gpu_type == "nvidia-l4" and shape.gpus_per_vm == 1
    plan = planner.plan_tasks(_objs(100), files_per_task=10)
    est = costing.estimate(shape, plan)
    # 10 tasks x min(1800 s, 10 files x 60 s) = 6000 s
    assert est.vm_hours == pytest.approx(6000 / 3600)
    assert est.usd == pytest.approx(6000 / 3600 * costing.vm_price_per_hour(shape))
    on_demand = costing.estimate(costing.job_shape(_job_json()), plan)
    assert on_demand.usd > est.usd


# ---------------------------------------------------------------------------------- CLI


def test_argv_without_run_gets_run_inserted(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[list[str]] = []

    def fake_app(*, args: list[str], **_: object) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "app", fake_app)
    for argv in (["embed", "--env", "dev"], ["run", "embed"], ["status", "x"], ["--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
    assert seen == [["run", "embed", "--env", "dev"], ["run", "embed"], ["status", "x"],
                    ["--help"]]


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


ARGS = ["--input", "gs://example-ml-dev-batch-data/jobs/in/", "--output",
        "gs://example-ml-dev-batch-data/jobs/out/"]


@pytest.mark.parametrize(("argv", "message"), [
    (["nosuchjob", "--env", "dev", *ARGS], "JOB: unknown job 'nosuchjob'.*known: embed, uppercase"),
    (["uppercase", "--env", "nope", *ARGS], "--env: unknown environment 'nope'.*known: dev, prod"),
    (["uppercase", "--env", "dev", "--input", "gs:/bad", "--output", "gs://b-1/o/"], "--input: "),
    (["uppercase", "--env", "dev", "--input", "gs://b-1/i/", "--output", "http://x"], "--output: "),
    (["uppercase", "--env", "dev", *ARGS, "--parallelism", "0"], "--parallelism"),
    (["uppercase", "--env", "dev", *ARGS, "--max-cost", "cheap"], "--max-cost"),
    (["uppercase", "--env", "dev", *ARGS, "--frobnicate"], "--frobnicate"),
    (["uppercase", "--env", "", *ARGS], "--env: unknown environment"),  # no --env: dev
    (["uppercase", "--env", "dev", *ARGS, "--client", "initech"], "--client: unknown client"),
    (["uppercase", "--env", "dev", "--input", "gs://b-1/a/", "--output", "gs://b-1/a/o/"],
     "overlaps"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_cli(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("submit: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in err


def test_missing_or_stale_synth_says_run_synth(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["uppercase", "--env", "dev", *ARGS, "--out", str(tmp_path)]
    code, _, err = _run_cli(argv, capsys)
    assert code == 2 and "run synth:" in err and "missing" in err

    env = synth.load_environment("dev")
    spec = synth.load_spec(env, "uppercase")
    path = synth.job_json_path(tmp_path, env, "uppercase")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(to_batch_json(spec, env.render_context("uppercase"))))
    declared = synth.declaration_files(spec)
    assert any(p.name == "uppercase.py" for p in declared)
    old = min(p.stat().st_mtime for p in declared) - 100
    os.utime(path, (old, old))
    code, _, err = _run_cli(argv, capsys)
    assert code == 2 and "run synth:" in err and "older than" in err


def test_bin_submit_shim_runs_from_any_directory(tmp_path: Path) -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([str(repo / "bin" / "submit"), "run", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--dry-run" in proc.stdout and "--max-cost" in proc.stdout
