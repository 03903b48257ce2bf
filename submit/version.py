"""The toolkit's version: one source, `[project].version` in pyproject.toml (bumped with
CHANGELOG.md; releases are tagged `vX.Y.Z`, see docs/operations.md).

`python -m submit.version PROG` prints `PROG (gpu-batch-platform) X.Y.Z`: every `bin/`
command's `--version` ends here.
"""

from __future__ import annotations

import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated

import typer

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@cache
def version() -> str:
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def banner(prog: str) -> str:
    return f"{prog} (gpu-batch-platform) {version()}"


def _show(ctx: typer.Context, value: bool) -> None:
    if value:
        sys.stdout.write(banner(ctx.find_root().info_name or "gpu-batch-platform") + "\n")
        raise typer.Exit(0)


VersionOpt = Annotated[bool, typer.Option(
    "--version", is_eager=True, callback=_show, help="Print the version and exit.")]


def add_version_option(app: typer.Typer) -> None:
    """`--version` on a typer app (eager: it answers before any required argument)."""

    @app.callback()
    def _root(version: VersionOpt = False) -> None:
        """Run a declared job on Google Batch, or on the local backend with --local."""


if __name__ == "__main__":
    sys.stdout.write(banner(sys.argv[1] if len(sys.argv) > 1 else "gpu-batch-platform") + "\n")
