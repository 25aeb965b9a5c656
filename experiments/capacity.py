"""Model capacity at equal training on real development names: is the default CharCNN the limit?

    FEDSEC_REAL_DEV=PATH fedsec experiment capacity [--full | --tiny] [--out ROOT]
    python -m experiments.capacity --real-dev PATH [--full | --tiny] [--out ROOT]

The lowfpr-budget curve goes flat beyond 180 local steps, so more training of today's model
buys nothing. This asks whether a bigger model, or another architecture, would. The setting is
central training on every training name of the lowfpr split (the pooled arm's data: no
federation, no averaging, so only the model differs). Each model trains for the same number of
samples, on the product's trainer and sampler, once per seed: CharCNN specs, a B-ResNet-class
CNN (experiments/residual.py) and the published LSTM anchor after Woodbridge et al. 2016
(experiments/recurrent.py). Each is scored on the pooled held-out names with the product's
metric functions: AUC and TPR at FPR 1e-3 and 1e-4 with resolvability, and how many DGA
families (and which) have recall below 0.5 at the FPR 1e-3 threshold, with and without the
benign list known to hold real DGA names. One torch thread, on a shared 2-core machine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab, lowfpr, repeats
from experiments.lab import Column, Results

NAME = "capacity"
TITLE = "Model capacity at equal training on real development names (central training)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment capacity [--full]"
log = logging.getLogger("fedsec.experiments")


@dataclass(frozen=True)
class Size:
    steps: int
    batch: int
    seeds: tuple[int, ...]
    specs: tuple[tuple[str, dict[str, Any]], ...]  # (label, ModelSpec fields over the default)
    shape: str  # the lowfpr size whose split this one reuses


# Other architectures than CharCNN: experiment-only models (experiments/residual.py,
# experiments/recurrent.py) that read the default spec's encoding, their fields as arguments.
RESIDUAL = "B-ResNet class"
RECURRENT = "LSTM (Woodbridge et al. 2016)"
_SPECS = (
    ("default", {}),
    ("half width", {"filters_per_width": 32, "hidden": 32}),
    ("wide", {"embedding_dim": 64, "filters_per_width": 128, "hidden": 128}),
    (RESIDUAL, {"channels": 128}),
    (RECURRENT, {"embedding_dim": 128, "units": 128}),
    ("wide, widths 2-7", {"filters_per_width": 128, "hidden": 128, "widths": (2, 3, 4, 5, 6, 7)}),
)
SIZES = {
    "tiny": Size(
        steps=20,
        batch=32,
        seeds=(0,),
        specs=(
            _SPECS[0],
            _SPECS[1],
            (RESIDUAL, {"channels": 16}),
            (RECURRENT, {"embedding_dim": 16, "units": 16}),
        ),
        shape="tiny",
    ),
    # 5,760 steps x 128 = 737,280 samples: what the default federation's 4 sites see in 8
    # rounds of 180 local steps.
    "default": Size(steps=5_760, batch=128, seeds=(0, 1), specs=_SPECS[:5], shape="default"),
    "full": Size(steps=5_760, batch=128, seeds=(0, 1, 2), specs=_SPECS, shape="default"),
}


def run(*, size: str, root: Path = lab.RESULTS_ROOT, real_dev: str | Path | None = None) -> dict:
    return lowfpr.run_real_dev(measure, SIZES, size=size, root=root, real_dev=real_dev)


def measure(folder: Path, *, size: str, root: Path = lab.RESULTS_ROOT) -> dict:
    """`run` once the real-dev folder is known (what tests and other code call)."""
    from common.model import ModelSpec, build_model, parameter_count
    from common.training import TrainConfig, predict_scores, train_model
    from experiments.recurrent import RecurrentLSTM
    from experiments.residual import ResidualCNN
    from experiments.value import one_torch_thread

    other_models = {RESIDUAL: ResidualCNN, RECURRENT: RecurrentLSTM}

    plan = SIZES[size]
    shape = lowfpr.SIZES[plan.shape]
    corpus = lowfpr.load_corpus(folder)
    split = lowfpr.split_corpus(
        corpus,
        n_sites=shape.sites,
        test_benign=shape.test_benign,
        site_test_fraction=shape.site_test_fraction,
        seed=lowfpr.SEED,
    )
    train = np.flatnonzero(~split.test & ~split.site_test)
    test = lowfpr.test_set(split)
    clean = test.sources != lowfpr.CONTAMINATED_SOURCE
    labels = (corpus.labels[train] == 1).astype(np.int64)
    rows: list[dict[str, Any]] = []
    recalls: list[dict[str, Any]] = []  # per run, family and scope
    encoded: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}  # per view of a name
    with one_torch_thread():
        for label, fields in plan.specs:
            spec = ModelSpec() if label in other_models else ModelSpec(**fields)
            view = (spec.reads, spec.max_chars)
            if view not in encoded:
                encoded[view] = (
                    spec.encode(corpus.names[train].tolist()),
                    spec.encode(corpus.names[np.flatnonzero(split.test)].tolist()),
                )
            domains, test_domains = encoded[view]
            for seed in plan.seeds:
                if label in other_models:
                    model = other_models[label](spec, seed=seed, **fields)
                else:
                    model = build_model(spec, seed=seed)
                config = TrainConfig(steps=plan.steps, batch_size=plan.batch)
                started = time.perf_counter()
                train_model(
                    model,
                    domains=domains,
                    labels=labels,
                    config=config,
                    generator=np.random.default_rng([seed, 7_001]),
                )
                seconds = time.perf_counter() - started
                scores = predict_scores(model, domains=test_domains)
                row: dict[str, Any] = {
                    "spec": label,
                    "seed": seed,
                    "parameters": parameter_count(model),
                    "samples": plan.steps * plan.batch,
                    "train_s": seconds,
                    "samples_per_s": plan.steps * plan.batch / seconds,
                }
                row.update(repeats.scope_points(scores, test.labels, clean, test.families))
                rows.append(row)
                recalls += family_recalls(scores, test, clean, spec=label, seed=seed)
                log.info(
                    "capacity: %s (%d parameters), seed %d: %.0f s, AUC %.4f, TPR@1e-3 %.3f, "
                    "%d families < 0.5",
                    label,
                    row["parameters"],
                    seed,
                    seconds,
                    row["auc"],
                    row["tpr_at_fpr_1e-3"],
                    row["families_below_0.5"],
                )
    payload = {
        "size": size,
        "steps": plan.steps,
        "batch": plan.batch,
        "seeds": list(plan.seeds),
        "train_names": int(train.size),
        "test_dga": int(test.labels.sum()),
        "test_benign": int((~test.labels).sum()),
        "test_benign_clean": int((~test.labels & clean).sum()),
        "test_families": len(set(test.families[test.labels].tolist())),
        "rows": rows,
        "specs": summarise(rows),
        "families": summarise_families(recalls),
    }
    write_outputs(Results(NAME, TITLE, root), payload)
    return payload


def family_recalls(
    scores: np.ndarray, test, clean: np.ndarray, *, spec: str, seed: int
) -> list[dict[str, Any]]:
    """One run's recall of every DGA family at the FPR 1e-3 threshold of each benign scope,
    from the product's `operating_points` and `family_recall` (what `scope_points` counts)."""
    out = []
    for suffix, keep in (("", np.ones_like(clean, dtype=bool)), ("_clean", clean)):
        labels, families = test.labels[keep], test.families[keep]
        threshold = lowfpr.operating_points(scores[keep], labels)["threshold_1e-3"]
        recall = lowfpr.family_recall(scores[keep], labels, families, threshold)
        out += [
            {"spec": spec, "seed": seed, "scope": suffix, "family": family, "recall": value}
            for family, value in recall.items()
        ]
    return out


