"""Injected loss of the VM for the local Batch server: which attempts are preempted, when,
and with which of Batch's reserved exit codes."""

from __future__ import annotations

import random
from dataclasses import dataclass

EXIT_PREEMPTED = 50001  # Spot VM preempted


@dataclass(frozen=True)
class FaultConfig:
    """Injected Spot preemption. Server-wide from the environment at start, or per job from
    the task spec's environment variables with the same names."""

    preempt_rate: float = 0.0  # LOCAL_BATCH_PREEMPT_RATE: share of attempts preempted
    seed: str = ""  # LOCAL_BATCH_SEED: same seed -> same attempts preempted at same delays
    preempt_attempts: int | None = None  # LOCAL_BATCH_PREEMPT_ATTEMPTS: only retry attempts < N
    max_delay_s: float = 2.0  # LOCAL_BATCH_PREEMPT_MAX_DELAY_S: kill within [0, this] s
    # LOCAL_BATCH_PREEMPT_CODES: the reserved exit codes an injected loss of the VM reports
    # (50001 Spot preemption, 50002, 50003, 50004, 50006), one drawn per preempted attempt.
    codes: tuple[int, ...] = (EXIT_PREEMPTED,)

    @classmethod
    def from_env(cls, env: dict[str, str], base: FaultConfig | None = None) -> FaultConfig:
        base = base or cls()

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        rate = get("LOCAL_BATCH_PREEMPT_RATE")
        attempts = get("LOCAL_BATCH_PREEMPT_ATTEMPTS")
        delay = get("LOCAL_BATCH_PREEMPT_MAX_DELAY_S")
        codes = get("LOCAL_BATCH_PREEMPT_CODES")
        return cls(
            codes=tuple(int(c) for c in codes.split(",") if c.strip()) if codes else base.codes,
            preempt_rate=min(max(float(rate), 0.0), 1.0) if rate else base.preempt_rate,
            seed=get("LOCAL_BATCH_SEED") or base.seed,
            preempt_attempts=int(attempts) if attempts else base.preempt_attempts,
            max_delay_s=float(delay) if delay else base.max_delay_s,
        )

    def preempt_after(self, job_uid: str, index: int, attempt: int) -> float | None:
        """Seconds after which this attempt is preempted, or None. Deterministic per seed,
        whatever order the threads run in; without a seed, a fresh draw each time."""
        if self.preempt_rate <= 0:
            return None
        if self.preempt_attempts is not None and attempt >= self.preempt_attempts:
            return None
        rng = random.Random(f"{self.seed}:{job_uid}:{index}:{attempt}") if self.seed else random
        if rng.random() >= self.preempt_rate:
            return None
        return rng.uniform(0.0, self.max_delay_s)

    def code_for(self, job_uid: str, index: int, attempt: int) -> int:
        """The reserved exit code a preempted attempt reports (deterministic per seed)."""
        rng = random.Random(f"{self.seed}:{job_uid}:{index}:{attempt}:code")
        return self.codes[0] if len(self.codes) == 1 else rng.choice(self.codes)
