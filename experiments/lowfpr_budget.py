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

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab, lowfpr, repeats
from experiments.lab import Column, Results
from server.selection import SIGNALS, select_round

NAME = "lowfpr-budget"
TITLE = "Training budget against low-FPR detection on real development names (SecAgg+)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr-budget [--full]"
log = logging.getLogger("fedsec.experiments")
MODE = "secagg"


@dataclass(frozen=True)
class Arm:
    """One federated run: its local steps per round and any run-config keys it adds."""

    label: str
    local_steps: int
    extra: tuple[tuple[str, Any], ...] = ()

    def rounds(self, budget: Budget) -> int:
        return int(dict(self.extra).get("num-rounds", budget.rounds))

    @property
    def knob(self) -> str:
        """The keys besides mining this arm turns ('' on the steps curve itself)."""
        return ", ".join(f"{key}={value}" for key, value in self.extra if key != "hard-negatives")

    @property
    def key(self) -> str:
        """Unique within a size: label, local steps and added keys (its work folder's name)."""
        added = "-".join(f"{key}={value}" for key, value in self.extra)
        return f"{self.label.replace(' ', '-')}-{self.local_steps}" + (f"-{added}" if added else "")


def _plain(steps: int) -> Arm:
    # Mining is on by default in the product: a plain arm turns it off explicitly.
    return Arm("plain", steps, (("hard-negatives", 0),))


def _mining(steps: int, batch: int, *also: tuple[str, Any]) -> Arm:
    # As many mined names as the batches carry required rows: a quarter of every batch, or
    # the `hard-negatives-share` an arm sets.
    share = float(dict(also).get("hard-negatives-share", 0.25))
    return Arm("hard negatives", steps, (("hard-negatives", steps * int(batch * share)), *also))


@dataclass(frozen=True)
class Budget:
    rounds: int
    batch: int
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]  # every arm runs once per run seed: init, sampling and masks differ
    shape: str  # the lowfpr size whose split parameters this one reuses


@dataclass(frozen=True)
class Curve:
    """An experiment that runs budgets on the lowfpr sites: its results folder, title, command
    and sizes (`lowfpr-budget` itself; `lowfpr-momentum` reuses everything else)."""

    name: str
    title: str
    command: str
    sizes: dict[str, Budget]


SIZES = {
    "tiny": Budget(
        rounds=2,
        batch=32,
        arms=(_plain(2), _plain(6), _mining(6, 32), _mining(6, 32, ("num-rounds", 3))),
        seeds=(0, 1),
        shape="tiny",
    ),
    "default": Budget(
        rounds=8,
        batch=128,
        arms=(
            _plain(60),
            _plain(180),
            _mining(180, 128),
            _plain(540),
            # The other knobs at the chosen steps and mining: rounds (this curve runs 8; the
            # product's default, 5 before this measurement, is now 16) and the local learning
            # rate (default 3e-3).
            _mining(180, 128, ("num-rounds", 5)),
            _mining(180, 128, ("num-rounds", 16)),
            _mining(180, 128, ("learning-rate", 0.001)),
            _mining(180, 128, ("learning-rate", 0.01)),
        ),
        seeds=(0, 1, 2),
        shape="default",
    ),
    "full": Budget(
        rounds=8,
        batch=128,
        arms=tuple(_plain(steps) for steps in (60, 180, 540, 1620))
        + tuple(_mining(steps, 128) for steps in (180, 540, 1620)),
        seeds=(0, 1, 2),
        shape="default",
    ),
}


BUDGET = Curve(NAME, TITLE, COMMAND, SIZES)


def mining_arm_sizes(
    *extras: tuple[tuple[str, Any], ...], seeds: tuple[int, ...]
) -> dict[str, Budget]:
    """Sizes of a curve whose arms are the product's defaults (mining on) plus each of
    `extras` (run-config pairs, `()` for the defaults alone): 16 rounds x 180 steps x batch 128
    once per run seed, and a tiny size of 3 rounds x 6 steps x batch 32 on seed 0."""

    def budget(rounds: int, steps: int, batch: int, shape: str, run_seeds) -> Budget:
        arms = tuple(_mining(steps, batch, *extra) for extra in extras)
        return Budget(rounds=rounds, batch=batch, arms=arms, seeds=run_seeds, shape=shape)

    default = budget(16, 180, 128, "default", seeds)
    return {"tiny": budget(3, 6, 32, "tiny", (0,)), "default": default, "full": default}


