"""The `fedsec` command line: generate sites, simulate a federation, print what it found."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from common.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Federated DGA detection with secure aggregation and fragility reports.")
# Wide enough for the fragility table when stdout is a file or a pipe (CI logs, tee).
console = Console(width=None if sys.stdout.isatty() else 160)


def _fail(message: str) -> None:
    for line in message.splitlines():
        typer.echo(f"fedsec: error: {line}", err=True)
    raise typer.Exit(code=2)


def _logging() -> None:
    """fedsec's own progress lines on stdout; frameworks keep their own (quieted) handlers."""
    logger = logging.getLogger("fedsec")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="new folder for the site folders and truth.csv")],
    sites: Annotated[int, typer.Option(min=1, help="number of sites")] = 8,
    days: Annotated[int, typer.Option(min=2, help="log days per site")] = 4,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    scale: Annotated[float, typer.Option(min=0.01, help="multiplies daily log volume")] = 1.0,
) -> None:
    """Write synthetic sites: Zeek dns.log days, intel lists and site.toml per site."""
    from experiments.generator import generate_sites

    try:
        written = generate_sites(out_dir=out, n_sites=sites, n_days=days, seed=seed, scale=scale)
    except (FileExistsError, ConfigError) as error:
        _fail(str(error))
    typer.echo(f"wrote {len(written)} sites to {out} (ground truth: {out / 'truth.csv'})")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="new run folder (results.json, checkpoints, model)")],
    sites: Annotated[int, typer.Option(min=1, help="sites to generate without --data")] = 8,
    rounds: Annotated[int, typer.Option(min=1)] = 5,
    mode: Annotated[str, typer.Option(help="secagg | fedavg")] = "secagg",
    data: Annotated[Path | None, typer.Option(help="folder of existing site folders")] = None,
    days: Annotated[int, typer.Option(min=2, help="log days per generated site")] = 4,
    scale: Annotated[float, typer.Option(min=0.01, help="volume of generated sites")] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    local_steps: Annotated[int | None, typer.Option(help="training steps per round")] = None,
    ray_address: Annotated[str | None, typer.Option(help="an existing Ray cluster")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="run-config override KEY=VALUE (repeatable), e.g. --set fail-sites=site-01")
    ] = None,
    resume: Annotated[bool, typer.Option(
        help="continue the run in --out from its last completed round, with its own config")
    ] = False,
) -> None:
    """Train one model over many simulated sites on flwr's Simulation Engine."""
    from experiments.simulate import ensure_empty_output, run_simulation, validate_sites

    _logging()
    overrides: dict[str, Any] = {"num-rounds": rounds, "mode": mode, "seed": seed}
    if local_steps is not None:
        overrides["local-steps"] = local_steps
    try:
        overrides.update(_parse_overrides(set_ or []))
        if resume:
            overrides, data = _resume_overrides(out)
        else:
            ensure_empty_output(out)
        if data is None:
            from experiments.generator import generate_sites

            data = out / "sites"
            typer.echo(f"generating {sites} sites x {days} days into {data} ...")
            generate_sites(out_dir=data, n_sites=sites, n_days=days, seed=seed, scale=scale)
        site_dirs = validate_sites(data)
        typer.echo(f"federation: {len(site_dirs)} sites, {rounds} rounds, mode {mode}")
        results = run_simulation(data_dir=data, out_dir=out, overrides=overrides,
                                 ray_address=ray_address)
    except ConfigError as error:
        _fail(str(error))
    truth = None
    if (data / "truth.csv").is_file():
        from experiments.truth_eval import truth_evaluation

        truth = truth_evaluation(run_dir=out, data_dir=data)
    print_site_table(results, truth=truth)
    typer.echo(f"results: {out / 'results.json'}   model: {out / 'model.npz'}")
    print_report_paths(out, data, len(results.get("rounds", [])))


@app.command()
def check(site: Annotated[Path, typer.Option(help="the site folder (holds site.toml)")]) -> None:
    """Validate a site's config and logs (data quality gate) and show what would leave it."""
    from client.check import check_command

    raise typer.Exit(code=check_command(site))


@app.command()
def score(
    model: Annotated[Path, typer.Option(help="a model.npz from a run")],
    logs: Annotated[list[Path], typer.Option(help="log files or folders (repeatable)")],
    out: Annotated[Path, typer.Option(help="alerts.jsonl to write")],
    site: Annotated[Path | None, typer.Option(help="site folder: format and threshold")] = None,
    threshold: Annotated[float | None, typer.Option(help="alert at scores >= this")] = None,
) -> None:
    """Score DNS logs with a model; write ranked alerts (score x query count) as JSON lines."""
    from client.scoring import score_command

    raise typer.Exit(code=score_command(model=model, logs=logs, out=out, site_dir=site,
                                        threshold=threshold))


@app.command()
def certs(
    out: Annotated[Path, typer.Option(help="folder for the CA, server certificate and node keys")],
    host: Annotated[list[str] | None, typer.Option(
        help="extra SuperLink DNS name or IP (repeatable)")] = None,
    node: Annotated[list[str] | None, typer.Option(help="node key to create (repeatable)")] = None,
) -> None:
    """A development PKI: CA, SuperLink TLS certificate with these SANs, node ECDSA keys."""
    from deploy.certs import certs_command

    raise typer.Exit(code=certs_command(out, hosts=host or [], nodes=node or []))


