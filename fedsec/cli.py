"""The `fedsec` command line: the typer app, its command list and the helpers commands share.

The commands live by who runs them: `site_commands` (the data holder), `team_commands` (the
model team and the operator), `research_commands` (generated sites, simulations,
experiments). Every command imports what it needs when it runs, so `fedsec --help` is fast.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer
from rich.console import Console

from fedsec import research_commands, site_commands, team_commands, worker_commands

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Federated DGA detection with secure aggregation and fragility reports.",
)
# Wide enough for the fragility table when stdout is a file or a pipe (CI logs, tee).
console = Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str) -> NoReturn:
    """Print `fedsec: error: ...` for each line of MESSAGE on stderr and exit with code 2."""
    for line in message.splitlines():
        typer.echo(f"fedsec: error: {line}", err=True)
    raise typer.Exit(code=2)


def log_to_stdout() -> None:
    """fedsec's own progress lines on stdout; frameworks keep their own (quieted) handlers."""
    logger = logging.getLogger("fedsec")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


# The order of `fedsec --help` (typer lists commands as registered, then groups).
app.command()(research_commands.generate)
app.command()(research_commands.simulate)
app.command()(site_commands.check)
app.command()(site_commands.score)
app.command()(site_commands.evaluate)
app.command()(site_commands.triage)
app.command()(team_commands.certs)
app.command()(team_commands.connection)
app.add_typer(team_commands.node_app, name="node")
app.add_typer(team_commands.app_app, name="app")
app.command()(team_commands.report)
app.command()(research_commands.experiment)
app.command()(worker_commands.worker)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
