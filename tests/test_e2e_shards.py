"""End to end with IAM on, an environment whose clients live in client shards (issue 22): the
example dev environment synthesized with `client_shards.count = 2`, acme pinned to shard 0 and
globex to shard 1, and the local cloud started from the platform stack alone. It reads the
group (tfjson.groups): the shards' buckets are created, their bucket and Pub/Sub IAM, act-as
grants, notifications and results topics are enforced and run, a batch of a client in a shard
gets its SUCCEEDED outcome, a client cannot read another shard's client's bucket, and a shard
file changed by a new synth is enforced without a restart."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from local.apply import apply_buckets
from local.backend import LocalBackend
from local.client import batch_client
from local.iam_launcher import reload_iam
from stacks.shards import ClientShards, shard_stack_name
from tests._helpers.e2e_cloud import (
    BATCH_ENV,
    ENV,
    JOB,
    Cloud,
    deliver_marker_run,
    denied,
    outcomes,
    upload_batch,
)
from tests._helpers.tf import edit_policies
from tfjson import stack_group
from tfjson.iam import PolicyBinding

pytestmark = pytest.mark.slow
PINS = {"acme": 0, "globex": 1}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example dev environment, its two clients in two shards: the synth folder."""
    from stacks.app import synth

    env = ENV.model_copy(update={
        "client_shards": ClientShards(count=2),
        "clients": [c.model_copy(update={"shard": PINS[c.name]}) for c in ENV.clients]})
    out = synth([env], str(tmp_path_factory.mktemp("sharded")))
    for client, k in PINS.items():  # each client's resources are in its own shard only
        doc = json.loads((out / "stacks" / shard_stack_name(ENV.stack_name, k) /
                          "cdk.tf.json").read_text())
        assert list(doc["resource"]["google_storage_bucket"]["clients-bucket"]["for_each"]) == [
            client]
    platform = json.loads((out / "stacks" / ENV.stack_name / "cdk.tf.json").read_text())
    assert "clients-bucket" not in platform["resource"]["google_storage_bucket"]
    return out


@pytest.fixture(scope="module")
def cloud(sharded: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    stack = sharded / "stacks" / ENV.stack_name / "cdk.tf.json"
    backend = LocalBackend(tmp_path_factory.mktemp("e2e-shards") / "local", stacks=[stack],
                           env={**BATCH_ENV, "LOCAL_BATCH_SCHEDULE_DELAY_S": "0.5"})
    try:
        ep = backend.ensure_running()
        # The local `terraform apply` of the platform stack names its shards' buckets too.
        created = apply_buckets(ep.gcs_upstream, [stack])
        assert {ENV.client_bucket(c) for c in PINS} <= set(created), created
        yield Cloud(stack, stack.read_text(encoding="utf-8"), ep, backend)
    finally:
        backend.stop(timeout=5)


@pytest.mark.parametrize("client", list(PINS))
def test_a_batch_of_a_client_in_a_shard_succeeds(cloud: Cloud, client: str) -> None:
    arc = cloud.eventarc()
    assert len(arc.docs) == 3  # the platform stack and its two shards
    outcomes(arc, client)
    batch = cloud.batch_name(f"shard-{client}")
    upload_batch(cloud, client, batch, n=2)
    run, _ = deliver_marker_run(arc)
    out = run.result if isinstance(run.result, dict) else {}
    assert run.state == "SUCCEEDED" and out.get("state") == "SUCCEEDED", run.error or out
    job = batch_client(cloud.ep.batch_target).get_job(name=out["batch_job"])
    assert job.allocation_policy.service_account.email == ENV.run_sa_email(client)  # act-as
    mine = cloud.gcs(ENV.client_sa_email(client))
    first = mine.bucket(ENV.client_bucket(client)).blob(f"outputs/{JOB}/{batch}/0.jsonl")
    assert f"{client.upper()} ROW 0" in first.download_as_text()
    got = outcomes(arc, client)  # the shard's results topic and subscription, its IAM
    assert [(o["client"], o["batch"], o["state"]) for o in got] == [
        (client, batch, "SUCCEEDED")]


@pytest.mark.parametrize(("who", "theirs"), [("acme", "globex"), ("globex", "acme")])
def test_a_client_cannot_read_a_client_of_another_shard(cloud: Cloud, who: str,
                                                        theirs: str) -> None:
    admin = cloud.gcs("terraform@local.iam.gserviceaccount.com")
    bucket = ENV.client_bucket(theirs)
    admin.bucket(bucket).blob(f"outputs/{JOB}/x/0.jsonl").upload_from_string(b"theirs only")
    for email in (ENV.client_sa_email(who), ENV.run_sa_email(who)):
        me = cloud.gcs(email)
        denied(partial(me.bucket(bucket).blob(f"outputs/{JOB}/x/0.jsonl").download_as_bytes),
               "storage.objects.get")
        denied(lambda me=me: list(me.list_blobs(bucket, prefix="outputs/")),
               "storage.objects.list")


def test_a_changed_shard_is_enforced_without_a_restart(cloud: Cloud) -> None:
    """globex's shard loses globex's read grant on its outputs (a new synth); the running
    IAM layer enforces the shard as it now is, and again once it is restored."""
    shard = stack_group(cloud.stack.parent.parent, ENV.stack_name)[1 + PINS["globex"]]
    pristine = shard.read_text(encoding="utf-8")
    doc = json.loads(pristine)
    dropped: list[str] = []

    def drop_reads(client: str, bindings: list[PolicyBinding]) -> list[PolicyBinding]:
        kept = [b for b in bindings if b.title != f"{client}-client-reads-outputs"]
        dropped.extend(b.title for b in bindings if b not in kept)
        return kept

    edit_policies(doc, "google_storage_bucket_iam_policy", "clients-bucket-policy", drop_reads)
    assert dropped == ["globex-client-reads-outputs"], dropped
    admin = cloud.gcs("terraform@local.iam.gserviceaccount.com")
    name = f"outputs/{JOB}/mine/0.jsonl"
    admin.bucket(ENV.client_bucket("globex")).blob(name).upload_from_string(b"globex's own")
    globex = cloud.gcs(ENV.client_sa_email("globex")).bucket(ENV.client_bucket("globex"))
    assert globex.blob(name).download_as_bytes() == b"globex's own"
    try:
        _write(shard, json.dumps(doc))
        reload_iam(cloud.ep.gcs_endpoint)
        denied(globex.blob(name).download_as_bytes, "storage.objects.get")
    finally:
        _write(shard, pristine)
        reload_iam(cloud.ep.gcs_endpoint)
    assert globex.blob(name).download_as_bytes() == b"globex's own"


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))  # a new mtime even within one clock tick
