"""The client's story, offline, with IAM on: synth, policy checks, the local cloud started from
the synthesized stack, then acme's upload runs through the deployed trigger and workflow.

Run through `bin/demo`. Every step uses what a user or Google Cloud would: `main.py`,
`bin/check`, `bin/submit upload|ls|cat` (as the client's identity), the stack's Eventarc
trigger and workflow YAML (run unchanged by `local.eventarc`), the stack's topics and bucket
policies. GPUB_LOCAL_ROOT (the local cloud's state) and GPUB_SYNTH_DIR (the synth output) are
honoured as by every other command.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
console = Console(stderr=True)

CLIENT, OTHER = "acme", "globex"
JOB = "uppercase"
ENV = "dev"
# The deployed workflow waits 60 s between jobs.get polls; locally that wait runs at 1/50.
SLEEP_SCALE = 0.02


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def run(cmd: list[str], capture: bool = False) -> subprocess.CompletedProcess[str]:
    console.print(f"[dim]$ {' '.join(cmd)}")
    env = {**os.environ, "GPUB_SYNTH_DIR": str(synth_dir())}
    return subprocess.run(cmd, cwd=ROOT, text=True, check=False, env=env,
                          stdout=subprocess.PIPE if capture else None)


def synth_dir() -> Path:
    value = os.environ.get("GPUB_SYNTH_DIR", "").strip()
    return Path(value).resolve() if value else ROOT / "cdktf.out"


def must(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        console.print(f"[red]{what} failed (exit {result.returncode})")
        sys.exit(result.returncode)
    return result


def synth() -> Path:
    step("1. Synthesize the example platform (platform-dev, platform-prod)")
    from stacks.app import synth as synthesize
    from stacks.environments import load_environments
    from stacks.summary import summary_table

    started = time.monotonic()
    out = synthesize(load_environments(), str(synth_dir()))
    console.print(summary_table(out))
    console.print(f"synth took {time.monotonic() - started:.1f}s")
    return out / "stacks" / f"platform-{ENV}" / "cdk.tf.json"


def policy_checks() -> None:
    step("2. Policy checks: checkov + CKV_GPUB rule pack + job guardrails")
    must(run([str(ROOT / "bin" / "check"), "--no-synth", "--out", str(synth_dir())]),
         "bin/check")


def start_cloud(stack: Path) -> Any:
    from local.apply import apply_buckets
    from local.backend import LocalBackend
    from local.eventarc import LocalEventarc

    step("3. Start the local cloud from the stack (IAM on)")
    backend = LocalBackend(stacks=[stack])  # root: local.backend.default_root(), one rule
    ep = backend.ensure_running()
    created = apply_buckets(ep.gcs_upstream, [stack])
    console.print(f"Batch API {ep.batch_target} | GCS (IAM layer) {ep.gcs_endpoint} | "
                  f"Pub/Sub {ep.pubsub_target} | state {backend.root}")
    if created:
        console.print(f"buckets from the stack: {', '.join(created)}")
    arc = LocalEventarc([stack], batch_target=ep.batch_target, gcs_endpoint=ep.gcs_endpoint,
                        pubsub_target=ep.pubsub_target, sleep_scale=SLEEP_SCALE)
    for t in arc.triggers:
        console.print(f"trigger {t.name}: {t.topic} -> workflow {t.workflow.rsplit('/', 1)[-1]}")
    return backend, ep, arc


def upload(client: str) -> str:
    """`bin/submit upload` as the client's identity; the batch name."""
    result = must(run([str(ROOT / "bin" / "submit"), "upload", str(ROOT / "examples" / "inputs"),
                       "--client", client, "--job", JOB, "--env", ENV, "--local"],
                      capture=True), f"upload as {client}")
    return result.stdout.strip().splitlines()[-1]


def deliver(arc: Any, want: int, timeout: float = 90) -> list[Any]:
    """Let the local Eventarc deliver events until `want` executions started a job."""
    started: list[Any] = []
    ignored = 0
    deadline = time.monotonic() + timeout
    while len(started) < want and time.monotonic() < deadline:
        for r in arc.deliver(timeout_s=1.5):
            if isinstance(r.result, str) and r.result.startswith("ignored"):
                ignored += 1  # a data file, or another job's workflow: not its marker
            else:
                started.append(r)
                what = r.result if r.error is None else r.error
                marker = r.event["data"]["message"]["attributes"]["objectId"]
                console.print(f"  {r.workflow} <- {marker}: {r.state} "
                              f"{json.dumps(what)[:120]}")
    console.print(f"  ({ignored} other executions returned `ignored`: data files, and the "
                  "workflows of other jobs)")
    return started


