"""Does a site's model stop scoring its judged false positives high? The every-round rule, measured.

    python -m experiments.verdict_rows [--scale 0.5] [--judged 50] [--seeds 3]

One generated site (4 days: 3 train, 1 test). A model trains `--warm` rounds on the site's own
labels; its highest-scoring training-day names that the generator's truth says are benign
(the false positives an analyst would see) are judged benign in the site's verdict file. From
that same model, `--after` more rounds train on the re-prepared site two ways: with the verdict
rows in every round's batches (`required_rows`, what `client.local.train_round` does) and
without (the same labels, drawn by chance only). Reported per arm, mean over `--seeds`: the
judged names' mean score, how many stay above the warm model's alert threshold (the score of
its 1-in-1,000 highest test-day negative), the test day's false and true positives at that
threshold, and the test day's TPR at FPR 1e-3 (each arm at its own threshold). The test day
keeps the intel's labels and none of its names is judged. Writes
experiments/results/verdict_rows.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "verdict_rows.json"
STEPS = 60  # local steps per round, the default when verdict_rows.json was measured


def _train(model, site, *, rounds: int, seed: int, start: int, with_rule: bool) -> None:
    from client.local import SPEC, site_rng
    from common.training import TrainConfig, train_model

    data = site.require_data()
    for server_round in range(start, start + rounds):
        rng = site_rng(seed=seed, server_round=server_round, site_id=data.site_id, purpose="exp")
        train_model(
            model,
            domains=site.encoded(SPEC).train,
            labels=data.train.labels,
            config=TrainConfig(steps=STEPS),
            generator=rng,
            required_rows=data.verdict_rows if with_rule else None,
        )


def _judged_false_positives(site, model, truth: dict[str, str], count: int) -> list[str]:
    from client.local import SPEC
    from common.training import predict_scores

    data = site.require_data()
    scores = predict_scores(model, domains=site.encoded(SPEC).train)
    order = np.argsort(-scores, kind="stable")
    names = data.train.domains
    benign = [names[i] for i in order if truth.get(names[i]) == "benign"]
    return benign[:count]


def run_seed(site_dir: Path, truth: dict[str, str], *, seed: int, args) -> dict:
    import copy

    from client.local import SPEC
    from client.pipeline import prepare_site
    from client.verdicts import append_verdict, make_verdict, verdicts_path
    from common.metrics import tpr_at_fpr
    from common.model import build_model
    from common.training import predict_scores

    verdicts_path(site_dir).unlink(missing_ok=True)
    site = prepare_site(site_dir)
    model = build_model(SPEC, seed=seed)
    _train(model, site, rounds=args.warm, seed=seed, start=1, with_rule=False)
    judged = _judged_false_positives(site, model, truth, args.judged)
    for name in judged:
        append_verdict(
            verdicts_path(site_dir),
            make_verdict(analyst="sim", subject="domain", target=name, verdict="benign"),
        )
    site = prepare_site(site_dir)
    data = site.require_data()
    test_scores = predict_scores(model, domains=site.encoded(SPEC).test)
    negatives = np.sort(test_scores[data.test.labels == 0])
    threshold = float(negatives[int(len(negatives) * 0.999)])
    judged_rows = np.isin(data.train.domains, np.array(judged, dtype=object))
    result = {"seed": seed, "threshold": threshold, "judged": len(judged)}
    for arm, with_rule in (("before", None), ("with_rule", True), ("without_rule", False)):
        trained = copy.deepcopy(model)
        if with_rule is not None:
            _train(trained, site, rounds=args.after, seed=seed, start=100, with_rule=with_rule)
        train_scores = predict_scores(trained, domains=site.encoded(SPEC).train)[judged_rows]
        test = predict_scores(trained, domains=site.encoded(SPEC).test)
        labels = data.test.labels
        result[arm] = {
            "judged_mean_score": float(train_scores.mean()),
            "judged_above_threshold": int((train_scores >= threshold).sum()),
            "test_false_positives": int(((test >= threshold) & (labels == 0)).sum()),
            "test_true_positives": int(((test >= threshold) & (labels == 1)).sum()),
            "test_tpr_at_fpr_1e-3": tpr_at_fpr(scores=test, labels=labels, target_fpr=1e-3).tpr,
        }
    result["train_negatives"] = int((data.train.labels == 0).sum())
    result["test_positives"] = int(data.test.positives)
    return result


def main(argv: list[str] | None = None) -> int:
    import torch

    from experiments.generator import generate_sites

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--judged", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--after", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "sites"
        generate_sites(out_dir=out, n_sites=1, n_days=4, seed=11, scale=args.scale)
        with (out / "truth.csv").open() as stream:
            truth = {row["domain"]: row["label"] for row in csv.DictReader(stream)}
        runs = [
            run_seed(out / "site-00", truth, seed=seed, args=args) for seed in range(args.seeds)
        ]
    summary = {
        arm: {key: float(np.mean([run[arm][key] for run in runs])) for key in runs[0]["before"]}
        for arm in ("before", "with_rule", "without_rule")
    }
    document = {"settings": vars(args) | {"out": str(args.out)}, "mean": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
