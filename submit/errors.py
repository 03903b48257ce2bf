"""User-facing errors: the CLI prints them as one line and exits with their code (no traceback)."""

from __future__ import annotations


class SubmitError(Exception):
    """Bad input or a refused request: exit 2, nothing was created."""

    exit_code = 2


class ConflictError(SubmitError):
    """The same job is already running on the same input and output: exit 3."""

    exit_code = 3


class ServiceError(SubmitError):
    """A service (Batch, Cloud Storage) failed or could not be reached: exit 4."""

    exit_code = 4
