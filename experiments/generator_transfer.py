"""Does the generator transfer? Train on generated sites only, score real names.

`python -m experiments.generator_transfer --real-dev PATH` generates N sites with the
synthetic generator, pools every site's *training* names (each site's own time split, the
names federated training would see), trains the product's model (`build_model(ModelSpec(),
seed=0)` + `train_model`) on them for a fixed budget of samples on one torch thread, and
scores a folder of real names the model never saw:

- `PATH/benign.csv.gz`: `domain,source` (real benign names; `source` is optional);
- `PATH/dga.csv.gz`: `domain,family` (real DGA names).

It writes AUC, TPR at FPR 1e-3 and 1e-4 (with whether the benign count resolves that FPR:
at least 3/FPR benign names), recall per DGA family and FPR per benign source at the FPR 1e-3
threshold to `experiments/results/generator-transfer/results.json` and `table.md`. Only
aggregate figures are written, never a real name. The real folder is for measuring only:
nothing in the generator may be copied or tuned from it (the product is judged on other
real data and other families).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import logging
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab

NAME = "generator-transfer"
TITLE = "Generator transfer: trained on generated sites only, scored on real names"
TARGET_FPRS = (1e-3, 1e-4)
DEFAULT_TRAIN_SAMPLES = 200_000
BATCH_SIZE = 128

log = logging.getLogger("fedsec.experiments")


class MissingRealData(FileNotFoundError):
    """The folder given with --real-dev lacks a file the measurement needs."""


def read_real(path: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    """(benign names, their sources, DGA names, their families) from a real-names folder."""
    files = {"benign": path / "benign.csv.gz", "dga": path / "dga.csv.gz"}
    missing = [str(file) for file in files.values() if not file.is_file()]
    if missing:
        raise MissingRealData(
            f"real names not found: {', '.join(missing)} (fix: pass --real-dev with a folder "
            "holding benign.csv.gz (domain,source) and dga.csv.gz (domain,family))"
        )

    def rows(file: Path, column: str, default: str) -> tuple[list[str], list[str]]:
        with gzip.open(file, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "domain" not in reader.fieldnames:
                raise MissingRealData(f"{file}: needs a header row with a 'domain' column")
            pairs = [
                (row["domain"].strip().lower().rstrip("."), (row.get(column) or default).strip())
                for row in reader
                if row["domain"].strip()
            ]
        return [name for name, _ in pairs], [tag for _, tag in pairs]

    benign, sources = rows(files["benign"], "source", "benign")
    dga, families = rows(files["dga"], "family", "unknown")
    return benign, sources, dga, families


def generated_training_names(
    data_dir: Path, work_dir: Path, *, labels: str
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Every site's training split, pooled (a name trained at two sites counts once).

    labels="truth": the generator's ground truth; "intel": each site's own intel labels (the
    label noise federated training lives with).
    """
    from experiments.truth_eval import load_truth

    truth = load_truth(data_dir / "truth.csv") if labels == "truth" else {}
    pooled: dict[str, int] = {}
    per_site = {}
    for site in lab.load_sites(data_dir, work_dir):
        data = site.require_data()
        names = data.train.domains.tolist()
        site_labels = (
            [int(truth.get(name) == "dga") for name in names]
            if labels == "truth"
            else data.train.labels.astype(int).tolist()
        )
        for name, label in zip(names, site_labels, strict=True):
            pooled[name] = max(pooled.get(name, 0), label)
        test = data.test
        per_site[data.site_id] = {
            "train_names": len(names),
            "train_dga": int(sum(site_labels)),
            "test_names": len(test),
            "test_benign_intel": int(len(test) - test.positives),
        }
    names = sorted(pooled)
    return names, np.array([pooled[name] for name in names], dtype=np.int8), per_site