def curve_entry_points(curve: Curve, *, module: str, doc: str | None):
    """`run`, `measure` and `main` of an experiment that is another set of arms on this
    runner (lowfpr-momentum, lowfpr-families, lowfpr-decay): what `fedsec experiment NAME`,
    tests and `python -m MODULE` call."""

    def run_curve(
        *, size: str, root: Path = lab.RESULTS_ROOT, real_dev: str | Path | None = None
    ) -> dict:
        """Split the real names, run the federation once per arm and seed, write the tables."""
        return lowfpr.run_real_dev(
            measure_curve, curve.sizes, size=size, root=root, real_dev=real_dev
        )

    def measure_curve(folder: Path, *, size: str, root: Path = lab.RESULTS_ROOT) -> dict:
        """`run` once the real-dev folder is known (what tests and other code call)."""
        return measure(folder, size=size, root=root, curve=curve)

    def main_curve(argv: list[str] | None = None) -> None:
        """`python -m MODULE --real-dev PATH [--tiny] [--out ROOT]`."""
        lowfpr.real_dev_main(module, doc, measure_curve, argv)

    return run_curve, measure_curve, main_curve


def run(*, size: str, root: Path = lab.RESULTS_ROOT, real_dev: str | Path | None = None) -> dict:
    """Split the real names, run the federation once per budget, write the curve."""
    return lowfpr.run_real_dev(measure, SIZES, size=size, root=root, real_dev=real_dev)


def measure(
    folder: Path, *, size: str, root: Path = lab.RESULTS_ROOT, curve: Curve = BUDGET
) -> dict:
    """`run` once the real-dev folder is known (what tests and other code call)."""
    from common.training import predict_scores
    from experiments.value import one_torch_thread

    budget = curve.sizes[size]
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
        for arm in budget.arms:
            for seed in budget.seeds:
                out_dir = work / f"{arm.key}-seed{seed}"
                model, info = lowfpr.federate(
                    data_dir,
                    out_dir,
                    mode=MODE,
                    shape=run_shape,
                    local_steps=arm.local_steps,
                    extra={**dict(arm.extra), "seed": seed},
                )
                scores = predict_scores(model, domains=test.encoded)
                rows.append(_row(scores, test, clean, arm=arm, budget=budget, info=info))
                rows[-1]["seed"] = seed
                rows[-1].update(selected(out_dir, test, last_scores=scores))
                shutil.rmtree(out_dir)  # its checkpoints: 8 models a run add up
                log.info(
                    "budget: %s, seed %d, %d rounds in %.0f s: TPR@1e-4 %.3f (%s)",
                    arm.key,
                    seed,
                    arm.rounds(budget),
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
        # What the sites' own evaluations (the selection signal) see: benign names on each
        # site's held-out day.
        "site_test_benign": [
            int((split.site_test & (split.site == site) & (corpus.labels == 0)).sum())
            for site in range(shape.sites)
        ],
        "seeds": list(budget.seeds),
        "rows": rows,
        "arms": summarise(rows),
    }
    write_outputs(Results(curve.name, curve.title, root), payload, command=curve.command)
    return payload


def _row(
    scores: np.ndarray, test, clean: np.ndarray, *, arm: Arm, budget: Budget, info
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "arm": arm.label,
        "local_steps": arm.local_steps,
        "run_config": ", ".join(f"{key}={value}" for key, value in arm.extra) or "defaults",
        "knob": arm.knob,
        "rounds": arm.rounds(budget),
        "samples_per_site": arm.rounds(budget) * arm.local_steps * budget.batch,
        "wall_s": info["wall_s"],
        "train_phase_s": info["train_phase_s"],
        "rounds_completed": info["rounds_completed"],
        "site_failures": info["site_failures"],
    }
    row.update(repeats.scope_points(scores, test.labels, clean, test.families))
    return row


