"""The local cloud's delivery knobs: Google delivers at least once, out of order, and its APIs
fail transiently; these settings make the local Pub/Sub, the local Eventarc and the Workflows
connectors do the same, reproducibly (docs/local.md "Delivery like Google's" cites each page).

- `LOCAL_PUBSUB_DUPLICATE_RATE` (0.0-1.0, default 0): share of messages delivered a second
  time even when acknowledged;
- `LOCAL_PUBSUB_REORDER` (1/0, true/false, yes/no, on/off; default off): ready messages leave
  in a shuffled order;
- `LOCAL_CONNECTOR_ERROR_RATE` (0.0-1.0, default 0): share of connector requests answered
  429/500/502/503/504;
- `LOCAL_FAULT_SEED` (an integer, default 0): the seed of every draw above.

Each consumer draws from its own stream (`FaultPlan.stream(name)`), seeded from the seed and
the stream's name, so one subscription's draws do not depend on another's traffic.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

DUPLICATE_RATE_ENV = "LOCAL_PUBSUB_DUPLICATE_RATE"
REORDER_ENV = "LOCAL_PUBSUB_REORDER"
CONNECTOR_ERROR_RATE_ENV = "LOCAL_CONNECTOR_ERROR_RATE"
SEED_ENV = "LOCAL_FAULT_SEED"
ENV_NAMES = (DUPLICATE_RATE_ENV, REORDER_ENV, CONNECTOR_ERROR_RATE_ENV, SEED_ENV)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class FaultConfigError(ValueError):
    """A knob's value is not allowed; the message names the variable and what is allowed."""


class FaultPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    reorder: bool = False
    connector_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int = 0

    def stream(self, name: str) -> random.Random:
        """A random stream of its own for one consumer (a subscription, an execution)."""
        return random.Random(f"{self.seed}:{name}")

    def env(self) -> dict[str, str]:
        """The variables that give this plan to a child process."""
        return {DUPLICATE_RATE_ENV: repr(self.duplicate_rate), REORDER_ENV: str(int(self.reorder)),
                CONNECTOR_ERROR_RATE_ENV: repr(self.connector_error_rate), SEED_ENV: str(self.seed)}


def _rate(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise FaultConfigError(f"{name}: got {raw!r}; allowed: a number from 0.0 to 1.0")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise FaultConfigError(f"{name}: got {raw!r}; allowed: 1/0, true/false, yes/no, on/off")


def _seed(env: Mapping[str, str]) -> int:
    raw = env.get(SEED_ENV, "").strip()
    try:
        return int(raw) if raw else 0
    except ValueError:
        raise FaultConfigError(f"{SEED_ENV}: got {raw!r}; allowed: an integer") from None


def plan_from_env(env: Mapping[str, str] | None = None) -> FaultPlan:
    """The plan the environment asks for; FaultConfigError on a value outside what is allowed."""
    env = os.environ if env is None else env
    return FaultPlan(duplicate_rate=_rate(env, DUPLICATE_RATE_ENV), reorder=_flag(env, REORDER_ENV),
                     connector_error_rate=_rate(env, CONNECTOR_ERROR_RATE_ENV), seed=_seed(env))
