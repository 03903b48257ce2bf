"""This task's share of the run: from the manifest (bin/submit), from GPUB_INPUT_OBJECTS (a
small prefix run) or from the plan the job made itself (gpub_runner.jobplan)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.api_core import exceptions as gexc

from gpub_runner import contract
from gpub_runner.config import Config, ConfigError, GcsUri
from gpub_runner.contract import task_share
from gpub_runner.gcs import Store
from gpub_runner.plan import ObjectInfo

__all__ = ["BadName", "Share", "Work", "read_share"]


@dataclass(frozen=True)
class Work:
    rel: str  # name relative to the input prefix; keys outputs' metadata and error records
    uri: GcsUri
    generation: str | None = None


@dataclass(frozen=True)
class BadName:
    """A manifest entry whose name breaks the input-name rules: quarantined, never fatal."""

    raw: object
    problem: str
    where: str

    @property
    def key(self) -> str:
        """A safe error-record name for it (the bad name itself must not become a path)."""
        digest = hashlib.sha256(repr(self.raw).encode()).hexdigest()[:16]
        return f"_bad-names/{digest}"


@dataclass
class Share:
    works: list[Work] = field(default_factory=list)
    bad_names: list[BadName] = field(default_factory=list)


def from_objects(cfg: Config, objects: Iterable[ObjectInfo]) -> Share:
    """Works for manifest entries (names relative to the input prefix)."""
    prefix = cfg.input_prefix
    assert prefix is not None  # checked by Config
    out = Share()
    for obj in objects:
        out.works.append(Work(rel=obj.name, uri=GcsUri(prefix.bucket, prefix.name + obj.name),
                              generation=obj.generation or None))
    return out


def _from_manifest(cfg: Config, store: Store, manifest: GcsUri) -> Share:
    try:
        text = store.read(manifest).decode("utf-8")
    except gexc.NotFound:
        raise ConfigError(f"manifest {manifest} not found") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    share = task_share(len(lines), cfg.task_index, cfg.task_count, cfg.files_per_task)
    out = Share()
    good: list[ObjectInfo] = []
    for i in share:  # decode only our share: manifests can be large
        where = f"manifest line {i + 1}"
        try:
            entry = json.loads(lines[i])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON: {exc}") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        raw = entry.get("name")
        problem = contract.input_name_problem(raw)
        if problem is not None:
            out.bad_names.append(BadName(raw, problem, where))
            continue
        gen = entry.get("generation")
        good.append(ObjectInfo(str(raw), 0, str(gen) if gen not in (None, "") else ""))
    out.works = from_objects(cfg, good).works
    return out


def _from_input_objects(cfg: Config) -> Share:
    share = task_share(len(cfg.input_objects), cfg.task_index, cfg.task_count,
                       cfg.files_per_task)
    prefix = cfg.input_prefix
    out = Share()
    for uri in cfg.input_objects[share.start : share.stop]:
        if prefix and uri.bucket == prefix.bucket and uri.name.startswith(prefix.name):
            rel = uri.name[len(prefix.name) :]
        else:
            rel = uri.name  # outside the prefix: key by the full object name
        problem = contract.input_name_problem(rel)
        if problem is not None:
            out.bad_names.append(BadName(rel, problem, f"GPUB_INPUT_OBJECTS {uri}"))
        else:
            out.works.append(Work(rel=rel, uri=uri))
    return out


def read_share(cfg: Config, store: Store) -> Share:
    """This task's share in manifest or input-objects mode (plan-in-job: jobplan)."""
    if cfg.manifest is not None:
        return _from_manifest(cfg, store, cfg.manifest)
    return _from_input_objects(cfg)