@app.command()
def connection(
    name: Annotated[str, typer.Argument(help="connection name for `flwr run . NAME`")],
    address: Annotated[str, typer.Option(help="the SuperLink's Control API, host:port")],
    root_certificates: Annotated[Path, typer.Option(help="ca.crt from `fedsec certs`")],
    flwr_home: Annotated[Path | None, typer.Option(help="default: $FLWR_HOME or ~/.flwr")] = None,
) -> None:
    """Write the model team's TLS connection into $FLWR_HOME/config.toml."""
    from deploy.compose import connection_command

    raise typer.Exit(code=connection_command(name, address=address,
                                             root_certificates=root_certificates,
                                             flwr_home=flwr_home))


node_app = typer.Typer(no_args_is_help=True, help="Data-holder nodes of a deployment.")
app.add_typer(node_app, name="node")


@node_app.command("register")
def node_register(
    public_key: Annotated[Path, typer.Argument(help="nodes/NAME.pub from `fedsec certs`")],
    connection: Annotated[str, typer.Option(help="the connection to the SuperLink")],
    flwr_home: Annotated[Path | None, typer.Option(help="default: $FLWR_HOME or ~/.flwr")] = None,
) -> None:
    """Register a data holder's public key with the SuperLink (coordinator side)."""
    from deploy.compose import node_register_command

    raise typer.Exit(code=node_register_command(public_key, connection=connection,
                                                flwr_home=flwr_home))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="run folder with results.json")]) -> None:
    """Rebuild the federation report (report.json, report.html) from results.json alone."""
    from server.report import write_federation_report

    try:
        json_path, html_path = write_federation_report(run_dir)
    except ValueError as error:
        _fail(str(error))
    typer.echo(f"federation report: {html_path} (data: {json_path})")


@app.command()
def experiment(
    name: Annotated[str, typer.Argument(
        help="value | secagg-cost | dropouts | scale | ray | noniid")],
    full: Annotated[bool, typer.Option("--full", help="the large size (hours on 2 cores)")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", help="the smoke-test size")] = False,
    out: Annotated[Path | None, typer.Option(help="results root [experiments/results]")] = None,
) -> None:
    """Run one experiment; writes JSON, CSV, plots and a markdown table under results/NAME/."""
    import importlib

    from experiments.lab import EXPERIMENTS, RESULTS_ROOT, setup_logging

    if name not in EXPERIMENTS:
        _fail(f"unknown experiment '{name}' (fix: one of {', '.join(EXPERIMENTS)})")
    if full and tiny:
        _fail("--full and --tiny exclude each other (fix: pass one)")
    setup_logging()
    module = importlib.import_module(EXPERIMENTS[name])
    module.run(size="full" if full else "tiny" if tiny else "default", root=out or RESULTS_ROOT)


def _resume_overrides(out: Path) -> tuple[dict[str, Any], Path]:
    """The interrupted run's own config (from its results.json), with resume switched on."""
    import json

    path = out / "results.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing, nothing to resume (fix: pass the --out of a run "
                          "that completed at least one round)")
    config = json.loads(path.read_text())["config"]
    return {**config, "resume": True}, Path(config["data-dir"])


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` to run-config entries; values parse as TOML (numbers, booleans) or text."""
    import tomllib

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair}: expected KEY=VALUE (fix: e.g. --set local-steps=30)")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return "-"
    if abs(value) >= 1e6:
        return f"{value:.2g}"
    return f"{value:,.{digits}f}"


FRAGILITY_COLUMNS = (
    ("AUC", "auc", 4),
    ("TPR@FPR=1e-4", "tpr_at_fpr_1e-4", 3),
    ("FP/day [upper95]", None, 0),
    ("precision@base rate", "precision_at_base_rate", 4),
    ("recall@budget", "recall_at_budget", 3),
    ("analyst h/day", "analyst_hours_per_day", 1),
    ("unseen-family recall", "unseen_family_recall", 3),
)


def print_site_table(results: dict[str, Any], *, truth: dict[str, Any] | None = None) -> None:
    """The last round's fragility figures as the coordinator received them ("-" = not shared)."""
    if not results.get("rounds"):
        typer.echo("no round completed")
        return
    last = results["rounds"][-1]
    table = Table(title=f"per-site fragility after round {last['round']} (as shared)")
    table.add_column("site")
    for title, _, _ in FRAGILITY_COLUMNS:
        table.add_column(title, justify="right")
    if truth:
        table.add_column("AUC vs truth", justify="right")
    for site, metrics in sorted(last["sites"].items()):
        row = [site]
        for _, key, digits in FRAGILITY_COLUMNS:
            if key is None:
                point, upper = metrics.get("fp_per_day"), metrics.get("fp_per_day_upper95")
                row.append(f"{_fmt(point, 0)} [{_fmt(upper, 0)}]" if point is not None else "-")
            else:
                row.append(_fmt(metrics.get(key), digits))
        if truth:
            row.append(_fmt(truth.get(site, {}).get("true_auc")))
        table.add_row(*row)
    console.print(table)


def print_report_paths(out: Path, data: Path, rounds: int) -> None:
    typer.echo(f"federation report: {out / 'report.html'}")
    site_reports = sorted(data.glob(f"*/work/fragility/round-{rounds:03d}.html"))
    if site_reports:
        typer.echo(f"site reports (they stay on each site): {site_reports[0]}"
                   + (f" and {len(site_reports) - 1} more" if len(site_reports) > 1 else ""))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
