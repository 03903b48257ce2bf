"""What every command shares: the stderr console and the common options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)

# One --env rule for every command, `run` included: --env, else $GPUB_ENV, else dev (the
# last step is the default_map submit/cli.py main() passes; click reads it after envvar).
ENV_HELP = "Environment (dev, prod, ...) [default: $GPUB_ENV, else dev]."
EnvOpt = Annotated[str, typer.Option("--env", "-e", envvar="GPUB_ENV", help=ENV_HELP)]
EnvDefault = EnvOpt
LocalOpt = Annotated[bool, typer.Option("--local", help="Use the embedded local backend.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def say(message: str) -> None:
    """One line of human text on stderr (stdout is for ids and JSON)."""
    err.print(message, markup=False)
