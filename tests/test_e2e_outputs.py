"""Terraform outputs per environment and client (stacks/outputs.py) name the resources the
stack declares, and `bin/submit where` prints the same values: one source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.environments import load_environments
from submit.where import locate
from tfjson import facts_from_document, instances

REPO = Path(__file__).resolve().parents[1]


def _names(doc: dict[str, Any], rtype: str, attr: str = "name") -> set[str]:
    facts = facts_from_document(doc)
    out = set()
    for name, conf in doc["resource"].get(rtype, {}).items():
        for _, inst in instances(name, conf):
            out.add(facts.resolve_text(str(inst.get(attr, ""))))
    return out


@pytest.mark.parametrize("env", load_environments(), ids=lambda e: e.name)
def test_outputs_name_declared_resources_and_where_agrees(
    env: Any, stacks_json: dict[str, dict[str, Any]],
) -> None:
    doc = stacks_json[env.name]
    outputs = {k: v["value"] for k, v in doc["output"].items()}
    p = env.project_id
    buckets = _names(doc, "google_storage_bucket")
    # Each account's email domain is its own project (client-<c> live in the clients project).
    accounts = {f"{inst['account_id']}@{inst.get('project') or p}.iam.gserviceaccount.com"
                for name, conf in doc["resource"]["google_service_account"].items()
                for _, inst in instances(name, conf)}
    topics = {f"projects/{p}/topics/{t}" for t in _names(doc, "google_pubsub_topic")}
    subs = {f"projects/{p}/subscriptions/{s}" for s in _names(doc, "google_pubsub_subscription")}
    workflows = {f"projects/{p}/locations/{env.region}/workflows/{w}"
                 for w in _names(doc, "google_workflows_workflow")}
    assert outputs["data_bucket"] in buckets
    assert outputs["operator_identity"] in accounts and outputs["adhoc_identity"] in accounts
    assert outputs["uploads_topic"] in topics
    assert env.clients
    for client in env.clients:
        c = client.name
        assert outputs[f"client_{c}_bucket"] in buckets
        assert outputs[f"client_{c}_identity"] in accounts
        assert outputs[f"client_{c}_run_identity"] in accounts
        assert outputs[f"client_{c}_results_topic"] in topics
        assert outputs[f"client_{c}_results_subscription"] in subs
        for job in client.jobs:
            assert outputs[f"workflow_{c}_{job}"] in workflows
            loc = locate(env, c, job)
            assert (loc.bucket, loc.client_identity, loc.run_identity, loc.results_topic,
                    loc.results_subscription) == (
                outputs[f"client_{c}_bucket"], outputs[f"client_{c}_identity"],
                outputs[f"client_{c}_run_identity"], outputs[f"client_{c}_results_topic"],
                outputs[f"client_{c}_results_subscription"])


def test_submit_knows_the_clients_environments_yaml_declares(
    synth_dir: Path, tmp_path: Path,
) -> None:
    """bin/submit reads the one declared source (environments.yaml, or GPUB_ENVIRONMENTS):
    a client declared there is known (`where` prints its bucket); a client that only the
    synthesized settings file (cdktf.out/environments/<stack>.json) lists is not."""
    out = tmp_path / "cdktf.out"
    shutil.copytree(synth_dir, out)
    env_file = out / "environments" / "platform-dev.json"
    data = json.loads(env_file.read_text())
    data["clients"].append({**data["clients"][0], "name": "initech", "principal": None})
    env_file.write_text(json.dumps(data))
    env = {**os.environ, "GPUB_SYNTH_DIR": str(out)}
    where = [sys.executable, "-m", "submit", "where", "--client", "initech", "--job",
             "uppercase", "--json"]
    proc = subprocess.run(where, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--client: unknown client 'initech'" in proc.stderr
    declared = tmp_path / "environments.yaml"
    declared.write_text((REPO / "environments.yaml").read_text().replace(
        "    - {name: acme, jobs: [embed, uppercase], contact: data@acme.example}\n",
        "    - {name: acme, jobs: [embed, uppercase], contact: data@acme.example}\n"
        "    - {name: initech, jobs: [uppercase]}\n", 1))
    env["GPUB_ENVIRONMENTS"] = str(declared)
    proc = subprocess.run(where, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bucket"] == "example-ml-dev-initech"


def test_the_planner_caps_gpus_by_the_stacks_quota_preference(synth_dir: Path) -> None:
    """submit's GPU cap is `env.gpu_limit(family)`, the number the stack's quota preference
    asks for (the jobs' peak demand), not only the guardrail's `gpu_quota` override."""
    from stacks.environments import dev
    from submit import costing, synth
    from submit.prepare import _parallelism_caps

    env = dev()
    env = env.model_copy(update={"guardrails": env.guardrails.model_copy(
        update={"gpu_quota": {}})})
    spec = synth.load_spec(env, "embed")
    job = json.loads((synth_dir / "jobs" / "platform-dev" / "embed.json").read_text())
    shape = costing.job_shape(job)
    caps = dict(_parallelism_caps(env, spec, shape, None, 100.0, 0.0))
    limit = env.gpu_limit("L4")
    assert limit  # the stack requests a quota for the embed job's L4s
    assert caps[f"GPU quota L4={limit} at {shape.gpus_per_vm} per VM"] == (
        limit // shape.gpus_per_vm * shape.tasks_per_node)
