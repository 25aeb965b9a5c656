"""Training budget against low-FPR detection on real development names: the curve the
default local steps are read from.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-budget [--full | --tiny] [--out ROOT]
    python -m experiments.lowfpr_budget --real-dev PATH [--full | --tiny] [--out ROOT]

The same real names, split and sites as `experiments.lowfpr` (its functions, its seed), and
the deployed arm only: fedsec's ServerApp and ClientApp under SecAgg+, end to end in one
process, once per budget. A budget is the local steps per round at fixed rounds and batch;
each run is scored on the pooled held-out names with the product's metric functions: AUC,
TPR at FPR 1e-3 and 1e-4 with their resolvability, with and without the benign list known to
hold real DGA names. Wall seconds are the whole federated run (every round's training,
SecAgg+, evaluation), measured in one process on a shared 2-core machine: read them as the
cost axis of the curve, not as a benchmark.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.config import ConfigError
from experiments import lab, lowfpr
from experiments.lab import Column, Results

NAME = "lowfpr-budget"
TITLE = "Training budget against low-FPR detection on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-budget [--full]"
log = logging.getLogger("fedsec.experiments")
MODE = "secagg"


@dataclass(frozen=True)
class Budget:
    rounds: int
    batch: int
    local_steps: tuple[int, ...]
    shape: str  # the lowfpr size whose split parameters this one reuses


SIZES = {
    "tiny": Budget(rounds=2, batch=32, local_steps=(2, 6), shape="tiny"),
    "default": Budget(rounds=8, batch=128, local_steps=(60, 180, 540), shape="default"),
    "full": Budget(rounds=8, batch=128, local_steps=(60, 180, 540, 1620), shape="default"),
}


def run(*, size: str, root: Path = lab.RESULTS_ROOT, real_dev: str | Path | None = None) -> dict:
    """Split the real names, run the federation once per budget, write the curve."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    try:
        folder = lowfpr.real_dev_folder(real_dev)
    except ConfigError as error:
        from fedsec.cli import fail

        fail(str(error))
    return measure(folder, size=size, root=root)


def measure(folder: Path, *, size: str, root: Path = lab.RESULTS_ROOT) -> dict:
    """`run` once the real-dev folder is known (what tests and other code call)."""
    from experiments.value import one_torch_thread

    budget = SIZES[size]
    shape = lowfpr.SIZES[budget.shape]
    rows: list[dict[str, Any]] = []
    with one_torch_thread(), tempfile.TemporaryDirectory(prefix="fedsec-budget-") as temp:
        data_dir, work = Path(temp) / "sites", Path(temp) / "work"
        corpus = lowfpr.load_corpus(folder)
        split = lowfpr.split_corpus(
            corpus,
            n_sites=shape.sites,
            test_benign=shape.test_benign,
            site_test_fraction=shape.site_test_fraction,
            seed=lowfpr.SEED,
        )
        lowfpr.write_sites(split, data_dir, seed=lowfpr.SEED)
        test = lowfpr.test_set(split)
        clean = test.sources != lowfpr.CONTAMINATED_SOURCE
        run_shape = lowfpr.Size(
            **{**shape.__dict__, "rounds": budget.rounds, "batch": budget.batch}
        )
        for steps in budget.local_steps:
            model, info = lowfpr.federate(
                data_dir, work / f"steps-{steps}", mode=MODE, shape=run_shape, local_steps=steps
            )
            rows.append(_row(model, test, clean, steps=steps, budget=budget, info=info))
            log.info(
                "budget: %d local steps, %d rounds in %.0f s: TPR@1e-4 %.3f (%s)",
                steps,
                budget.rounds,
                info["wall_s"],
                rows[-1]["tpr_at_fpr_1e-4"],
                "resolvable" if rows[-1]["resolvable_1e-4"] else "not resolvable",
            )
    payload = {
        "size": size,
        "mode": MODE,
        "rounds": budget.rounds,
        "batch": budget.batch,
        "sites": shape.sites,
        "test_dga": int(test.labels.sum()),
        "test_benign": int((~test.labels).sum()),
        "test_benign_clean": int((~test.labels & clean).sum()),
        "rows": rows,
    }
    write_outputs(Results(NAME, TITLE, root), payload)
    return payload


