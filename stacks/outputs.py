"""Terraform outputs per environment and per client, written into each synthesized stack
after synth (clients onboarded with `onboard_client` included), so `bin/cdktn output
platform-<env>` prints what `bin/submit where` prints: both read the names from the
environment settings, the one source (docs/operations.md, "Terraform outputs").

Terraform JSON syntax: `{"output": {"<name>": {"value": ..., "description": ...}}}`
(https://developer.hashicorp.com/terraform/language/syntax/json#output-blocks).
Pure JSON: no provider import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.settings import EnvironmentSettings


def stack_outputs(env: EnvironmentSettings) -> dict[str, dict[str, Any]]:
    p = env.project_id
    out: dict[str, dict[str, Any]] = {
        "data_bucket": {"value": env.data_bucket,
                        "description": "operators' ad-hoc runs read and write its jobs/"},
        "uploads_topic": {"value": f"projects/{p}/topics/{env.uploads_topic}",
                          "description": "every client bucket notifies this topic"},
        "operator_identity": {"value": env.operator_sa_email,
                              "description": "the identity bin/submit acts as"},
        "adhoc_identity": {"value": env.adhoc_sa_email,
                           "description": "the identity ad-hoc runs' tasks run as"},
    }
    lay = env.layout
    out["intake_dead_letter_subscription"] = {
        "value": lay.subscription_path(lay.dead_letter_subscription()),
        "description": "intake events whose run published no outcome "
                       "(bin/submit intake dead-letters)"}
    for job in env.jobs:
        out[f"intake_topic_{job.name}"] = {
            "value": lay.topic_path(lay.intake_topic(job.name)),
            "description": f"the markers of job {job.name} notify this topic (one run each)"}
        out[f"workflow_{job.name}"] = {
            "value": f"projects/{p}/locations/{env.region}/workflows/{env.job_workflow(job.name)}",
            "description": f"the dispatcher workflow of job {job.name} (every client)"}
    for client in env.clients:
        c = client.name
        values = {
            "bucket": env.client_bucket(c),
            "identity": env.client_sa_email(c),
            "run_identity": env.run_sa_email(c),
            "results_topic": lay.topic_path(lay.results_topic(c)),
            "results_subscription": lay.subscription_path(lay.results_subscription(c)),
        }
        for key, value in values.items():
            out[f"client_{c}_{key}"] = {"value": value, "description": f"client {c}: {key}"}
        for job_name in client.jobs:
            out[f"workflow_{c}_{job_name}"] = {
                "value": out[f"workflow_{job_name}"]["value"] if f"workflow_{job_name}" in out
                else env.job_workflow(job_name),
                "description": f"the workflow that runs {c}'s batches of {job_name}"}
    return out


def write_outputs(stack_file: Path, env: EnvironmentSettings) -> None:
    doc = json.loads(stack_file.read_text(encoding="utf-8"))
    doc.setdefault("output", {}).update(stack_outputs(env))
    stack_file.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
