"""The trigger path's commands: `results`, `rerun`, `intake dead-letters` (registered on
`bin/submit` by `register`), and `upload --wait`'s follow-up (`wait_for_outcome`).

- `results --client C [--json] [--follow]`: the client's outcomes from its results
  subscription (`<results topic>-sub`, stacks/layout.py), as the client's identity; each is
  acknowledged once printed.
- `rerun --client C --job J --batch B`: the client writes the batch's marker again (same
  count): a new marker generation is a new run of the batch (docs/clients.md "Re-running a
  batch"); client-<c> may overwrite its markers, and nothing else under inputs/.
- `intake dead-letters [--replay]`: the events whose run could not publish an outcome, from
  the intake dead-letter subscription, as the operator; `--replay` publishes each again on
  its job's intake topic (one execution each) and acknowledges it.

Locally (`--local`) the same calls go to the local Pub/Sub, and the commands that wait
deliver the stack's pending Eventarc events themselves (`local.eventarc`, the workflows'
sleeps scaled by LOCAL_WORKFLOWS_SLEEP_SCALE, default 0.01 here).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stacks import layout
from submit import synth
from submit.errors import ServiceError, SubmitError
from submit.ui import EnvDefault as EnvOpt
from submit.ui import JsonOpt, LocalOpt
from submit.ui import say as _say

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings

ClientOpt = Annotated[str, typer.Option("--client", "-c", help="Client name (see `where`).")]
FollowOpt = Annotated[bool, typer.Option(
    "--follow", "-f", help="Keep printing outcomes as they arrive (Ctrl-C stops).")]
ForOpt = Annotated[float | None, typer.Option(
    "--for", help="With --follow: stop after this many seconds.", min=0)]
RESULT_COMMANDS = ("results", "rerun", "intake")
LOCAL_SLEEP_SCALE = "0.01"
_PULL_S = 2.0


# ---- Pub/Sub, as an identity, on Google or locally ------------------------------------------
class Subscriptions:
    """Pull, ack and publish as one principal; locally on the local Pub/Sub, and with the
    stack's Eventarc triggers delivered on demand (`deliver`)."""

    def __init__(self, settings: EnvironmentSettings, principal: str, *, local: bool) -> None:
        self.settings = settings
        self.local = local
        self._arc: Any = None
        if local:
            from local.grpc_identity import publisher_for, subscriber_for
            from submit import localmode

            self.endpoints = localmode.start()
            target = self.endpoints.pubsub_target
            # As the principal: the local Pub/Sub enforces the stack's IAM (local.pubsub_iam).
            self.subscriber = subscriber_for(target, principal)
            self.publisher = publisher_for(target, principal)
        else:
            import google.auth
            from google.auth import impersonated_credentials
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            try:
                source, _ = google.auth.default()
            except google.auth.exceptions.DefaultCredentialsError:
                raise SubmitError("no Google credentials: run `gcloud auth application-default "
                                  "login` (or use --local)") from None
            creds = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
                source_credentials=source, target_principal=principal,
                target_scopes=["https://www.googleapis.com/auth/pubsub"])
            self.subscriber = pubsub_v1.SubscriberClient(credentials=creds)
            self.publisher = pubsub_v1.PublisherClient(credentials=creds)

    def deliver(self) -> int:
        """Locally: run the stack's pending Eventarc events to completion (none on Google,
        where Eventarc delivers them)."""
        if not self.local:
            return 0
        if self._arc is None:
            from local.connectors import SLEEP_SCALE_ENV
            from local.eventarc import LocalEventarc

            stacks = synth.stack_files(self.settings)  # the platform's, then its shards'
            if not stacks:
                stack = synth.synth_dir(None) / "stacks" / self.settings.stack_name
                raise SubmitError(f"--local: no synthesized stack {stack}/cdk.tf.json "
                                  "(run main.py)")
            ep = self.endpoints
            self._arc = LocalEventarc(
                stacks, batch_target=ep.batch_target, gcs_endpoint=ep.gcs_endpoint,
                pubsub_target=ep.pubsub_target,
                sleep_scale=float(os.environ.get(SLEEP_SCALE_ENV, LOCAL_SLEEP_SCALE)))
        from google.api_core import exceptions as gexc

        try:
            return len(self._arc.deliver(timeout_s=0.5))
        except gexc.DeadlineExceeded:  # nothing pending on a trigger's subscription
            return 0

    def pull(self, subscription: str, *, keep: Callable[[Any], bool] = lambda m: True,
             ack: bool = True, timeout_s: float = _PULL_S) -> list[Any]:
        """Received messages that `keep` accepts (acknowledged unless `ack` is False); the
        others are handed back at once (ack deadline 0) for another reader."""
        from google.api_core import exceptions as gexc

        try:
            resp = self.subscriber.pull(subscription=subscription, max_messages=100,
                                        timeout=timeout_s)
        except gexc.DeadlineExceeded:
            return []
        except gexc.GoogleAPICallError as exc:
            raise ServiceError(f"pull {subscription}: {exc.message}") from None
        mine = [m for m in resp.received_messages if keep(m.message)]
        back = [m.ack_id for m in resp.received_messages if not ack or not keep(m.message)]
        if mine and ack:
            self.subscriber.acknowledge(subscription=subscription,
                                        ack_ids=[m.ack_id for m in mine])
        if back:
            self.subscriber.modify_ack_deadline(subscription=subscription, ack_ids=back,
                                                ack_deadline_seconds=0)
        return [m.message for m in mine]


