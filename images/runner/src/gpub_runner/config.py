"""Task configuration from the environment (the contract in docs/contracts.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gpub_runner import contract
from gpub_runner.contract import task_share

__all__ = ["Config", "ConfigError", "GcsUri", "task_share"]


class ConfigError(Exception):
    """Bad or missing configuration: exit code 2, retrying will not help."""


@dataclass(frozen=True)
class GcsUri:
    bucket: str
    name: str  # object name or prefix ("" for the bucket root)

    @classmethod
    def parse(cls, uri: str, *, what: str) -> GcsUri:
        if not uri.startswith("gs://"):
            raise ConfigError(f"{what} must be a gs:// URI; got {uri!r}")
        bucket, _, name = uri[len("gs://") :].partition("/")
        if not bucket:
            raise ConfigError(f"{what} has no bucket: {uri!r}")
        return cls(bucket, name)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class Config:
    task_index: int
    task_count: int
    attempt: int
    job_name: str
    handler: str
    output_prefix: GcsUri  # name ends with "/" (or is "")
    input_prefix: GcsUri | None
    manifest: GcsUri | None
    input_objects: tuple[GcsUri, ...]
    files_per_task: int | None
    file_timeout_s: float
    failure_budget: float
    batch_size: int
    concurrency: int
    storage_timeout_s: float  # per request and retry deadline for bookkeeping calls
    callback_url: str | None
    job_key: str | None
    # Plan-in-job mode (no manifest, no input objects): see gpub_runner.jobplan.
    input_format: str | None = None
    expected_inputs: int | None = None
    listing_wait_s: float = 600.0
    plan_wait_s: float = 3600.0

    @property
    def plans_itself(self) -> bool:
        return self.manifest is None and not self.input_objects

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        e = _Env(os.environ if env is None else env)
        handler = e.get("GPUB_HANDLER")
        if handler is None or ":" not in handler:
            raise ConfigError(f"GPUB_HANDLER must be 'module:function'; got {handler!r}")
        out_raw = e.get("GPUB_OUTPUT_PREFIX")
        if out_raw is None:
            raise ConfigError("GPUB_OUTPUT_PREFIX is required (gs://bucket/prefix/)")
        output_prefix = _as_prefix(GcsUri.parse(out_raw, what="GPUB_OUTPUT_PREFIX"))
        input_prefix, manifest, objects = _inputs(e)
        task_count = e.integer("BATCH_TASK_COUNT", 1, lo=1)
        task_index = e.integer("BATCH_TASK_INDEX", 0, lo=0)
        if task_index >= task_count:
            raise ConfigError(f"BATCH_TASK_INDEX {task_index} >= BATCH_TASK_COUNT {task_count}")
        return cls(
            task_index=task_index,
            task_count=task_count,
            attempt=e.integer("BATCH_TASK_RETRY_ATTEMPT", 0, lo=0),
            job_name=e.get("GPUB_JOB_NAME") or e.get("BATCH_JOB_ID") or "unnamed",
            handler=handler,
            output_prefix=output_prefix,
            input_prefix=input_prefix,
            manifest=manifest,
            input_objects=objects,
            files_per_task=e.optional_integer(contract.FILES_PER_TASK, lo=1),
            file_timeout_s=e.num("GPUB_FILE_TIMEOUT_S", 600.0, lo=0.001),
            failure_budget=e.num("GPUB_FAILURE_BUDGET", 0.0, lo=0.0, hi=1.0),
            batch_size=e.integer("GPUB_BATCH_SIZE", 16, lo=1),
            concurrency=e.integer("GPUB_CONCURRENCY", 32, lo=1),
            storage_timeout_s=e.num("GPUB_STORAGE_TIMEOUT_S", 120.0, lo=0.1),
            callback_url=e.get("GPUB_CALLBACK_URL"),
            job_key=e.get("BATCH_JOB_KEY"),
            input_format=(e.get(contract.INPUT_FORMAT) or "").lstrip(".") or None,
            expected_inputs=e.optional_integer(contract.EXPECTED_INPUTS, lo=0),
            listing_wait_s=e.num(contract.LISTING_WAIT_S, 600.0, lo=0.0),
            plan_wait_s=e.num(contract.PLAN_WAIT_S, 3600.0, lo=0.0),
        )


class _Env:
    """Typed reads of the environment; a bad value names its variable and what is allowed."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def num(self, name: str, default: float, *, lo: float, hi: float | None = None) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number; got {raw!r}") from None
        if value < lo or (hi is not None and value > hi):
            allowed = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise ConfigError(f"{name} must be {allowed}; got {raw!r}")
        return value

    def integer(self, name: str, default: int, *, lo: int) -> int:
        value = self.num(name, default, lo=lo)
        if value != int(value):
            raise ConfigError(f"{name} must be an integer; got {self.get(name)!r}")
        return int(value)

    def optional_integer(self, name: str, *, lo: int) -> int | None:
        return self.integer(name, lo, lo=lo) if self.get(name) is not None else None


def _inputs(e: _Env) -> tuple[GcsUri | None, GcsUri | None, tuple[GcsUri, ...]]:
    """(input prefix, manifest, input objects): a manifest, a list of objects, or a prefix
    alone (the job lists and plans it)."""
    in_raw = e.get(contract.INPUT_PREFIX)
    input_prefix = _as_prefix(GcsUri.parse(in_raw, what=contract.INPUT_PREFIX)) if in_raw else None
    manifest_raw = e.get(contract.MANIFEST)
    manifest = GcsUri.parse(manifest_raw, what=contract.MANIFEST) if manifest_raw else None
    objects = tuple(
        GcsUri.parse(u.strip(), what=contract.INPUT_OBJECTS)
        for u in (e.get(contract.INPUT_OBJECTS) or "").split(",")
        if u.strip()
    )
    if manifest is not None and objects:
        raise ConfigError("set at most one of GPUB_MANIFEST and GPUB_INPUT_OBJECTS")
    if manifest is not None and input_prefix is None:
        raise ConfigError("GPUB_INPUT_PREFIX is required with GPUB_MANIFEST")
    if manifest is None and not objects and input_prefix is None:
        raise ConfigError("set GPUB_INPUT_PREFIX (the job lists and plans it), "
                          "GPUB_MANIFEST or GPUB_INPUT_OBJECTS")
    return input_prefix, manifest, objects


def _as_prefix(uri: GcsUri) -> GcsUri:
    # "gs://b/out" and "gs://b/out/" mean the same folder.
    if uri.name and not uri.name.endswith("/"):
        return GcsUri(uri.bucket, uri.name + "/")
    return uri