def _row(model, test, clean: np.ndarray, *, steps: int, budget: Budget, info) -> dict[str, Any]:
    from common.training import predict_scores

    scores = predict_scores(model, domains=test.encoded)
    row: dict[str, Any] = {
        "local_steps": steps,
        "samples_per_site": budget.rounds * steps * budget.batch,
        "wall_s": info["wall_s"],
        "train_phase_s": info["train_phase_s"],
        "rounds_completed": info["rounds_completed"],
        "site_failures": info["site_failures"],
    }
    for scope, keep in (("all", np.ones_like(clean)), ("clean", clean)):
        points = lowfpr.operating_points(scores[keep], test.labels[keep])
        suffix = "" if scope == "all" else "_clean"
        row[f"auc{suffix}"] = points["auc"]
        for tag in ("1e-3", "1e-4"):
            row[f"tpr_at_fpr_{tag}{suffix}"] = points[f"tpr_at_fpr_{tag}"]
            row[f"resolvable_{tag}{suffix}"] = points[f"resolvable_{tag}"]
            row[f"k_{tag}{suffix}"] = points[f"k_{tag}"]
    return row


def _with_resolvability(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for row in rows:
        out = dict(row)
        for key in [key for key in row if key.startswith("tpr_at_fpr_")]:
            tag = key.removeprefix("tpr_at_fpr_")
            mark = "" if row[f"resolvable_{tag}"] else " (**not resolvable**)"
            out[f"{key}_shown"] = f"{row[key]:.3f}{mark}"
        shown.append(out)
    return shown


def write_outputs(results: Results, payload: dict[str, Any]) -> None:
    results.write_json(payload)
    results.write_csv(payload["rows"], "budgets.csv")
    rows = _with_resolvability(payload["rows"])
    columns = [
        Column("local_steps", "local steps / round", "{:,}"),
        Column("samples_per_site", "samples / site", "{:,}"),
        Column("wall_s", "wall s", "{:,.0f}"),
        Column("train_phase_s", "train phase s", "{:,.0f}"),
    ]
    for suffix, label in (("", "all benign"), ("_clean", "clean benign")):
        results.add_table(
            f"SecAgg+ on the pooled test names, {label}",
            rows,
            [
                *columns,
                Column(f"auc{suffix}", "AUC", "{:.4f}"),
                Column(f"tpr_at_fpr_1e-3{suffix}_shown", "TPR@1e-3"),
                Column(f"k_1e-3{suffix}", "k", "{:,}"),
                Column(f"tpr_at_fpr_1e-4{suffix}_shown", "TPR@1e-4"),
                Column(f"k_1e-4{suffix}", "k", "{:,}"),
            ],
            notes=[
                "k = false positives the target FPR allows on this benign set; a TPR is "
                "resolvable when k >= 3. Clean benign = without "
                f"{lowfpr.CONTAMINATED_SOURCE}, a list that holds real DGA look-ups."
            ],
        )
    plot = results.plot("budget.png", lambda figure: _draw(figure, payload["rows"]))
    results.write_table_md(
        size=payload["size"], command=COMMAND, intro=intro_text(payload), plots=[plot.name]
    )


def intro_text(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    steps = ", ".join(f"{row['local_steps']:,}" for row in rows)
    return (
        f"{payload['sites']} sites, SecAgg+, {payload['rounds']} rounds x batch "
        f"{payload['batch']}, local steps per round {steps}; scored on "
        f"{payload['test_dga']:,} DGA and {payload['test_benign']:,} benign held-out names "
        f"({payload['test_benign_clean']:,} without {lowfpr.CONTAMINATED_SOURCE}). "
        "One federation per budget, run one after another in one process on a shared "
        "2-core machine."
    )


def _draw(figure, rows: list[dict[str, Any]]) -> None:
    axes = figure.add_subplot(1, 1, 1)
    wall = [row["wall_s"] for row in rows]
    for key, label, style in (
        ("tpr_at_fpr_1e-4", "TPR at FPR 1e-4, all benign", "o-"),
        ("tpr_at_fpr_1e-4_clean", "TPR at FPR 1e-4, clean benign", "s--"),
        ("tpr_at_fpr_1e-3", "TPR at FPR 1e-3, all benign", "^:"),
    ):
        axes.plot(wall, [row[key] for row in rows], style, label=label)
    for row in rows:
        axes.annotate(
            f"{row['local_steps']} steps",
            (row["wall_s"], row["tpr_at_fpr_1e-4"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )
    axes.set_xscale("log")
    axes.set_xlabel("wall seconds of the whole federated run (log)")
    axes.set_ylabel("TPR")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("SecAgg+: detection at low FPR against training budget")


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.lowfpr_budget --real-dev PATH [--full | --tiny] [--out ROOT]`."""
    lowfpr.real_dev_main("experiments.lowfpr_budget", __doc__, measure, argv)


if __name__ == "__main__":
    main()