def outcomes(arc: Any, env: Any, client: str) -> list[dict[str, Any]]:
    """Pull the client's results subscription as the client (Pub/Sub IAM is on)."""
    from local.grpc_identity import subscriber_for
    from local.pubsub_stack import declared_topics_and_subscriptions

    topic = f"projects/{env.project_id}/topics/{env.results_topic(client)}"
    _, subs = declared_topics_and_subscriptions(arc.docs)
    (sub,) = [name for name, (t, _) in subs.items() if t == topic]
    subscriber = subscriber_for(arc.endpoints["pubsub_target"], env.client_sa_email(client))
    resp = subscriber.pull(subscription=sub, max_messages=20, timeout=5)
    if resp.received_messages:
        subscriber.acknowledge(subscription=sub,
                               ack_ids=[m.ack_id for m in resp.received_messages])
    return [json.loads(m.message.data) for m in resp.received_messages]


def the_story(ep: Any, arc: Any) -> int:
    from local.client import batch_client
    from stacks.environments import dev

    env = dev()
    step(f"4. {CLIENT} uploads a batch as {env.client_sa_email(CLIENT)} (then its batch marker); "
         f"so does {OTHER}")
    batch = upload(CLIENT)
    other = upload(OTHER)

    step("5. The trigger fires: each GCS notification reaches the deployed workflow")
    runs = deliver(arc, 2)
    mine = next((r for r in runs if isinstance(r.result, dict)
                 and r.result.get("client") == CLIENT), None)
    if mine is None:
        console.print(f"[red]no run for {CLIENT}: {[(r.result, r.error) for r in runs]}")
        return 1
    job = batch_client(ep.batch_target).get_job(name=mine.result["batch_job"])
    table = Table(title="6. The workflow created the job; it ran as the client's run identity")
    for col in ("workflow", "job", "runs as", "state"):
        table.add_column(col)
    table.add_row(mine.workflow, job.name.rsplit("/", 1)[-1],
                  job.allocation_policy.service_account.email, job.status.state.name)
    console.print(table)

    step(f"7. Outputs, as {CLIENT} sees them (bin/submit ls / cat)")
    base = [str(ROOT / "bin" / "submit")]
    scope = ["--client", CLIENT, "--job", JOB, "--batch", batch, "--env", ENV, "--local"]
    must(run([*base, "ls", *scope]), "ls")
    must(run([*base, "cat", *scope, "part-000.jsonl"]), "cat")

    step(f"8. The outcome arrives on {CLIENT}'s results subscription")
    got = outcomes(arc, env, CLIENT)
    for o in got:
        console.print(f"  {o['client']}/{o['batch']}: {o['state']} "
                      f"({o['inputs']} inputs -> {o['output']})")
    others = outcomes(arc, env, OTHER)
    console.print(f"  ({OTHER}'s subscription got its own {len(others)} outcome(s) only)")

    step(f"9. {CLIENT} tries to read {OTHER}'s outputs")
    denied = snooping_is_denied(ep, env, other)
    ok = (mine.state == "SUCCEEDED" and job.status.state.name == "SUCCEEDED" and denied
          and [o["state"] for o in got] == ["SUCCEEDED"])
    return 0 if ok else 1


def snooping_is_denied(ep: Any, env: Any, other_batch: str) -> bool:
    """CLIENT reads OTHER's output of `other_batch` with its own identity: the 403 Google
    Cloud would answer (True), printed with the IAM layer's message."""
    from google.api_core import exceptions as gexc
    from google.cloud import storage  # type: ignore[attr-defined]

    from local.identity import credentials_for

    snoop = storage.Client(project=env.project_id,
                           credentials=credentials_for(env.client_sa_email(CLIENT)),
                           client_options={"api_endpoint": ep.gcs_endpoint})
    target = f"{env.layout.batch_outputs(JOB, other_batch)}part-000.jsonl"
    try:
        snoop.bucket(env.client_bucket(OTHER)).blob(target).download_as_bytes()
    except gexc.Forbidden as exc:
        body = str(exc.message)
        with contextlib.suppress(ValueError):  # GCS's JSON body: {"error": {"message": ..}}
            body = json.JSONDecoder().raw_decode(body[body.index('{"error"'):])[0]["error"][
                "message"]
        console.print(f"[green]403 Forbidden[/] gs://{env.client_bucket(OTHER)}/{target}\n"
                      f"  {body}")
        return True
    console.print(f"[red]{CLIENT} could read {OTHER}'s outputs")
    return False


def main() -> int:
    started = time.monotonic()
    os.chdir(ROOT)
    stack = synth()
    policy_checks()
    _, ep, arc = start_cloud(stack)
    code = the_story(ep, arc)
    seconds = time.monotonic() - started
    verdict = "[green]the client story holds" if code == 0 else "[red]the client story broke"
    console.print(Panel(f"{verdict}; demo took {seconds:.0f}s. The local cloud keeps running "
                        "for `bin/submit status|logs|list --local`; stop it with "
                        "`.venv/bin/python -m local stop`."))
    print(json.dumps({"demo": "done", "exit": code, "seconds": round(seconds, 1)}))
    return code


if __name__ == "__main__":
    sys.exit(main())