def decode_outcome(message: Any) -> dict[str, Any]:
    try:
        value = json.loads(bytes(message.data))
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {
        "state": "UNREADABLE", "reason": "not an outcome", "attributes": dict(message.attributes)}


def outcome_key(o: dict[str, Any]) -> tuple[Any, ...] | None:
    """What identifies one outcome (None: not an outcome of a run)."""
    if o.get("batch") is None or o.get("marker_generation") is None:
        return None
    return (o.get("job"), o.get("batch"), str(o.get("marker_generation")))


def outcome_line(o: dict[str, Any]) -> str:
    inputs = o.get("inputs")
    counts = f"inputs {inputs if inputs is not None else '?'}"
    if o.get("refused"):
        counts += f", refused {o['refused']}"
    why = f"  {o['reason']}" if o.get("reason") and o.get("state") != "SUCCEEDED" else ""
    return (f"{o.get('batch', '?')}  {o.get('state', '?')}  {counts}  job {o.get('job_id', '?')}"
            f"  gen {o.get('marker_generation', '?')}{why}")


def _print(outcome: dict[str, Any], json_out: bool) -> None:
    sys.stdout.write((json.dumps(outcome, sort_keys=True) if json_out
                      else outcome_line(outcome)) + "\n")
    sys.stdout.flush()


# ---- results -------------------------------------------------------------------------------
def _client(env: str, client: str) -> EnvironmentSettings:
    settings = synth.load_environment(env)
    if client not in {c.name for c in settings.clients}:
        known = ", ".join(sorted(c.name for c in settings.clients)) or "none"
        raise SubmitError(f"--client: unknown client {client!r} in {settings.name} "
                          f"(known: {known})")
    return settings


def results_cmd(client: ClientOpt, env: EnvOpt = "dev", json_out: JsonOpt = False,
                follow: FollowOpt = False, seconds: ForOpt = None,
                local: LocalOpt = False) -> int:
    """Print CLIENT's outcomes from its results subscription (each acknowledged once shown)."""
    settings = _client(env, client)
    subs = Subscriptions(settings, settings.client_sa_email(client), local=local)
    sub = settings.layout.subscription_path(settings.layout.results_subscription(client))
    deadline = None if seconds is None else time.monotonic() + seconds
    shown = 0
    # Pub/Sub delivers at least once (cloud.google.com/pubsub/docs/exactly-once-delivery: a
    # message may be redelivered): a run's outcome is one per (job, batch, marker generation),
    # so a copy received again in this session is acknowledged and not shown twice.
    seen: set[tuple[Any, ...]] = set()
    try:
        while True:
            delivered = subs.deliver()
            got = subs.pull(sub)
            for message in got:
                outcome = decode_outcome(message)
                key = outcome_key(outcome)
                if key is not None and key in seen:
                    continue
                if key is not None:
                    seen.add(key)
                _print(outcome, json_out)
                shown += 1
            if not follow and not got and not delivered:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    if shown == 0 and not json_out:
        _say(f"no outcomes waiting on {sub}")
    return 0


def wait_for_outcome(settings: EnvironmentSettings, client: str, job: str, batch: str,
                     generation: str, *, local: bool, timeout_s: float) -> dict[str, Any]:
    """The outcome of the run that the marker at `generation` started, from the client's
    results subscription; every message is left there (`results` shows it too). Locally the
    stack's events are delivered meanwhile."""
    subs = Subscriptions(settings, settings.client_sa_email(client), local=local)
    sub = settings.layout.subscription_path(settings.layout.results_subscription(client))

    def ours(message: Any) -> bool:
        o = decode_outcome(message)
        return (o.get("job"), o.get("batch"), str(o.get("marker_generation"))) == (
            job, batch, generation)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        subs.deliver()
        got = subs.pull(sub, keep=ours, ack=False)
        if got:
            return decode_outcome(got[0])
    raise ServiceError(f"--wait: no outcome for batch {batch} (marker generation {generation}) "
                       f"within {timeout_s:g}s; follow it with `bin/submit results --client "
                       f"{client} --env {settings.name} --follow`")


