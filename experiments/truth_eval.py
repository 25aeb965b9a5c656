"""Researchers only: score a run's final model against the generator's ground truth.

Sites label with their own intel, which misses DGA names and lists some benign ones, so
their AUC is capped by label noise. The generator's `truth.csv` tells what the model
really does; no real site has it, and nothing here runs inside the federation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from client.pipeline import load_site
from client.site import find_site_dirs
from common.metrics import roc_auc, tpr_at_fpr
from common.model import model_from_bytes
from common.training import predict_scores


def load_truth(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as stream:
        return {row["domain"]: row["label"] for row in csv.DictReader(stream)}


def truth_evaluation(*, run_dir: Path, data_dir: Path) -> dict[str, dict[str, Any]]:
    """Per site: AUC and TPR@FPR on its test day with intel labels and with true labels."""
    truth = load_truth(data_dir / "truth.csv")
    model, _ = model_from_bytes((run_dir / "model.npz").read_bytes())
    found: dict[str, dict[str, Any]] = {}
    for site_dir in find_site_dirs(data_dir):
        data = load_site(site_dir).require_data()
        scores = predict_scores(model, domains=model.spec.encode(data.test.domains.tolist()))
        true_labels = np.array([truth.get(name) == "dga" for name in data.test.domains], np.int8)
        found[data.site_id] = {
            "intel_auc": roc_auc(scores=scores, labels=data.test.labels),
            "true_auc": roc_auc(scores=scores, labels=true_labels),
            "true_tpr_at_fpr_1e-3": tpr_at_fpr(
                scores=scores, labels=true_labels, target_fpr=1e-3
            ).tpr,
            "intel_label_error_rate": float(np.mean(true_labels != data.test.labels)),
        }
    (run_dir / "truth_eval.json").write_text(json.dumps(found, indent=2, sort_keys=True))
    return found
