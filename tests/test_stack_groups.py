"""An environment with client shards is read as one group of stacks (tfjson.groups): the local
cloud (buckets, IAM, topics, notifications, live reload), bin/submit, and bin/check (the
project-wide limits count the same totals sharded or not; the fresh-project check judges a
shard after its whole platform stack)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from stacks.settings import ClientSettings, EnvironmentSettings, Schedule
from stacks.shards import ClientShards, hashed_shard, platform_of, shard_stack_name
from tfjson import (
    expand_groups,
    facts_from_document,
    group_heads,
    split_groups,
    stack_group,
    synthesized_stacks,
)
from tfjson import groups as tfgroups
from tfjson.iam import PolicyBinding, policy_bindings, policy_data

CLIENTS = [f"tenant-{i:02d}" for i in range(6)]
COUNT = 3


def _env(base: EnvironmentSettings, count: int) -> EnvironmentSettings:
    """6 clients of every job, each with a schedule, over `count` shards."""
    jobs = [j.name for j in base.jobs]
    clients = [ClientSettings(name=n, jobs=jobs, contact="data@example.com",
                              schedules=[Schedule(job=jobs[0], cron="0 3 * * *")])
               for n in CLIENTS]
    return base.model_copy(update={"clients": clients,
                                   "client_shards": ClientShards(count=count)})


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same dev and prod clients synthesized with count 0 and count 3."""
    from stacks.app import synth
    from stacks.environments import dev, prod

    return {count: synth([_env(dev(), count), _env(prod(), count)],
                         str(tmp_path_factory.mktemp(f"count{count}")))
            for count in (0, COUNT)}


def _docs(out: Path, env: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in stack_group(out / "stacks", f"platform-{env}")]


# ---- tfjson.groups ---------------------------------------------------------------------------
def test_the_names_are_those_of_stacks_shards() -> None:
    from stacks.client_shard import SHARD_LOCAL

    assert tfgroups.SHARD_LOCAL == SHARD_LOCAL
    for stack in ("platform-dev", shard_stack_name("platform-dev", 0),
                  shard_stack_name("platform-a-clients-x", 12), "p-clients-"):
        assert tfgroups.platform_of(stack) == platform_of(stack), stack
    assert tfgroups.shard_index(shard_stack_name("platform-dev", 7), "platform-dev") == 7
    assert tfgroups.shard_index("platform-dev-clients-7", "platform-prod") is None


def test_a_group_is_its_platform_then_its_shards_and_no_stale_one(outs: dict[int, Path],
                                                                  tmp_path: Path) -> None:
    out = outs[COUNT]
    group = stack_group(out / "stacks", "platform-dev")
    assert [p.parent.name for p in group] == ["platform-dev", *(
        shard_stack_name("platform-dev", k) for k in range(COUNT))]
    assert stack_group(out / "stacks", "platform-dev") == expand_groups([group[0]])
    assert group_heads([*group, *stack_group(out / "stacks", "platform-prod")]) == [
        group[0], out / "stacks" / "platform-prod" / "cdk.tf.json"]
    # A shard a lower count left on disk is not the synth's (its manifest does not list it);
    # without a manifest (files copied by hand), every <platform>-clients-<k> folder is.
    copy_ = tmp_path / "out"
    shutil.copytree(out, copy_)
    shutil.copytree(copy_ / "stacks" / "platform-dev-clients-2",
                    copy_ / "stacks" / "platform-dev-clients-10")
    assert len(stack_group(copy_ / "stacks", "platform-dev")) == 1 + COUNT
    (copy_ / "manifest.json").unlink()
    assert [p.parent.name for p in stack_group(copy_ / "stacks", "platform-dev")][-1] == (
        "platform-dev-clients-10")
    named = {n: json.loads((out / "stacks" / n / "cdk.tf.json").read_text())
             for n in synthesized_stacks(out / "stacks")}
    groups = split_groups(named)
    assert groups["platform-dev-clients-1"] == groups["platform-dev"] == [
        p.parent.name for p in group]
    alone = split_groups({"platform-dev-clients-1": named["platform-dev-clients-1"]})
    assert alone == {"platform-dev-clients-1": ["platform-dev-clients-1"]}


# ---- the local cloud -------------------------------------------------------------------------
def _bindings(policy: Any) -> dict[str, set[tuple[str, frozenset[str], str | None]]]:
    return {bucket: {(b.role, b.members, b.condition) for b in found}
            for bucket, found in policy.buckets.items()}