SELECTED = tuple(
    f"{metric}_by_{signal}"
    for signal in SIGNALS
    for metric in ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-4")
)


def selected(out_dir: Path, test, *, last_scores: np.ndarray) -> dict[str, Any]:
    """For each selection signal: the round the sites' own figures choose
    (server.selection) and that round's checkpoint scored on the pooled test names (all
    benign), beside the last round's model that the rest of the row scores (`last_scores`:
    its scores, so the last round is not scored twice)."""
    from common.model import model_from_bytes
    from common.training import predict_scores

    results = json.loads((out_dir / "results.json").read_text())
    rounds = results["rounds"]
    last = max(int(entry["round"]) for entry in rounds)
    scored = {last: lowfpr.operating_points(last_scores, test.labels)}
    # What the run really used (the product's defaults fill what an arm leaves out).
    config = results["config"]
    row: dict[str, Any] = {
        "hard_negatives_used": config["hard-negatives"],
        "hard_families_used": config["hard-families"],
        "learning_rate_final_used": config["learning-rate-final"],
        "server_momentum_used": config["server-momentum"],
        "server_learning_rate_used": config["server-learning-rate"],
    }
    for signal in SIGNALS:
        choice = select_round(rounds, signal)
        choice_round = last if choice is None else choice.round  # None: nobody reported it
        if choice_round not in scored:
            path = out_dir / "checkpoints" / f"round-{choice_round:03d}.npz"
            model, _ = model_from_bytes(path.read_bytes())
            scores = predict_scores(model, domains=test.encoded)
            scored[choice_round] = lowfpr.operating_points(scores, test.labels)
        points = scored[choice_round]
        row[f"round_by_{signal}"] = choice_round
        for metric in ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-4"):
            row[f"{metric}_by_{signal}"] = points[metric]
    return row


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per arm (label, local steps): each metric's mean, min and max over the seeds."""
    return repeats.summarise(
        rows,
        group=lambda row: (row["arm"], row["local_steps"], row["run_config"]),
        carry=("arm", "knob", "local_steps", "run_config", "rounds", "samples_per_site"),
        mean_of=("wall_s", "train_phase_s", *(f"round_by_{signal}" for signal in SIGNALS)),
        metrics=(*repeats.METRICS, *repeats.FAMILY_METRICS, *SELECTED),
    )


def write_outputs(results: Results, payload: dict[str, Any], *, command: str = COMMAND) -> None:
    results.write_json(payload)
    results.write_csv(payload["rows"], "runs.csv")
    results.write_csv(payload["arms"], "arms.csv")
    rows = payload["arms"]
    columns = [
        Column("arm", "arm"),
        Column("run_config", "run config"),
        Column("rounds", "rounds", "{:,}"),
        Column("local_steps", "local steps / round", "{:,}"),
        Column("samples_per_site", "samples / site", "{:,}"),
        Column("seeds", "seeds", "{:,}"),
        Column("wall_s", "wall s (mean)", "{:,.0f}"),
        Column("train_phase_s", "train phase s (mean)", "{:,.0f}"),
    ]
    for suffix, label in repeats.SCOPES:
        results.add_table(
            f"SecAgg+ on the pooled test names, {label}",
            rows,
            [*columns, *repeats.metric_columns(suffix, families=True)],
            notes=[repeats.table_note(lowfpr.CONTAMINATED_SOURCE)],
        )
    results.add_table(
        "Model selection: the round the sites' own figures choose, on the pooled test names "
        "(all benign)",
        rows,
        [
            *columns[:4],  # arm, run config, rounds, local steps
            Column("tpr_at_fpr_1e-3_shown", "last round: TPR@1e-3"),
            Column("tpr_at_fpr_1e-4_shown", "TPR@1e-4"),
            *(
                column
                for signal in SIGNALS
                for column in (
                    Column(f"round_by_{signal}", f"by {signal}: round (mean)", "{:.1f}"),
                    Column(f"tpr_at_fpr_1e-3_by_{signal}_shown", "TPR@1e-3"),
                    Column(f"tpr_at_fpr_1e-4_by_{signal}_shown", "TPR@1e-4"),
                )
            ),
        ],
        notes=[
            "Mean over the run seeds (min-max in brackets). Each round every site scores the "
            "new global model on its own held-out day and shares its figures under its share "
            "policy; the "
            "coordinator picks the round with the highest mean of one figure over the sites "
            "(server/selection.py) and that round's checkpoint is scored here. The sites' "
            "held-out days hold only their own families and "
            f"{min(payload['site_test_benign']):,}-{max(payload['site_test_benign']):,} "
            "distinct benign names each: a TPR at FPR 1e-3 there is resolvable only from "
            "3,000, and an unresolvable one drops out of the mean."
        ],
    )
    plot = results.plot("budget.png", lambda figure: _draw(figure, payload["arms"]))
    results.write_table_md(
        size=payload["size"], command=command, intro=intro_text(payload), plots=[plot.name]
    )


