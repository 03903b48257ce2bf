"""Synth removes the JSON of jobs no longer declared (cdktf.out/jobs/<stack>/), and bin/check
reads only the jobs of the stack files it checks."""

from __future__ import annotations

import json
from pathlib import Path

from policies.check_cli import _jobs_dir
from stacks.app import build_app, write_job_json
from stacks.environments import dev


def test_json_of_a_job_no_longer_declared_is_removed(tmp_path: Path) -> None:
    env = dev()
    _, stacks = build_app([env], outdir=str(tmp_path))
    folder = tmp_path / "jobs" / env.stack_name
    folder.mkdir(parents=True)
    gone = folder / "retired-job.json"
    gone.write_text(json.dumps({"taskGroups": []}))
    other_stack = tmp_path / "jobs" / "platform-other" / "kept.json"
    other_stack.parent.mkdir(parents=True)
    other_stack.write_text("{}")
    written = write_job_json(tmp_path, stacks)
    assert written and not gone.exists()
    assert {p.name for p in folder.glob("*.json")} == {p.name for p in written}
    assert other_stack.exists()  # another stack's jobs are that stack's synth's business


def test_check_reads_the_jobs_beside_the_stack_file_it_checks(tmp_path: Path) -> None:
    stack_file = tmp_path / "out" / "stacks" / "platform-dev" / "cdk.tf.json"
    assert _jobs_dir(stack_file) == tmp_path / "out" / "jobs" / "platform-dev"
