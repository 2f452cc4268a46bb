"""`voicecycle`: the command line of the cycle, a thin Typer app. Every command has --help.

Each command loads the scope, calls a flow (or the local runtime in deployments/local.py for
the servers) and formats what it returns. The commands live by what they drive: `stages`
(one per stage of the cycle), `servers`, `traffic` (simulate, story) and `bench`. Heavy
libraries are imported inside the commands, after the environment points at the workspace, so
`voicecycle --help` is quick and nothing touches a user's own servers. An expected failure
(an invalid scope, a rejected manifest) prints one message and no traceback.
"""

# the import order of the command modules is the order `voicecycle --help` lists them in
from __future__ import annotations  # noqa: I001

import sys

from data_contracts.scoping import ScopeError
from flows.cli.common import app
from flows.cli import stages, servers, traffic, bench, team
from flows.cli import hot_words
from flows.cli import label

# importing them registers their commands
COMMAND_MODULES = (stages, servers, traffic, bench, hot_words, label)

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voicecycle` console command; its exit code."""
    try:
        app(args=argv, prog_name="voicecycle")
    except SystemExit as done:  # Typer (standalone) ends every command this way
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except ScopeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
