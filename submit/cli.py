"""`bin/submit`: run a declared job on Google Batch (or the local backend) and watch it.

Start-up matters (users run this by hand, CI runs it in loops): module level imports only
typer, rich and the pure helpers. Google clients are imported by the commands that use them
(through submit/backend.py), and nothing on this path imports `stacks.provider` (seconds of
jsii loading). Commands live in their own modules and are registered here:
`submit/run.py` (run), `submit/jobcmds.py` (status, list, cancel, logs), `submit/data.py`
(where, upload, ls, cat), `submit/results.py` (results, rerun, intake dead-letters).

Exit codes: 0 ok, 1 the awaited job did not succeed, 2 bad input or refused (nothing was
created), 3 the output location is owned by an active run, 4 a service failed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from submit import costs, data, jobcmds, results, run, upload, version
from submit.errors import SubmitError
from submit.ui import say

COMMANDS = ("run", "status", "list", "cancel", "logs", "costs", *data.DATA_COMMANDS,
            *results.RESULT_COMMANDS)

app = typer.Typer(
    name="submit",
    help="Run a declared job on Google Batch, or on the local backend with --local.",
    add_completion=True,  # --install-completion / --show-completion
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("run")(run.run_cmd)
app.command("status")(jobcmds.status_cmd)
app.command("list")(jobcmds.list_cmd)
app.command("cancel")(jobcmds.cancel_cmd)
app.command("logs")(jobcmds.logs_cmd)
app.command("costs")(costs.costs_cmd)  # cost per client, job and run (submit/costs.py)
data.register(app, upload.upload_cmd)  # where, upload, ls, cat (submit/data.py, submit/upload.py)
results.register(app)  # results, rerun, intake dead-letters (submit/results.py)
version.add_version_option(app)  # --version


# ------------------------------------------------------------------------------- entry


def _one_line(exc: typer.TyperException) -> str:
    format_message = getattr(exc, "format_message", None)
    text = " ".join((format_message() if format_message else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{text}{hint}"


def _not_utf8(args: Sequence[str]) -> str | None:
    """A one-line complaint about the first argument that is not valid UTF-8 (Python decodes
    such bytes to lone surrogates, which cannot be printed, sent or stored)."""
    for i, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            return f"argument {i} is not valid UTF-8: {shown[:80]!r}"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if (problem := _not_utf8(args)) is not None:
        say(f"submit: error: {problem}")
        sys.exit(2)
    # The form `submit JOB --env ...` is `submit run JOB --env ...`; so is
    # `submit --config FILE ...`.
    if args and (args[0] == "--config" or args[0].startswith("--config=")
                 or (not args[0].startswith("-") and args[0] not in COMMANDS)):
        args.insert(0, "run")
    try:
        # The one --env rule's last step: --env, else $GPUB_ENV, else dev (click reads
        # default_map after the environment variable).
        code = app(args=args, prog_name="submit", standalone_mode=False,
                   default_map={name: {"env": "dev"} for name in COMMANDS})
    except SubmitError as exc:
        say(f"submit: error: {exc}")
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # typer's (vendored) click usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None and ctx.parent:
            # A command group without its command (`submit intake`): one line, as every error.
            names = ", ".join(sorted(getattr(ctx.command, "commands", {}) or {}))
            say(f"submit: error: {ctx.info_name}: missing command (one of: {names}); "
                f"see `submit {ctx.info_name} --help`")
        elif type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            say(ctx.get_help())
        else:
            say(f"submit: error: {_one_line(exc)}")
        code = int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        say("submit: interrupted")
        code = 130
    except Exception as exc:  # JobSpecError and friends are user errors too: one line
        from jobs.errors import JobSpecError

        if not isinstance(exc, JobSpecError):
            raise
        say(f"submit: error: {exc}")
        code = 2
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