# ---- rerun ---------------------------------------------------------------------------------
def rerun_cmd(client: ClientOpt,
              job: Annotated[str, typer.Option("--job", "-j", help="The batch's job.")],
              batch: Annotated[str, typer.Option("--batch", "-b", help="The batch to re-run.")],
              env: EnvOpt = "dev", wait: Annotated[bool, typer.Option(
                  "--wait", help="Follow the run to its outcome.")] = False,
              timeout: Annotated[float, typer.Option(help="--wait: seconds.", min=1)] = 3600,
              local: LocalOpt = False, json_out: JsonOpt = False) -> int:
    """Run a batch again, after a FAILED outcome say: write its marker anew, as the client."""
    from google.api_core import exceptions as gexc

    from submit.data import storage_client
    from submit.gcs import _errors
    from submit.where import check_batch, locate

    settings = synth.load_environment(env)
    loc = locate(settings, client, job)
    name = settings.layout.marker(job, check_batch(batch))
    _, storage = storage_client(settings, loc, local=local, as_self=False)
    blob = storage.bucket(loc.bucket).blob(name)
    with _errors("--batch", f"gs://{loc.bucket}/{name}"):
        try:
            content = blob.download_as_bytes()
        except gexc.NotFound:
            raise SubmitError(f"--batch: batch {batch} of {job} has no marker gs://{loc.bucket}/"
                              f"{name} (upload it first: bin/submit upload)") from None
        blob.upload_from_string(content, content_type="application/json",
                                if_generation_match=blob.generation)
    generation = str(blob.generation)
    _say(f"re-marked batch {batch} (marker generation {generation}): its run starts")
    if not wait:
        return 0
    outcome = wait_for_outcome(settings, client, job, batch, generation, local=local,
                               timeout_s=timeout)
    _print(outcome, json_out)
    return 0 if outcome.get("state") == "SUCCEEDED" else 1


# ---- intake dead-letters -------------------------------------------------------------------
def _job_of(attrs: dict[str, str]) -> str:
    """The job a dead letter belongs to: its `job` attribute, else its marker's name
    (`inputs/_ready/<job>/<batch>`)."""
    if attrs.get("job"):
        return attrs["job"]
    parts = attrs.get("objectId", "").split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}/" != layout.MARKERS:
        raise ServiceError(f"dead letter {attrs!r} names no job and no batch marker")
    return parts[2]


def _dead_letters(subs: Subscriptions, sub: str, replay: bool) -> Iterator[dict[str, Any]]:
    """Listing hands every message back (one pull); replaying takes them, page by page."""
    settings = subs.settings
    while True:
        got = subs.pull(sub, ack=replay)
        for message in got:
            attrs = dict(message.attributes)
            row: dict[str, Any] = {"attributes": attrs, "outcome": decode_outcome(message)}
            if replay:
                topic = settings.layout.topic_path(settings.layout.intake_topic(_job_of(attrs)))
                keep = ("bucketId", "objectId", "eventType", "objectGeneration")
                subs.publisher.publish(topic, b"", **{k: attrs[k] for k in keep if k in attrs},
                                       trigger="replay").result(timeout=60)
                row["replayed_to"] = topic
            yield row
        if not got or not replay:
            return


def dead_letters_cmd(env: EnvOpt = "dev", replay: Annotated[bool, typer.Option(
        "--replay", help="Publish each again on its job's intake topic, then drop it.")] = False,
        json_out: JsonOpt = False, local: LocalOpt = False) -> int:
    """List the intake's dead letters (events whose run published no outcome); --replay them."""
    settings = synth.load_environment(env)
    subs = Subscriptions(settings, settings.operator_sa_email, local=local)
    sub = settings.layout.subscription_path(settings.layout.dead_letter_subscription())
    rows = list(_dead_letters(subs, sub, replay))
    for row in rows:
        if json_out:
            sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
        else:
            a = row["attributes"]
            sys.stdout.write(f"gs://{a.get('bucketId')}/{a.get('objectId')} gen "
                             f"{a.get('objectGeneration')}: {a.get('reason', '')}"
                             + (f" -> replayed to {row['replayed_to']}" if replay else "")
                             + "\n")
    if not rows and not json_out:
        _say(f"no dead letters on {sub}")
    return 0


def register(app: typer.Typer) -> None:
    app.command("results")(results_cmd)
    app.command("rerun")(rerun_cmd)
    intake = typer.Typer(help="The trigger path's operator commands.", no_args_is_help=True)
    intake.command("dead-letters")(dead_letters_cmd)
    app.add_typer(intake, name="intake")
