"""The one error type for bad job input, and a one-line formatter for CLIs."""

from __future__ import annotations

from pydantic import ValidationError


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
    def from_validation_error(
        cls, exc: ValidationError, paths: dict[str, str] | None = None
    ) -> JobSpecError:
        """The first pydantic error as a JobSpecError; `paths` maps spec fields to JSON paths."""
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        # Model-level checks carry their field in the message ("gpus.count: ...").
        if not field and ": " in msg:
            field, msg = msg.split(": ", 1)
        if paths:
            top = field.split(".", 1)[0]
            if top in paths:
                msg = f"{msg} (JSON {paths[top]})"
        return cls(msg, field or None)


def one_line(exc: BaseException) -> str:
    """A user-facing single line for a JobSpecError or pydantic ValidationError."""
    if isinstance(exc, ValidationError):
        exc = JobSpecError.from_validation_error(exc)
    return " ".join(str(exc).split())