def test_the_local_cloud_reads_every_client_of_a_sharded_environment(
        outs: dict[int, Path]) -> None:
    """The platform stack stands for its group: buckets, bucket IAM, Pub/Sub and
    service-account IAM, topics, subscriptions and notifications are those of count 0."""
    from local.apply import declared_buckets
    from local.iam_policy import load_policy
    from local.pubsub_iam import load_iam_policy
    from local.pubsub_stack import declared_notifications, declared_subscriptions, declared_topics

    def seen(out: Path) -> dict[str, Any]:
        head = [out / "stacks" / "platform-dev" / "cdk.tf.json"]
        docs = _docs(out, "dev")
        pubsub = load_iam_policy(head)
        return {
            "buckets": sorted(b for d in docs for b in declared_buckets(d)),
            "bindings": _bindings(load_policy(head)),
            "grants": {r: {(g.role, g.members) for g in gs} for r, gs in pubsub.grants.items()},
            "topics": sorted(declared_topics(docs)),
            "subscriptions": declared_subscriptions(docs),
            "notifications": sorted((n.bucket, n.topic, n.object_name_prefix)
                                    for n in declared_notifications(docs)),
        }

    single, sharded = seen(outs[0]), seen(outs[COUNT])
    env = _env(EnvironmentSettings.model_validate(
        json.loads((outs[0] / "environments" / "platform-dev.json").read_text())), 0)
    assert {env.client_bucket(c) for c in CLIENTS} <= set(sharded["buckets"])
    assert {env.run_sa_email(c) for c in CLIENTS} <= set(sharded["grants"])
    for key in single:
        assert sharded[key] == single[key], key


def _touch(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))


def test_live_readers_notice_a_changed_shard_and_a_new_one(outs: dict[int, Path],
                                                           tmp_path: Path) -> None:
    from local.iam_proxy import PolicySource
    from local.pubsub_iam import StackIam
    from local.topology import StackWatch

    out = tmp_path / "out"
    shutil.copytree(outs[COUNT], out)
    head = out / "stacks" / "platform-dev" / "cdk.tf.json"
    watch, policies, iam = StackWatch([head]), PolicySource([head], 0.0), StackIam([head])
    assert len(watch.changed() or []) == 1 + COUNT and watch.changed() is None
    before = _bindings(policies.current())
    grants_before = dict(iam.current().grants)
    # A shard's client gets one more reader: every live reader sees it on its next call.
    shard = next(p for p in stack_group(out / "stacks", "platform-dev")[1:]
                 if "resource" in json.loads(p.read_text()))
    doc = json.loads(shard.read_text())
    bucket_policy = doc["resource"]["google_storage_bucket_iam_policy"]["clients-bucket-policy"]
    entry = next(iter(bucket_policy["for_each"].values()))
    entry["policy_data"] = policy_data([*(policy_bindings(entry["policy_data"]) or []),
                                        PolicyBinding("roles/storage.objectViewer",
                                                      ["user:extra@example.com"])])
    _touch(shard, json.dumps(doc))
    assert watch.changed() is not None
    after = _bindings(policies.current())
    assert after != before and any("user:extra@example.com" in m for bs in after.values()
                                   for _, m, _ in bs)
    # A new shard (a higher count), listed in the synth's manifest.
    new = out / "stacks" / shard_stack_name("platform-dev", COUNT)
    new.mkdir()
    extra = copy.deepcopy(doc)
    extra["locals"]["gpub_client_shard"]["index"] = COUNT
    topic = extra["resource"]["google_pubsub_topic"]["clients-results"]["for_each"]
    topic["newcomer"] = {**next(iter(topic.values())), "name": "batch-newcomer-results"}
    (new / "cdk.tf.json").write_text(json.dumps(extra))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stacks"][new.name] = {"name": new.name}
    _touch(out / "manifest.json", json.dumps(manifest))
    docs = watch.changed()
    assert docs is not None and len(docs) == 2 + COUNT
    assert len(iam.current().grants) >= len(grants_before)


def test_a_running_cloud_names_a_group_by_its_platform_stack(outs: dict[int, Path]) -> None:
    group = stack_group(outs[COUNT] / "stacks", "platform-dev")
    assert group_heads(group) == group_heads(group[:1]) == group[:1]


