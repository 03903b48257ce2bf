"""The settings of one client of an environment (environments.yaml `clients:`), and its
schedules. Pure pydantic: no provider import (re-exported by stacks.settings)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stacks.names import check_client_name
from stacks.validation import (
    check_cron,
    check_email,
    check_input_prefix,
    check_labels,
    check_principal,
    check_time_zone,
    client_sa_description,
)

InputFormat = Literal["csv", "parquet", "feather", "jsonl"]
# Label keys the platform sets on every client resource (stacks/client.py).
RESERVED_LABEL_KEYS = ("env", "managed-by", "client")

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Schedule(BaseModel):
    """A cron schedule that starts a client's job workflow."""

    model_config = _STRICT

    job: str
    cron: str
    time_zone: str = "Etc/UTC"
    input_prefix: str = ""

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        check_cron(v)
        return v

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, v: str) -> str:
        check_time_zone(v)
        return v

    @field_validator("input_prefix")
    @classmethod
    def _input_prefix(cls, v: str) -> str:
        check_input_prefix(v)
        return v


def _default_formats() -> list[InputFormat]:
    return ["jsonl"]


class ClientSettings(BaseModel):
    """One client of the platform: who may upload, which jobs run on their uploads."""

    model_config = _STRICT

    name: str
    jobs: list[str]
    principal: str | None = None
    contact: str | None = None
    upload_formats: list[InputFormat] = Field(default_factory=_default_formats)
    schedules: list[Schedule] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    # Costs: the client's monthly budget (else the environment's
    # observability.client_monthly_budget_usd); budget mails go to `contact` when it is an email.
    monthly_budget_usd: Annotated[float, Field(gt=0)] | None = None
    # Offboarding phase 1 (docs/operations.md): intake stops, runs drain, outcomes are read;
    # phase 2 deletes the entry (the bucket and its data stay: deletion_policy ABANDON).
    leaving: bool = False
    # The client's shard (stacks/shards.py): pinned here, else a stable hash of the name.
    shard: Annotated[int, Field(ge=0)] | None = None

    @field_validator("name")
    @classmethod
    def _name_fits_ids(cls, v: str) -> str:
        check_client_name(v)
        return v

    @field_validator("principal")
    @classmethod
    def _principal_form(cls, v: str | None) -> str | None:
        if v is not None:
            check_principal(v)
        return v

    @field_validator("contact")
    @classmethod
    def _contact(cls, v: str | None) -> str | None:
        if v is not None:
            check_email("contact", v)
        return v

    @field_validator("labels")
    @classmethod
    def _client_labels(cls, v: dict[str, str]) -> dict[str, str]:
        check_labels("labels", v, reserved=RESERVED_LABEL_KEYS)
        return v

    @model_validator(mode="after")
    def _description_fits(self) -> ClientSettings:
        client_sa_description(self.name, self.contact)  # raises when over 256 bytes
        return self
