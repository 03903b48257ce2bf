"""What every command shares: the stderr console and the common options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment (dev, prod, ...).")]
EnvDefault = Annotated[str, typer.Option("--env", "-e", help="Environment (dev, prod, ...).")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Use the embedded local backend.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def say(message: str) -> None:
    """One line of human text on stderr (stdout is for ids and JSON)."""
    err.print(message, markup=False)