def evaluate(
    scores_benign: np.ndarray,
    sources: list[str],
    scores_dga: np.ndarray,
    families: list[str],
) -> dict[str, Any]:
    from common.metrics import roc_auc, tpr_at_fpr

    scores = np.concatenate([scores_benign, scores_dga])
    labels = np.concatenate(
        [np.zeros(len(scores_benign), np.int8), np.ones(len(scores_dga), np.int8)]
    )
    found: dict[str, Any] = {
        "benign_names": len(scores_benign),
        "dga_names": len(scores_dga),
        "auc": roc_auc(scores=scores, labels=labels),
    }
    points = {}
    for fpr in TARGET_FPRS:
        point = tpr_at_fpr(scores=scores, labels=labels, target_fpr=fpr)
        points[fpr] = point
        found[f"tpr_at_fpr_{fpr:g}"] = point.tpr
        found[f"fpr_at_fpr_{fpr:g}"] = point.fpr
        found[f"resolvable_at_fpr_{fpr:g}"] = point.resolvable
    threshold = points[1e-3].threshold
    family_array, source_array = np.array(families), np.array(sources)
    found["family_recall_at_fpr_1e-3"] = {
        family: float(np.mean(scores_dga[family_array == family] >= threshold))
        for family in sorted(set(families))
    }
    found["family_auc"] = {
        family: roc_auc(
            scores=np.concatenate([scores_benign, scores_dga[family_array == family]]),
            labels=np.concatenate(
                [
                    np.zeros(len(scores_benign), np.int8),
                    np.ones(int((family_array == family).sum()), np.int8),
                ]
            ),
        )
        for family in sorted(set(families))
    }
    found["source_fpr_at_fpr_1e-3"] = {
        source: float(np.mean(scores_benign[source_array == source] >= threshold))
        for source in sorted(set(sources))
    }
    found["source_names"] = dict(sorted(Counter(sources).items()))
    return found