def summarise_families(recalls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per spec and family: its mean recall at FPR 1e-3 over the seeds, per scope."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for entry in recalls:
        scopes = groups.setdefault((entry["spec"], entry["family"]), {})
        scopes.setdefault(f"recall_1e-3{entry['scope']}", []).append(entry["recall"])
    return [
        {"spec": spec, "family": family, **{key: float(np.mean(v)) for key, v in scopes.items()}}
        for (spec, family), scopes in groups.items()
    ]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per spec: each metric's mean, min and max over the seeds, and the families
    below 0.5 recall at FPR 1e-3 in every seed and in only some of them, per scope."""
    summary = repeats.summarise(
        rows,
        group=lambda row: row["spec"],
        carry=("spec", "parameters", "samples"),
        mean_of=("train_s", "samples_per_s"),
        metrics=(*repeats.METRICS, *repeats.FAMILY_METRICS),
    )
    for out in summary:
        runs = [row for row in rows if row["spec"] == out["spec"]]
        for suffix, _ in repeats.SCOPES:
            below = [
                set(filter(None, run[f"families_below_0.5_names{suffix}"].split(",")))
                for run in runs
            ]
            every, some = set.intersection(*below), set.union(*below)
            out[f"families_below_0.5_every_seed{suffix}"] = ", ".join(sorted(every)) or "none"
            out[f"families_below_0.5_some_seeds{suffix}"] = (
                ", ".join(sorted(some - every)) or "none"
            )
    return summary


def write_outputs(results: Results, payload: dict[str, Any]) -> None:
    results.write_json(payload)
    results.write_csv(payload["rows"], "runs.csv")
    results.write_csv(payload["specs"], "specs.csv")
    results.write_csv(payload["families"], "families.csv")
    for suffix, label in repeats.SCOPES:
        results.add_table(
            f"Central training, pooled test names, {label}",
            payload["specs"],
            [
                Column("spec", "model"),
                Column("parameters", "parameters", "{:,}"),
                Column("samples", "samples", "{:,}"),
                Column("seeds", "seeds", "{:,}"),
                Column("train_s", "train s (mean)", "{:,.0f}"),
                Column("samples_per_s", "samples/s", "{:,.0f}"),
                *repeats.metric_columns(suffix, families=True),
            ],
            notes=[
                repeats.table_note(lowfpr.CONTAMINATED_SOURCE),
                f"families < 0.5 @1e-3 = how many of the {payload['test_families']} DGA "
                "families in the test names have recall below 0.5 at the score threshold of "
                "FPR 1e-3 on this benign set (the lowfpr family target).",
            ],
        )
    results.add_table(
        "DGA families with recall below 0.5 at FPR 1e-3",
        payload["specs"],
        [
            Column("spec", "model"),
            *(
                column
                for suffix, label in repeats.SCOPES
                for column in (
                    Column(f"families_below_0.5_every_seed{suffix}", f"{label}: every seed"),
                    Column(f"families_below_0.5_some_seeds{suffix}", "some seeds only"),
                )
            ),
        ],
        notes=[
            "Families below 0.5 recall in every run seed, and those below it in only some. "
            "Every run's list is in runs.csv; each family's mean recall per model and scope "
            "is in families.csv."
        ],
    )
    intro = (
        f"Every spec trains centrally on the same {payload['train_names']:,} training names of "
        f"the lowfpr split for {payload['steps']:,} steps x batch {payload['batch']} "
        f"({payload['steps'] * payload['batch']:,} samples), once per seed "
        f"({', '.join(map(str, payload['seeds']))}); scored on {payload['test_dga']:,} DGA and "
        f"{payload['test_benign']:,} benign held-out names ({payload['test_benign_clean']:,} "
        f"without {lowfpr.CONTAMINATED_SOURCE}). The default spec is fedsec's model; the "
        "CharCNN specs change only the fields in their name (half width: 32 filters and hidden "
        "32; wide: embedding 64, 128 filters, hidden 128). B-ResNet class is another "
        "architecture (experiments/residual.py, after Drichel et al. 2020): embedding 128, one "
        "residual block of two 128-channel convolutions of width 3, max pooling, hidden 64. "
        "The LSTM is the published recurrent anchor (experiments/recurrent.py, after "
        "Woodbridge et al. 2016): embedding 128, one LSTM layer of 128 units over each name's "
        "characters, its last hidden state through dropout 0.5 to one logit. Both train on "
        "fedsec's trainer and optimiser, not their papers'."
    )
    results.write_table_md(size=payload["size"], command=COMMAND, intro=intro)


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.capacity --real-dev PATH [--full | --tiny] [--out ROOT]`."""
    lowfpr.real_dev_main("experiments.capacity", __doc__, measure, argv)


if __name__ == "__main__":
    main()
