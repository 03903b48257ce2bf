"""The one error type for bad job input, and a one-line formatter for CLIs."""

from __future__ import annotations

import re

from pydantic import ValidationError

_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.DOTALL)


class JobSpecError(ValueError):
    """A job declaration or Batch job JSON the model refuses.

    `field` names what is wrong: a JobSpec field ("gpus.count") or a Batch JSON path
    ("allocationPolicy.instances[0].instanceTemplate"). CLIs print `str(err)` on one line and
    exit 2.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> JobSpecError:
        """The first pydantic error as a JobSpecError naming the (dotted) spec field."""
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        # Model-level checks carry their field in the message ("gpus.count: ...").
        m = _FIELD_PREFIX.match(msg)
        if m:
            field = f"{field}.{m[1]}" if field else m[1]
            msg = m[2]
        return cls(msg, field or None)


def one_line(exc: BaseException) -> str:
    """A user-facing single line for a JobSpecError or pydantic ValidationError."""
    if isinstance(exc, ValidationError):
        exc = JobSpecError.from_validation_error(exc)
    return " ".join(str(exc).split())
