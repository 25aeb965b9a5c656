"""The data holder's commands: `fedsec check` (before joining), `fedsec score`, `fedsec evaluate`.

Registered on the app in `fedsec.cli`; each imports its heavy modules when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def check(site: Annotated[Path, typer.Option(help="the site folder (holds site.toml)")]) -> None:
    """Validate a site's config and logs (data quality gate) and show what would leave it."""
    from client.check import check_command

    raise typer.Exit(code=check_command(site))


def score(
    model: Annotated[Path, typer.Option(help="a model.npz from a run")],
    logs: Annotated[list[Path], typer.Option(help="log files or folders (repeatable)")],
    out: Annotated[Path, typer.Option(help="alerts.jsonl to write")],
    site: Annotated[Path | None, typer.Option(help="site folder: format and threshold")] = None,
    threshold: Annotated[float | None, typer.Option(help="alert at scores >= this")] = None,
) -> None:
    """Score DNS logs with a model; write ranked alerts (score x query count) as JSON lines."""
    from client.scoring import score_command

    raise typer.Exit(
        code=score_command(model=model, logs=logs, out=out, site_dir=site, threshold=threshold)
    )


def evaluate(
    model: Annotated[Path, typer.Option(help="a model.npz from a run")],
    site: Annotated[Path, typer.Option(help="the site folder (holds site.toml)")],
    days: Annotated[
        int | None,
        typer.Option(min=1, help="test on the last N log days (default: split.test_days)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="report folder (default: SITE/work/evaluate)")
    ] = None,
) -> None:
    """Full fragility report of a model on every distinct name of the test days, streamed."""
    from client.evaluate import evaluate_command

    raise typer.Exit(code=evaluate_command(model=model, site=site, days=days, out=out))
