"""Client shards (issue 22): stable placement, clear refusals, and sharded stacks that hold the
same clients' resources as one stack would, each in a state of its own after the platform."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stacks.settings import ClientSettings, EnvironmentSettings
from stacks.shards import (
    ClientShards,
    assign,
    check_shards,
    hashed_shard,
    platform_of,
    shard_stack_name,
)
from tfjson import instances

NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9]{2,12}", fullmatch=True), min_size=1,
                 max_size=60, unique=True)


@settings(max_examples=60, deadline=None)
@given(NAMES, st.from_regex(r"[a-z][a-z0-9]{2,12}", fullmatch=True),
       st.integers(min_value=1, max_value=40))
def test_adding_a_client_never_moves_another(names: list[str], new: str, count: int) -> None:
    before = {n: hashed_shard(n, count) for n in names}
    after = {n: hashed_shard(n, count) for n in [*names, new] if n in before}
    assert before == after


@settings(max_examples=60, deadline=None)
@given(NAMES, st.integers(min_value=1, max_value=40))
def test_one_more_shard_moves_clients_only_into_the_new_shard(names: list[str], n: int) -> None:
    """Jump consistent hash: going from n to n+1 shards, a client stays or moves to shard n."""
    for name in names:
        old, new = hashed_shard(name, n), hashed_shard(name, n + 1)
        assert new in (old, n)


def test_placement_spreads_clients_evenly_enough() -> None:
    names = [f"tenant-{i:05d}" for i in range(10_000)]
    sizes = [len(v) for v in assign([(n, None) for n in names], 125).values()]
    assert len(sizes) == 125 and max(sizes) < 1.5 * 80 and min(sizes) > 0.5 * 80


def test_a_pin_outside_the_shards_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"clients\.acme\.shard: 3 is not a shard .*count 2"):
        check_shards([("acme", 3)], ClientShards(count=2))


def test_an_overfull_state_names_the_count_that_fits() -> None:
    clients = [(f"c{i:03d}", None) for i in range(30)]
    with pytest.raises(ValueError) as err:
        check_shards(clients, ClientShards(count=0, size=10))
    m = re.search(r"30 clients in the platform stack's state, more than client_shards\.size 10"
                  r".*set client_shards\.count to (\d+) or more", str(err.value))
    assert m, err.value
    check_shards(clients, ClientShards(count=int(m.group(1)), size=10))  # the fix works
    with pytest.raises(ValueError, match=r"in shard \d+, more than client_shards\.size 10"):
        check_shards(clients, ClientShards(count=2, size=10))


def test_environments_yaml_declares_shards_and_pins(tmp_path: Path) -> None:
    from stacks.environments import EnvironmentsError, parse_environments

    text = (Path(__file__).parents[1] / "environments.yaml").read_text()
    acme = "{name: acme, jobs: [embed, uppercase], contact: data@acme.example}"
    text = text.replace("  cmek: false\n", "  cmek: false\n  client_shards: {count: 2, size: 50}\n",
                        1).replace(acme, "{name: acme, jobs: [embed, uppercase], shard: 1}", 1)
    dev = parse_environments(text, tmp_path / "e.yaml")[0]
    assert dev.client_shards == ClientShards(count=2, size=50)
    assert next(c.shard for c in dev.clients) == 1
    with pytest.raises(EnvironmentsError, match=r"dev: .*clients\.acme\.shard: 1 is not a shard"):
        parse_environments(text.replace("count: 2", "count: 1"), tmp_path / "e.yaml")


def test_stack_names_round_trip() -> None:
    assert shard_stack_name("platform-dev", 7) == "platform-dev-clients-7"
    assert platform_of("platform-dev-clients-7") == "platform-dev"
    assert platform_of("platform-dev") == "platform-dev"


# ---- sharded synth ------------------------------------------------------------------------
CLIENTS = [f"tenant-{i:02d}" for i in range(7)]


def _env(base: EnvironmentSettings, count: int) -> EnvironmentSettings:
    jobs = [j.name for j in base.jobs]
    clients = [ClientSettings(name=n, jobs=jobs, contact="data@example.com",
                              principal="group:people@example.com") for n in CLIENTS]
    return base.model_copy(update={"name": f"{base.name[:4]}{count}", "clients": clients,
                                   "client_shards": ClientShards(count=count, size=80)})


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stacks.app import synth
    from stacks.environments import dev, prod

    out = tmp_path_factory.mktemp("shards")
    envs = [_env(dev(), 0), _env(dev(), 3), _env(prod(), 3)]
    synth(envs, str(out))
    docs = {p.parent.name: json.loads(p.read_text()) for p in out.glob("stacks/*/cdk.tf.json")}
    manifest = json.loads((out / "manifest.json").read_text())
    return {"docs": docs, "manifest": manifest, "envs": envs}


def _client_entries(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rtype, named in (doc.get("resource") or {}).items():
        for name, body in named.items():
            if name.startswith("clients-") and isinstance(body.get("for_each"), dict):
                for key, conf in instances(name, body):
                    out[f"{rtype}.{key}"] = conf
    return out


def _literal(text: str, env: EnvironmentSettings) -> str:
    """A platform reference as a shard names it."""
    lay = env.layout
    subs = {
        r"\$\{google_service_account\.batch-workflows\.email\}": lay.workflow_sa_email,
        r"\$\{google_service_account\.operator\.email\}": lay.operator_sa_email,
        r"\$\{google_service_account\.batch-scheduler\.email\}": lay.scheduler_sa_email,
        r"\$\{google_storage_bucket\.buckets_logs_[0-9A-F]+\.name\}": lay.log_bucket,
        r"\$\{google_pubsub_topic\.intake-([a-z0-9-]+)\.id\}":
            lambda m: lay.topic_path(lay.intake_topic(m.group(1))),
    }
    for pattern, value in subs.items():
        text = re.sub(pattern, value, text)  # type: ignore[arg-type]
    return text


def test_every_shard_is_a_stack_with_its_own_state_after_the_platform(
        synthesized: dict[str, Any]) -> None:
    docs, manifest = synthesized["docs"], synthesized["manifest"]
    for env in synthesized["envs"][1:]:
        for k in range(3):  # empty shards too: a shard that empties still owns its state
            name = shard_stack_name(env.stack_name, k)
            doc = docs[name]
            assert doc["terraform"]["backend"]["gcs"] == {
                "bucket": env.state_bucket, "prefix": f"{env.state_prefix}/clients-{k}"}
            assert manifest["stacks"][name]["dependencies"] == [env.stack_name]
            assert doc["locals"]["gpub_client_shard"] == {"platform": env.stack_name,
                                                          "index": k}
            text = json.dumps(doc)
            assert "__gpub_deferred_" not in text
            # Platform values are literal names: a shard references only what it declares
            # (and, for the alert channels' ids, the platform's state via cdktf's remote state).
            refs = set(re.findall(r"\$\{(google_[a-z_]+)\.([a-zA-Z0-9_-]+)", text))
            declared = {(t, n) for t, named in doc["resource"].items() for n in named}
            assert refs <= declared, refs - declared
        platform = docs[env.stack_name]
        assert not _client_entries(platform)


def test_shards_hold_exactly_the_resources_one_stack_would(synthesized: dict[str, Any]) -> None:
    docs = synthesized["docs"]
    single_env, sharded_env = synthesized["envs"][0], synthesized["envs"][1]
    def same(conf: dict[str, Any], env: EnvironmentSettings) -> dict[str, Any]:
        # Construct paths, the platform stack's API barrier (a shard is applied after the
        # platform: no barrier of its own) and the environment's name set aside.
        text = _literal(json.dumps({k: v for k, v in conf.items()
                                    if k not in ("//", "depends_on")}), env)
        return json.loads(text.replace(env.name, "ENV"))

    single = {k: same(v, single_env)
              for k, v in _client_entries(docs[single_env.stack_name]).items()}
    union: dict[str, Any] = {}
    placed: dict[str, int] = {}
    for k in range(3):
        for key, conf in _client_entries(docs[shard_stack_name(sharded_env.stack_name, k)]).items():
            assert key not in union, f"{key} in two shards"
            union[key] = same(conf, sharded_env)
            placed[key.split(".", 1)[1].split("[", 1)[1].split('"')[1].split("/")[0]] = k
    # Only the names differ between the two environments (dev0 vs dev3 share the project).
    assert union.keys() == single.keys()
    for key in single:
        assert union[key] == single[key], key
    for client, k in placed.items():
        assert k == hashed_shard(client, 3)


def test_a_shard_pin_overrides_the_hash(synthesized: dict[str, Any]) -> None:
    from stacks.environments import dev

    env = _env(dev(), 3)
    pinned = env.model_copy(update={"clients": [
        c.model_copy(update={"shard": 2}) for c in env.clients]})
    assert set(assign([(c.name, c.shard) for c in pinned.clients], 3)) == {2}
    with pytest.raises(ValidationError, match=r"clients\.tenant-00\.shard: 5"):
        EnvironmentSettings.model_validate({**env.model_dump(), "jobs": env.jobs, "clients": [
            {**c.model_dump(), "shard": 5} for c in env.clients]})


def test_moved_blocks_name_what_cdktf_called_the_old_constructs(tmp_path: Path) -> None:
    """Channels and budgets were constructs of their own (`channels/client-<c>`,
    `client-budgets/<c>`): the `moved` blocks' `from` is the address cdktf gave such a path,
    and every `to` exists in the synthesized stack."""
    from constructs import Construct

    from stacks.app import synth
    from stacks.client import _legacy_address
    from stacks.environments import prod
    from stacks.provider import App, MonitoringNotificationChannel, TerraformStack

    app = App(outdir=str(tmp_path / "probe"))
    stack = TerraformStack(app, "probe")
    channel = MonitoringNotificationChannel(Construct(stack, "channels"), "client-acme",
                                            type="email")
    assert _legacy_address("google_monitoring_notification_channel", "channels",
                           "client-acme") == (
        f"google_monitoring_notification_channel.{channel.friendly_unique_id}")

    out = synth([prod()], str(tmp_path / "out"))
    folder = out / "stacks" / "platform-prod"
    moved = re.findall(r"from = (\S+)\n  to   = (\S+)", (folder / "moved.tf").read_text())
    assert ('google_billing_budget.client-budgets_acme_7B23640C',
            'google_billing_budget.clients-budgets["acme"]') in moved
    doc = json.loads((folder / "cdk.tf.json").read_text())
    have = {f"{t}.{k}" for t, named in doc["resource"].items()
            for n, conf in named.items() for k, _ in instances(n, conf)}
    assert all(to in have and frm not in have for frm, to in moved), moved


def test_fewer_shards_remove_the_folders_of_the_shards_gone(tmp_path: Path) -> None:
    from stacks.app import synth
    from stacks.environments import dev

    synth([_env(dev(), 3)], str(tmp_path))
    assert (tmp_path / "stacks" / "platform-dev3-clients-2").is_dir()
    fewer = _env(dev(), 3).model_copy(update={"client_shards": ClientShards(count=1)})
    synth([fewer], str(tmp_path))
    left = sorted(p.name for p in (tmp_path / "stacks").iterdir())
    assert left == ["platform-dev3", "platform-dev3-clients-0"]


def test_the_deploy_pattern_matches_the_platform_and_its_shards_only() -> None:
    """cdktn-cli picks stacks with minimatch and refuses a pattern that matches none, so the
    deploy pattern must match the platform even without shards (checked with the minimatch in
    node_modules, the library the CLI bundles)."""
    import shutil
    import subprocess

    from stacks.shards import group_pattern

    node = shutil.which("node")
    root = Path(__file__).resolve().parents[1]
    if node is None or not (root / "node_modules" / "minimatch").is_dir():
        pytest.skip("node_modules not installed (bin/_bootstrap installs it)")
    names = ["platform-dev", "platform-dev-clients-0", "platform-dev-clients-12",
             "platform-dev2", "platform-prod", "platform-prod-clients-0"]
    script = ("const m=require('minimatch');const mm=m.minimatch||m;"
              f"console.log(JSON.stringify({json.dumps(names)}.filter(s=>mm(s,"
              f"{json.dumps(group_pattern('platform-dev'))}))))")
    out = subprocess.run([node, "-e", script], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == ["platform-dev", "platform-dev-clients-0", "platform-dev-clients-12"]
