"""Research commands: `fedsec generate`, `simulate`, `experiment`, and the per-site table.

Registered on the app in `fedsec.cli`; each imports its heavy modules when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from common.config import ConfigError


def generate(
    out: Annotated[Path, typer.Option(help="new folder for the site folders and truth.csv")],
    sites: Annotated[int, typer.Option(min=1, help="number of sites")] = 8,
    days: Annotated[int, typer.Option(min=2, help="log days per site")] = 4,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 0,
    scale: Annotated[float, typer.Option(min=0.01, help="multiplies daily log volume")] = 1.0,
) -> None:
    """Write synthetic sites: Zeek dns.log days, intel lists and site.toml per site."""
    from experiments.generator import generate_sites
    from fedsec.cli import fail

    try:
        written = generate_sites(out_dir=out, n_sites=sites, n_days=days, seed=seed, scale=scale)
    except (FileExistsError, ConfigError) as error:
        fail(str(error))
    typer.echo(f"wrote {len(written)} sites to {out} (ground truth: {out / 'truth.csv'})")


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
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="run-config override KEY=VALUE (repeatable), e.g. --set fail-sites=site-01",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="continue the run in --out from its last completed round, with its own config"
        ),
    ] = False,
) -> None:
    """Train one model over many simulated sites on flwr's Simulation Engine."""
    from experiments.simulate import ensure_empty_output, run_simulation, validate_sites
    from fedsec.cli import fail, log_to_stdout

    log_to_stdout()
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
        results = run_simulation(
            data_dir=data, out_dir=out, overrides=overrides, ray_address=ray_address
        )
    except ConfigError as error:
        fail(str(error))
    truth = None
    if (data / "truth.csv").is_file():
        from experiments.truth_eval import truth_evaluation

        truth = truth_evaluation(run_dir=out, data_dir=data)
    print_site_table(results, truth=truth)
    typer.echo(f"results: {out / 'results.json'}   model: {out / 'model.npz'}")
    selection = results.get("selection")
    if selection:
        typer.echo(
            f"selected model: {out / selection['file']} (round {selection['round']}, "
            f"select-by {selection['signal']})"
        )
    print_report_paths(out, data, len(results.get("rounds", [])))


def experiment(
    name: Annotated[
        str,
        typer.Argument(
            help="value | secagg-cost | dropouts | scale | ray | noniid | lowfpr | lowfpr-budget"
            " | lowfpr-momentum | lowfpr-families | lowfpr-decay | lowfpr-combined | lowfpr-rate"
            " | lowfpr-end | lowfpr-noise | lowfpr-share | lowfpr-rounds"
            " | capacity | dp-utility"
            " | poisoning | analyst-loop"
        ),
    ],
    full: Annotated[bool, typer.Option("--full", help="the large size (hours on 2 cores)")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", help="the smoke-test size")] = False,
    out: Annotated[Path | None, typer.Option(help="results root [experiments/results]")] = None,
) -> None:
    """Run one experiment; writes JSON, CSV, plots and a markdown table under results/NAME/."""
    import importlib

    from experiments.lab import EXPERIMENTS, RESULTS_ROOT, setup_logging
    from fedsec.cli import fail

    if name not in EXPERIMENTS:
        fail(f"unknown experiment '{name}' (fix: one of {', '.join(EXPERIMENTS)})")
    if full and tiny:
        fail("--full and --tiny exclude each other (fix: pass one)")
    setup_logging()
    module = importlib.import_module(EXPERIMENTS[name])
    module.run(size="full" if full else "tiny" if tiny else "default", root=out or RESULTS_ROOT)


def _resume_overrides(out: Path) -> tuple[dict[str, Any], Path]:
    """The interrupted run's own config (from its results.json), with resume switched on."""
    import json

    path = out / "results.json"
    if not path.is_file():
        raise ConfigError(
            f"{path}: missing, nothing to resume (fix: pass the --out of a run "
            "that completed at least one round)"
        )
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


# A TPR at a low FPR whose site flagged it `_resolvable = 0` is shown with this mark.
NOT_RESOLVABLE_MARK = "n.r."
NOT_RESOLVABLE_FOOTNOTE = (
    f"{NOT_RESOLVABLE_MARK} = not resolvable: the site's test set holds fewer than 3/FPR benign "
    "names (30,000 for 1e-4), so that TPR allows (almost) no false positive and does not "
    "measure the rate; `fedsec evaluate` on the site's full test days can resolve it"
)
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
    from rich.table import Table

    from fedsec.cli import console

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
    marked = False
    for site, metrics in sorted(last["sites"].items()):
        row = [site]
        for _, key, digits in FRAGILITY_COLUMNS:
            if key is None:
                point, upper = metrics.get("fp_per_day"), metrics.get("fp_per_day_upper95")
                row.append(f"{_fmt(point, 0)} [{_fmt(upper, 0)}]" if point is not None else "-")
            elif key.startswith("tpr_at_fpr_") and metrics.get(f"{key}_resolvable") == 0:
                row.append(f"{_fmt(metrics.get(key), digits)} ({NOT_RESOLVABLE_MARK})")
                marked = True
            else:
                row.append(_fmt(metrics.get(key), digits))
        if truth:
            row.append(_fmt(truth.get(site, {}).get("true_auc")))
        table.add_row(*row)
    console.print(table)
    if marked:
        console.print(NOT_RESOLVABLE_FOOTNOTE, markup=False, highlight=False)


def print_report_paths(out: Path, data: Path, rounds: int) -> None:
    typer.echo(f"federation report: {out / 'report.html'}")
    site_reports = sorted(data.glob(f"*/work/fragility/round-{rounds:03d}.html"))
    if site_reports:
        typer.echo(
            f"site reports (they stay on each site): {site_reports[0]}"
            + (f" and {len(site_reports) - 1} more" if len(site_reports) > 1 else "")
        )
