"""Shared fixtures: the example platform synthesized once per test session (the provider
import costs seconds, so every synth test reads the same output); and the `slow` marker made
to mean end to end: a test that starts servers of the local cloud (itself or through a
fixture) is marked `slow` whether or not its module says so, and `bin/test --fast`
(`-m "not slow"`) skips exactly those and the ones marked by hand."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# Calls that start a server of the local cloud (Batch, Pub/Sub, IAM proxy, fake-gcs-server).
SERVER_STARTERS = re.compile(
    r"\b(LocalBackend|start_cloud|start_backend|fake_gcs|start_iam_proxy|spawn_module)\s*\("
)


@cache
def starts_servers(func: Callable[..., Any]) -> bool:
    """Whether the source of a test or fixture function calls a server starter."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    return SERVER_STARTERS.search(source) is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") or not isinstance(item, pytest.Function):
            continue
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if any(starts_servers(f) for f in [item.function, *fixtures]):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stacks.app import synth
    from stacks.environments import load_environments

    out = tmp_path_factory.mktemp("cdktf.out")
    return synth(load_environments(), str(out))


@pytest.fixture(scope="session")
def stacks_json(synth_dir: Path) -> dict[str, dict[str, Any]]:
    """{"dev": cdk.tf.json, "prod": cdk.tf.json} of the example app."""
    return {
        env: json.loads((synth_dir / "stacks" / f"platform-{env}" / "cdk.tf.json").read_text())
        for env in ("dev", "prod")
    }