def run(
    *,
    real_dev: Path,
    n_sites: int = 8,
    n_days: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    train_samples: int = DEFAULT_TRAIN_SAMPLES,
    labels: str = "truth",
    root: Path = lab.RESULTS_ROOT,
    name: str = NAME,
) -> dict[str, Any]:
    """Generate, train on the generated training names, score the real names, write results."""
    import torch

    from common.features import encode_domains
    from common.model import ModelSpec, build_model
    from common.training import TrainConfig, predict_scores, train_model
    from experiments.generator import generate_sites
    from experiments.value import one_torch_thread

    if labels not in ("truth", "intel"):
        raise ValueError(f"labels must be 'truth' or 'intel', got {labels!r}")
    benign, sources, dga, families = read_real(Path(real_dev))
    timings: dict[str, float] = {}
    with (
        one_torch_thread(),
        tempfile.TemporaryDirectory(prefix="fedsec-transfer-") as temp,
    ):
        with lab.stopwatch() as clock:
            data_dir = Path(temp) / "sites"
            generate_sites(data_dir, n_sites=n_sites, n_days=n_days, seed=seed, scale=scale)
        timings["generate_s"] = clock["seconds"]
        with lab.stopwatch() as clock:
            names, train_labels, per_site = generated_training_names(
                data_dir, Path(temp) / "work", labels=labels
            )
        timings["load_s"] = clock["seconds"]
        log.info(
            "%d generated training names (%d DGA) from %d sites",
            len(names),
            int(train_labels.sum()),
            n_sites,
        )
        steps = max(1, train_samples // BATCH_SIZE)
        model = build_model(ModelSpec(), seed=0)
        with lab.stopwatch() as clock:
            torch.manual_seed(0)
            summary = train_model(
                model,
                domains=encode_domains(names),
                labels=train_labels,
                config=TrainConfig(steps=steps, batch_size=BATCH_SIZE),
                generator=np.random.default_rng(0),
            )
        timings["train_s"] = clock["seconds"]
        model.eval()
        with lab.stopwatch() as clock:
            scores_benign = predict_scores(model, domains=encode_domains(benign))
            scores_dga = predict_scores(model, domains=encode_domains(dga))
        timings["score_s"] = clock["seconds"]
    found = evaluate(scores_benign, sources, scores_dga, families)
    payload = {
        "setup": {
            "sites": n_sites,
            "days": n_days,
            "seed": seed,
            "scale": scale,
            "labels": labels,
            "train_samples": steps * BATCH_SIZE,
            "train_steps": steps,
            "batch_size": BATCH_SIZE,
            "model": "build_model(ModelSpec(), seed=0)",
            "torch_threads": 1,
            "generated_train_names": len(names),
            "generated_train_dga": int(train_labels.sum()),
            "final_loss": summary.final_loss,
        },
        "sites": per_site,
        "real": found,
        "timings": timings,
    }
    write_outputs(lab.Results(name, TITLE, root), payload)
    return payload


def write_outputs(results: lab.Results, payload: dict[str, Any]) -> None:
    results.write_json(payload)
    real, setup = payload["real"], payload["setup"]
    results.add_table(
        "Real names scored by a model trained on generated sites only",
        [
            {
                "benign": real["benign_names"],
                "dga": real["dga_names"],
                "auc": real["auc"],
                "tpr3": real["tpr_at_fpr_0.001"],
                "res3": "yes" if real["resolvable_at_fpr_0.001"] else "no",
                "tpr4": real["tpr_at_fpr_0.0001"],
                "res4": "yes" if real["resolvable_at_fpr_0.0001"] else "no",
            }
        ],
        [
            lab.Column("benign", "real benign", "{:,}"),
            lab.Column("dga", "real DGA", "{:,}"),
            lab.Column("auc", "AUC", "{:.4f}"),
            lab.Column("tpr3", "TPR@FPR 1e-3", "{:.3f}"),
            lab.Column("res3", "resolvable (>= 3,000 benign)"),
            lab.Column("tpr4", "TPR@FPR 1e-4", "{:.3f}"),
            lab.Column("res4", "resolvable (>= 30,000 benign)"),
        ],
    )
    results.add_table(
        "Recall per real DGA family at the FPR 1e-3 threshold",
        [
            {"family": family, "recall": recall, "auc": real["family_auc"][family]}
            for family, recall in real["family_recall_at_fpr_1e-3"].items()
        ],
        [
            lab.Column("family", "family"),
            lab.Column("recall", "recall@FPR 1e-3", "{:.3f}"),
            lab.Column("auc", "AUC vs all benign", "{:.4f}"),
        ],
    )
    results.add_table(
        "False-positive rate per benign source at the same threshold",
        [
            {"source": source, "names": real["source_names"][source], "fpr": fpr}
            for source, fpr in real["source_fpr_at_fpr_1e-3"].items()
        ],
        [
            lab.Column("source", "source"),
            lab.Column("names", "names", "{:,}"),
            lab.Column("fpr", "FPR", "{:.4f}"),
        ],
    )
    intro = (
        f"{setup['sites']} generated sites x {setup['days']} days (seed {setup['seed']}, "
        f"scale {setup['scale']:g}); {setup['generated_train_names']:,} pooled training names "
        f"({setup['generated_train_dga']:,} DGA, {setup['labels']} labels); "
        f"{setup['train_samples']:,} samples ({setup['train_steps']} steps of "
        f"{setup['batch_size']}) on 1 torch thread. Only aggregate figures are kept here."
    )
    # Written here rather than by Results.write_table_md, which also rewrites the results
    # index (experiments/results/README.md, owned by the experiment commands).
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"## {results.title}",
        "",
        f"Written {stamp} by `python -m experiments.generator_transfer --real-dev PATH`.",
        "",
        intro,
        "",
        *results.tables,
    ]
    (results.path / lab.TABLE_FILE).write_text("\n".join(parts).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.generator_transfer",
        description="Train on generated sites only; score real benign and DGA names.",
    )
    parser.add_argument(
        "--real-dev",
        type=Path,
        required=True,
        help="folder with benign.csv.gz (domain,source) and dga.csv.gz (domain,family)",
    )
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--train-samples", type=int, default=DEFAULT_TRAIN_SAMPLES)
    parser.add_argument("--labels", choices=("truth", "intel"), default="truth")
    parser.add_argument("--out", type=Path, default=lab.RESULTS_ROOT, help="results root")
    parser.add_argument("--name", default=NAME, help="results folder name under --out")
    args = parser.parse_args(argv)
    lab.setup_logging()
    try:
        payload = run(
            real_dev=args.real_dev,
            n_sites=args.sites,
            n_days=args.days,
            seed=args.seed,
            scale=args.scale,
            train_samples=args.train_samples,
            labels=args.labels,
            root=args.out,
            name=args.name,
        )
    except MissingRealData as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    real = payload["real"]
    buffer = io.StringIO()
    buffer.write(
        f"AUC {real['auc']:.4f}  TPR@1e-3 {real['tpr_at_fpr_0.001']:.3f}  "
        f"TPR@1e-4 {real['tpr_at_fpr_0.0001']:.3f}\n"
    )
    for family, recall in real["family_recall_at_fpr_1e-3"].items():
        buffer.write(f"  {family:<18} recall@1e-3 {recall:.3f}\n")
    print(buffer.getvalue(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
