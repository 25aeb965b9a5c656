"""The data holder's commands: `fedsec check` (before joining), `score`, `evaluate`, `triage`.

Registered on the app in `fedsec.cli`; each imports its heavy modules when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Where `fedsec score --site SITE` writes its alerts and `fedsec triage` reads them by default.
DEFAULT_ALERTS = Path("work") / "score" / "alerts.jsonl"


def check(site: Annotated[Path, typer.Option(help="the site folder (holds site.toml)")]) -> None:
    """Validate a site's config and logs (data quality gate) and show what would leave it."""
    from client.check import check_command

    raise typer.Exit(code=check_command(site))


def score(
    model: Annotated[Path, typer.Option(help="a model.npz from a run")],
    logs: Annotated[list[Path], typer.Option(help="log files or folders (repeatable)")],
    out: Annotated[
        Path | None,
        typer.Option(help="alerts.jsonl to write (default with --site: SITE/work/score/)"),
    ] = None,
    site: Annotated[Path | None, typer.Option(help="site folder: format and threshold")] = None,
    threshold: Annotated[float | None, typer.Option(help="alert at scores >= this")] = None,
) -> None:
    """Score DNS logs with a model; write ranked alerts (score x query count) as JSON lines."""
    from client.scoring import score_command

    if out is None:
        if site is None:
            typer.echo("fedsec: error: --out is required without --site (fix: give one)", err=True)
            raise typer.Exit(code=2)
        out = site / DEFAULT_ALERTS
        if site.is_dir():  # a missing site folder is score_command's one-line error, not ours
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                typer.echo(
                    f"fedsec: error: {out.parent}: {error.strerror} (fix: give --out)", err=True
                )
                raise typer.Exit(code=2) from None
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


def triage(
    site: Annotated[Path, typer.Option(help="the site folder (holds site.toml)")],
    model: Annotated[Path, typer.Option(help="the model.npz that scored the alerts")],
    alerts: Annotated[
        Path | None, typer.Option(help="alerts.jsonl (default: SITE/work/score/alerts.jsonl)")
    ] = None,
    analyst: Annotated[
        str | None, typer.Option(help="who records the verdicts (default: the OS user)")
    ] = None,
    bind: Annotated[str, typer.Option(help="address to listen on (loopback only by default)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one)")] = 8750,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="host groups shown and alerts explained")
    ] = 500,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="listen on a non-loopback --bind (the page has no login: anyone who reaches "
            "it can record verdicts)",
        ),
    ] = False,
) -> None:
    """Open the local triage page: alerts grouped by host, explained, judged into verdicts."""
    from client.triage_web import triage_command

    raise typer.Exit(
        code=triage_command(
            site=site,
            model=model,
            alerts=alerts if alerts is not None else site / DEFAULT_ALERTS,
            analyst=analyst,
            bind=bind,
            port=port,
            limit=limit,
            allow_remote=allow_remote,
        )
    )