# ---- bin/submit ------------------------------------------------------------------------------
def test_submit_reads_the_group_and_names_a_missing_shard(outs: dict[int, Path],
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from stacks.environments import dev
    from submit import synth
    from submit.errors import SubmitError

    env = _env(dev(), COUNT)
    monkeypatch.setenv("GPUB_SYNTH_DIR", str(outs[COUNT]))
    files = synth.stack_files(env, client=CLIENTS[0])
    assert files == [p.resolve() for p in stack_group(outs[COUNT] / "stacks", env.stack_name)]
    out = tmp_path / "out"
    shutil.copytree(outs[COUNT], out)
    home = shard_stack_name(env.stack_name, hashed_shard(CLIENTS[0], COUNT))
    shutil.rmtree(out / "stacks" / home)
    with pytest.raises(SubmitError, match=rf"run synth: client '{CLIENTS[0]}' lives in stack "
                                          rf"{home}"):
        synth.stack_files(env, str(out), CLIENTS[0])
    assert synth.stack_files(env, str(tmp_path / "none")) == []


# ---- bin/check: project-wide limits over the group ---------------------------------------------
def _facts(out: Path, env: str) -> list[Any]:
    docs = _docs(out, env)
    return [dataclasses.replace(facts_from_document(d), group=tuple(docs)) for d in docs]


def _service_accounts(out: Path, env: str) -> int:
    from policies.checkbase import by_type

    return sum(len(by_type(f).get("google_service_account", [])) for f in _facts(out, env))


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_project_wide_totals_are_the_same_sharded_or_not(outs: dict[int, Path], env: str) -> None:
    from policies.checkbase import by_type, group_facts
    from policies.checks.gpub_deploy import _scheduler_counts
    from policies.checks.gpub_limits import INSTANCES_PER_STATE, _count

    def totals(out: Path) -> dict[str, Any]:
        facts = _facts(out, env)
        counts = _count(facts[-1])  # any file of the group counts the whole group
        return {
            "service_accounts": sum(len(by_type(f).get("google_service_account", []))
                                    for f in group_facts(facts[-1])),
            "schedules": sum(sum(_scheduler_counts(f.document).values()) for f in facts),
            **{k: dict(v) for k, v in counts.items()},
            "largest_state": max(sum(len(i) for i in by_type(f).values()) for f in facts),
        }

    single, sharded = totals(outs[0]), totals(outs[COUNT])
    assert single["service_accounts"] == sharded["service_accounts"] >= 2 * len(CLIENTS)
    assert single["schedules"] == sharded["schedules"] == len(CLIENTS)
    for key in ("triggers", "conditional", "members"):
        assert single[key] == sharded[key], key
    assert sharded["largest_state"] < single["largest_state"] <= INSTANCES_PER_STATE


def _quotas(out: Path, tmp: Path, service_accounts: int, schedules: int) -> Path:
    """A copy of the synth whose platform stacks declare these quotas."""
    copy_ = tmp / f"{out.name}-{service_accounts}"
    shutil.copytree(out, copy_)
    for env in ("dev", "prod"):
        path = copy_ / "stacks" / f"platform-{env}" / "cdk.tf.json"
        doc = json.loads(path.read_text())
        doc["locals"]["gpub_declared_quotas"] = {"service_accounts": service_accounts,
                                                 "scheduler_jobs_per_region": schedules}
        path.write_text(json.dumps(doc, indent=2))
    return copy_


def test_the_same_clients_pass_and_fail_the_same_sharded_or_not(outs: dict[int, Path],
                                                                tmp_path: Path) -> None:
    """One checkov run (bin/check's inputs and suppressions) over both synths at the quotas
    just met and just missed: LIM_10 and DEP_4 pass and fail alike, and nothing else fails,
    the shards' apply order (CKV_GPUB_DEP_*) and the platform's suppressions included."""
    from policies.check_cli import _stack_inputs
    from policies.scan import apply_suppressions, run_checkov
    from policies.suppressions import DEFAULT_PATH, Matcher, load

    total = _service_accounts(outs[0], "dev")
    assert total == _service_accounts(outs[0], "prod") == _service_accounts(outs[COUNT], "dev")
    variants = {(count, fits): _quotas(outs[count], tmp_path, total if fits else total - 1,
                                       len(CLIENTS) if fits else len(CLIENTS) - 1)
                for count in (0, COUNT) for fits in (True, False)}
    inputs = {key: _stack_inputs([], [], out, None) for key, out in variants.items()}
    report, located = run_checkov([s for stacks in inputs.values() for s in stacks])
    apply_suppressions(report, located, Matcher(load(DEFAULT_PATH)))
    failed: dict[tuple[int, bool], set[tuple[str, str]]] = {key: set() for key in variants}
    for record in report.failed_checks:
        for key, out in variants.items():
            if Path(record.file_abs_path).is_relative_to(out):
                env = platform_of(Path(record.file_abs_path).parent.name)
                failed[key].add((record.check_id, env))
    assert failed[(0, True)] == failed[(COUNT, True)] == set(), failed
    over = {(rule, env) for rule in ("CKV_GPUB_LIM_10", "CKV_GPUB_DEP_4")
            for env in ("platform-dev", "platform-prod")}
    assert failed[(0, False)] == failed[(COUNT, False)] == over, failed


def test_a_state_over_2500_instances_names_the_count_that_fits() -> None:
    from policies.checks.gpub_limits import INSTANCES_PER_STATE, InstancesPerState
    from policies.checks.gpub_limits import _shard_advice as advice

    assert INSTANCES_PER_STATE == 2500 and InstancesPerState.__name__
    names = [f"t{i:04d}" for i in range(200)]
    doc = {"resource": {"google_storage_bucket": {"clients-bucket": {
        "for_each": {n: {"name": n} for n in names}, "name": "${each.value.name}"}},
        "google_service_account": {"clients-sa": {
            "for_each": {n: {"account_id": n} for n in names}, "account_id": "x"}}}}
    # 2 instances a client: 1,250 clients a state; the placement of 200 names needs 1.
    assert advice(facts_from_document(doc)) == "set client_shards.count to 1 or more"


# ---- the fresh-project check over a group ------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_sharded_environment_applies_on_a_fresh_project(outs: dict[int, Path],
                                                          env: str) -> None:
    from policies.fresh_project import findings

    platform, *shards = _docs(outs[COUNT], env)
    assert findings(platform) == {}
    assert len(shards) == COUNT
    for shard in shards:
        assert findings(shard, [platform]) == {}