def intro_text(payload: dict[str, Any]) -> str:
    arms = "; ".join(
        f"{row['arm']} at {row['local_steps']:,} local steps"
        + (f" ({row['knob']})" if row["knob"] else "")
        for row in payload["arms"]
    )
    seeds = ", ".join(str(seed) for seed in payload["seeds"])
    return (
        f"{payload['sites']} sites, SecAgg+, {payload['rounds']} rounds (unless an arm says "
        f"otherwise) x batch {payload['batch']}: {arms}; each arm once per run seed "
        f"({seeds}). Scored on {payload['test_dga']:,} DGA and "
        f"{payload['test_benign']:,} benign held-out names ({payload['test_benign_clean']:,} "
        f"without {lowfpr.CONTAMINATED_SOURCE}). 'hard negatives' = each round a site's "
        "batches carry the benign training names the incoming model scores highest "
        "(`hard-negatives`, as many as a quarter of the batches). One federation per arm, "
        "one after another in one process on a shared 2-core machine."
    )


def _draw(figure, rows: list[dict[str, Any]]) -> None:
    axes = figure.add_subplot(1, 1, 1)
    for arm, color in (("plain", "tab:blue"), ("hard negatives", "tab:red")):
        mine = [row for row in rows if row["arm"] == arm and not row["knob"]]
        if not mine:
            continue
        wall = [row["wall_s"] for row in mine]
        for key, label, style in (
            ("tpr_at_fpr_1e-4", "TPR@1e-4, all benign", "o-"),
            ("tpr_at_fpr_1e-4_clean", "TPR@1e-4, clean benign", "s--"),
            ("tpr_at_fpr_1e-3", "TPR@1e-3, all benign", "^:"),
        ):
            values = np.array([row[key] for row in mine])
            spread = [
                values - [row[f"{key}_min"] for row in mine],
                [row[f"{key}_max"] for row in mine] - values,
            ]
            axes.errorbar(
                wall,
                values,
                yerr=spread,
                fmt=style,
                color=color,
                capsize=2,
                label=f"{arm}: {label}",
            )
        for row in mine:
            axes.annotate(
                f"{row['local_steps']}",
                (row["wall_s"], row["tpr_at_fpr_1e-4"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color=color,
            )
    for row in rows:
        if row["knob"]:  # another knob at the chosen steps: one point, named
            axes.plot(row["wall_s"], row["tpr_at_fpr_1e-4"], "D", color="tab:green")
            axes.annotate(
                row["knob"],
                (row["wall_s"], row["tpr_at_fpr_1e-4"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=6,
                color="tab:green",
            )
    axes.set_xscale("log")
    axes.set_xlabel(
        "wall seconds of one federated run (log); labels = local steps; green = TPR@1e-4 "
        "(all benign) of another knob"
    )
    axes.set_ylabel("TPR")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("SecAgg+: low-FPR detection against budget (mean, min-max over seeds)")


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.lowfpr_budget --real-dev PATH [--full | --tiny] [--out ROOT]`."""
    lowfpr.real_dev_main("experiments.lowfpr_budget", __doc__, measure, argv)


if __name__ == "__main__":
    main()
