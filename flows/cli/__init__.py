"""`voicecycle`: the command line of the cycle, a thin Typer app. Every command has --help.

Each command loads the scope, calls a flow (or the local runtime in deployments/local.py for
the servers) and formats what it returns. The commands live by what they drive: `stages`
(one per stage of the cycle), `servers`, `traffic` (simulate, story) and `bench`. Heavy
libraries are imported inside the commands, after the environment points at the workspace, so
`voicecycle --help` is quick and nothing touches a user's own servers. An expected failure
(an invalid scope, a rejected manifest, an unreachable server, no champion, a port in use)
prints one message and no traceback, with the exit code flows/cli/failures.py documents.
"""

# the import order of the command modules is the order `voicecycle --help` lists them in
from __future__ import annotations  # noqa: I001

import sys
import traceback

from flows.cli.failures import UNEXPECTED, describe, expected_exit, quiet_expected_tracebacks
from flows.cli.common import app
from flows.cli import stages, evaluate, servers, traffic, bench
from flows.cli import label
from flows.cli import hot_words
from flows.cli import team

# importing them registers their commands
COMMAND_MODULES = (stages, evaluate, servers, traffic, bench, label, hot_words, team)

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voicecycle` console command; its exit code (flows/cli/failures.py:
    an expected failure prints one message; `--debug` adds the traceback)."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args[: next((i for i, a in enumerate(args) if a[:1] != "-"), len(args))]
    if not debug:
        quiet_expected_tracebacks()
    try:
        app(args=args, prog_name="voicecycle")
    except SystemExit as done:  # Typer (standalone) ends every command this way
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except Exception as exc:
        code = expected_exit(exc)
        if debug or code is None:
            traceback.print_exc()
        if code is None:
            return UNEXPECTED
        print(describe(exc, code), file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
