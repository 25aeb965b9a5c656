"""`fedsec worker`: the data holder's warm worker (client/worker.py), started by its service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def worker(
    site_dir: Annotated[Path, typer.Option(help="the site folder (holds site.toml)")],
    work_dir: Annotated[Path, typer.Option(help="the node's work folder (socket in WORK/warm/)")],
    once: Annotated[
        bool, typer.Option(help="serve in this process, not restarted on exit")
    ] = False,
) -> None:
    """Keep this node's site and model code warm for its ClientApp (one message at a time)."""
    from client.worker import main

    argv = ["--site-dir", str(site_dir), "--work-dir", str(work_dir)]
    raise typer.Exit(code=main(argv + (["--once"] if once else [])))