def test_a_shard_alone_or_on_a_topic_its_platform_lacks_is_refused(
        outs: dict[int, Path]) -> None:
    from policies.fresh_project import findings

    platform, *shards = _docs(outs[COUNT], "dev")
    shard = next(s for s in shards if "google_storage_notification" in s.get("resource", {}))
    alone = findings(shard)
    assert alone and all("judged without it" in str(f[0]) for f in alone.values()), alone
    assert any("SERVICE_DISABLED" in str(f) for fs in alone.values() for f in fs)
    bad = copy.deepcopy(shard)
    entries = bad["resource"]["google_storage_notification"]["clients-intake"]["for_each"]
    entry = next(iter(entries.values()))
    entry["topic"] = entry["topic"].rsplit("/", 1)[0] + "/batch-intake-nowhere"
    refused = findings(bad, [platform])
    messages = [str(f) for f in refused["google_storage_notification.clients-intake"]]
    assert any("batch-intake-nowhere, which neither this stack" in m for m in messages)
    # The platform without the storage agent's publisher grant on the topic: refused too.
    stripped = copy.deepcopy(platform)
    stripped["resource"]["google_pubsub_topic_iam_member"] = {
        n: b for n, b in stripped["resource"]["google_pubsub_topic_iam_member"].items()
        if "data.google_storage_project_service_account" not in json.dumps(b.get("member"))}
    messages = [str(f) for f in findings(shard, [stripped])[
        "google_storage_notification.clients-intake"]]
    assert any("publisher grant on platform-dev::google_pubsub_topic.intake-" in m
               for m in messages), messages


def test_bin_check_passes_sharded_environments_and_skips_a_stale_shard(tmp_path: Path) -> None:
    """environments.yaml with `client_shards.count: 2` passes bin/check (the shards' apply
    order, limits and the platform's suppressions); a shard folder a higher count left in
    --out, unlisted in the synth's manifest, is not checked."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    text = (root / "environments.yaml").read_text(encoding="utf-8")
    for cmek in ("false", "true"):
        text = text.replace(f"  cmek: {cmek}\n", f"  cmek: {cmek}\n  client_shards: {{count: 2}}\n")
    sharded = text
    assert sharded.count("client_shards: {count: 2}") == 2
    (tmp_path / "environments.yaml").write_text(sharded, encoding="utf-8")
    stale = tmp_path / "out" / "stacks" / shard_stack_name("platform-dev", 5)
    stale.mkdir(parents=True)
    (stale / "cdk.tf.json").write_text(json.dumps({"resource": {"google_project_iam_member": {
        "bad_owner": {"project": "p", "role": "roles/owner", "member": "user:x@example.com"}}}}))
    proc = subprocess.run(
        [str(root / "bin" / "check"), "--out", str(tmp_path / "out"), "--reports",
         str(tmp_path / "reports"), "--json"],
        capture_output=True, text=True, check=False, cwd=root,
        env={"PATH": "/usr/bin:/bin", "GPUB_ENVIRONMENTS": str(tmp_path / "environments.yaml")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["passed"] and not result["failed"]
    checked = json.loads((tmp_path / "reports" / "results_sarif.sarif").read_text())
    text = json.dumps(checked)
    assert "platform-dev-clients-1" in text and "platform-dev-clients-5" not in text


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_client_identities_hold_no_project_role_in_any_state(outs: dict[int, Path],
                                                            env: str) -> None:
    from policies.project_iam import group_wide_roles
    from stacks.environments import dev, prod

    settings = _env(dev() if env == "dev" else prod(), COUNT)
    docs = _docs(outs[COUNT], env)
    for client in CLIENTS:
        assert group_wide_roles(docs, settings.client_sa_email(client)) == []
        run = {r for r, _ in group_wide_roles(docs, settings.run_sa_email(client))}
        assert {"roles/logging.logWriter", "roles/batch.agentReporter"} <= run
