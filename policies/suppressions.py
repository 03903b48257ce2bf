"""The suppression registry (`policies/suppressions.yaml`): every skip, with a reason.

checkov's inline skip comments cannot live in generated CDKTF JSON and `--skip-check` is
global, so bin/check runs every check and then moves the failures a suppression matches to
"suppressed" (SARIF `suppressions`, JUnit `skipped`, with the reason). An entry that matches no
failure, or that has expired, fails the run: the registry cannot rot.

Entry format:

    suppressions:
      - id: CKV_GCP_62                          # a checkov id, CKV_GPUB_n or GPUB_JOB_n
        resource: "google_storage_bucket.buckets_logs_*"
        reason: "the log bucket cannot log to itself"   # at least 10 characters
        expires: 2026-12-31                     # optional; after it the entry fails the run

`resource` is a glob matched against the resource address (`type.name`), the same prefixed
with the stack (`platform-dev/type.name`) and the CDK construct path
(`platform-dev/buckets/logs`); for job guardrails against `<stack>/<job>`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

DEFAULT_PATH = Path(__file__).with_name("suppressions.yaml")


class SuppressionError(ValueError):
    """The registry cannot be read; the message names the entry and the field."""


class Suppression(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^(CKV2?_[A-Z0-9]+_\d+|GPUB_JOB_\d+)$")]
    resource: Annotated[str, StringConstraints(min_length=1)]
    reason: str
    expires: dt.date | None = None

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if len(v.strip()) < 10:
            raise ValueError(f"reason must say why in at least 10 characters; got {v!r}")
        return v.strip()

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and today > self.expires

    def matches(self, check_id: str, names: Iterable[str]) -> bool:
        return check_id == self.id and any(fnmatch.fnmatchcase(n, self.resource) for n in names)

    def label(self) -> str:
        return f"{self.id} on {self.resource!r}"


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suppressions: list[Suppression] = Field(default_factory=list)


def load(path: Path = DEFAULT_PATH) -> list[Suppression]:
    """Read and validate the registry; a missing file is an empty registry."""
    if not path.exists():
        return []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SuppressionError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return list(Registry.model_validate(raw).suppressions)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if where.startswith("suppressions."):
                where = "suppressions[" + where.removeprefix("suppressions.").replace(".", "].", 1)
                where = where if "]" in where else where + "]"
            lines.append(f"{path}: {where}: {err['msg']}")
        raise SuppressionError("\n".join(lines)) from exc


class Matcher:
    """Applies the registry to results and remembers which entries were used."""

    def __init__(self, entries: list[Suppression], today: dt.date | None = None) -> None:
        self.today = today or dt.date.today()
        self.entries = entries
        self.used: set[int] = set()

    def match(self, check_id: str, names: Iterable[str]) -> Suppression | None:
        names = list(names)
        for i, entry in enumerate(self.entries):
            if entry.expired(self.today):
                continue  # an expired entry suppresses nothing (and fails the run below)
            if entry.matches(check_id, names):
                self.used.add(i)
                return entry
        return None

    def problems(self) -> list[str]:
        out = []
        for i, entry in enumerate(self.entries):
            if entry.expired(self.today):
                out.append(
                    f"suppression {entry.label()} expired on {entry.expires}: fix the "
                    "finding or renew the entry with a new reason"
                )
            elif i not in self.used:
                out.append(f"suppression {entry.label()} matches no failing result: remove it")
        return out
