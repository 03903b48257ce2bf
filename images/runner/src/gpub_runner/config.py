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
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def num(name: str, default: float, *, lo: float, hi: float | None = None) -> float:
            raw = get(name)
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

        def integer(name: str, default: int, *, lo: int) -> int:
            value = num(name, default, lo=lo)
            if value != int(value):
                raise ConfigError(f"{name} must be an integer; got {get(name)!r}")
            return int(value)

        handler = get("GPUB_HANDLER")
        if handler is None or ":" not in handler:
            raise ConfigError(f"GPUB_HANDLER must be 'module:function'; got {handler!r}")
        out_raw = get("GPUB_OUTPUT_PREFIX")
        if out_raw is None:
            raise ConfigError("GPUB_OUTPUT_PREFIX is required (gs://bucket/prefix/)")
        output_prefix = _as_prefix(GcsUri.parse(out_raw, what="GPUB_OUTPUT_PREFIX"))
        in_raw = get("GPUB_INPUT_PREFIX")
        input_prefix = (
            _as_prefix(GcsUri.parse(in_raw, what="GPUB_INPUT_PREFIX")) if in_raw else None
        )
        manifest_raw = get("GPUB_MANIFEST")
        objects_raw = get("GPUB_INPUT_OBJECTS")
        manifest = GcsUri.parse(manifest_raw, what="GPUB_MANIFEST") if manifest_raw else None
        objects = tuple(
            GcsUri.parse(u.strip(), what="GPUB_INPUT_OBJECTS")
            for u in (objects_raw or "").split(",")
            if u.strip()
        )
        if manifest is not None and objects:
            raise ConfigError("set at most one of GPUB_MANIFEST and GPUB_INPUT_OBJECTS")
        if manifest is not None and input_prefix is None:
            raise ConfigError("GPUB_INPUT_PREFIX is required with GPUB_MANIFEST")
        if manifest is None and not objects and input_prefix is None:
            raise ConfigError("set GPUB_INPUT_PREFIX (the job lists and plans it), "
                              "GPUB_MANIFEST or GPUB_INPUT_OBJECTS")
        expected = get(contract.EXPECTED_INPUTS)

        task_count = integer("BATCH_TASK_COUNT", 1, lo=1)
        task_index = integer("BATCH_TASK_INDEX", 0, lo=0)
        if task_index >= task_count:
            raise ConfigError(f"BATCH_TASK_INDEX {task_index} >= BATCH_TASK_COUNT {task_count}")
        fpt = get("GPUB_FILES_PER_TASK")
        return cls(
            task_index=task_index,
            task_count=task_count,
            attempt=integer("BATCH_TASK_RETRY_ATTEMPT", 0, lo=0),
            job_name=get("GPUB_JOB_NAME") or get("BATCH_JOB_ID") or "unnamed",
            handler=handler,
            output_prefix=output_prefix,
            input_prefix=input_prefix,
            manifest=manifest,
            input_objects=objects,
            files_per_task=integer("GPUB_FILES_PER_TASK", 1, lo=1) if fpt else None,
            file_timeout_s=num("GPUB_FILE_TIMEOUT_S", 600.0, lo=0.001),
            failure_budget=num("GPUB_FAILURE_BUDGET", 0.0, lo=0.0, hi=1.0),
            batch_size=integer("GPUB_BATCH_SIZE", 16, lo=1),
            concurrency=integer("GPUB_CONCURRENCY", 32, lo=1),
            storage_timeout_s=num("GPUB_STORAGE_TIMEOUT_S", 120.0, lo=0.1),
            callback_url=get("GPUB_CALLBACK_URL"),
            job_key=get("BATCH_JOB_KEY"),
            input_format=(get(contract.INPUT_FORMAT) or "").lstrip(".") or None,
            expected_inputs=(integer(contract.EXPECTED_INPUTS, 0, lo=0)
                             if expected is not None else None),
            listing_wait_s=num(contract.LISTING_WAIT_S, 600.0, lo=0.0),
            plan_wait_s=num(contract.PLAN_WAIT_S, 3600.0, lo=0.0),
        )


def _as_prefix(uri: GcsUri) -> GcsUri:
    # "gs://b/out" and "gs://b/out/" mean the same folder.
    if uri.name and not uri.name.endswith("/"):
        return GcsUri(uri.bucket, uri.name + "/")
    return uri
