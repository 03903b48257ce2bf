"""The one error type for bad job input, and a one-line formatter for CLIs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.DOTALL)


class JobSpecError(ValueError):
    """A job declaration or Batch job JSON the model refuses.

    `field` names what is wrong: a JobSpec field ("gpus.count") or a Batch JSON path
    ("taskGroups[0].taskSpec.maxRetryCount"). An import reports every problem at once:
    `problems` holds each (path, message); `field`/`message` are the first. CLIs print
    `str(err)` on one line and exit 2.
    """

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        problems: Sequence[tuple[str | None, str]] = (),
    ) -> None:
        self.problems: list[tuple[str | None, str]] = list(problems) or [(field, message)]
        self.field, self.message = self.problems[0]
        text = "; ".join(f"{f}: {m}" if f else m for f, m in self.problems)
        if len(self.problems) > 1:
            text = f"{len(self.problems)} problems: {text}"
        super().__init__(text)

    @classmethod
    def many(cls, problems: Sequence[tuple[str | None, str]]) -> JobSpecError:
        """One error carrying every problem (at least one)."""
        first_field, first_message = problems[0]
        return cls(first_message, first_field, problems=problems)

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> JobSpecError:
        """Every pydantic error as one JobSpecError naming the (dotted) spec fields."""
        found: list[tuple[str | None, str]] = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            # Model-level checks carry their field in the message ("gpus.count: ...").
            m = _FIELD_PREFIX.match(msg)
            if m:
                field = f"{field}.{m[1]}" if field else m[1]
                msg = m[2]
            found.append((field or None, msg))
        return cls.many(found)


def one_line(exc: BaseException) -> str:
    """A user-facing single line for a JobSpecError or pydantic ValidationError."""
    if isinstance(exc, ValidationError):
        exc = JobSpecError.from_validation_error(exc)
    return " ".join(str(exc).split())
