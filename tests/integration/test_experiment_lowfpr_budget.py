"""experiments/lowfpr_budget.py at its tiny size on stand-in names in the real-dev layout:
one SecAgg+ federation per budget, every figure carried with its resolvability."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import lowfpr_budget
from tests.integration.test_experiment_lowfpr import write_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("budget")
    names = write_stand_in(base / "real-dev")
    root = base / "results"
    payload = lowfpr_budget.run(size="tiny", root=root, real_dev=base / "real-dev")
    return root / lowfpr_budget.NAME, payload, names


def test_one_run_per_arm_and_seed_summarised_per_arm(tiny_run) -> None:
    out, payload, _ = tiny_run
    budget = lowfpr_budget.SIZES["tiny"]
    rows, arms = payload["rows"], payload["arms"]
    assert [(row["arm"], row["local_steps"], row["seed"]) for row in rows] == [
        (arm.label, arm.local_steps, seed) for arm in budget.arms for seed in budget.seeds
    ]
    assert {row["run_config"] for row in rows} == {"defaults", "hard-negatives=48"}
    for row in rows:
        assert row["samples_per_site"] == budget.rounds * row["local_steps"] * budget.batch
        assert row["rounds_completed"] == budget.rounds and row["site_failures"] == 0
        assert 0.0 <= row["auc"] <= 1.0 and row["wall_s"] > row["train_phase_s"] > 0
    assert len(arms) == len(budget.arms)
    for summary in arms:
        runs = [
            row
            for row in rows
            if (row["arm"], row["local_steps"]) == (summary["arm"], summary["local_steps"])
        ]
        assert summary["seeds"] == len(runs) == len(budget.seeds)
        for metric in lowfpr_budget.METRICS:
            values = [run[metric] for run in runs]
            assert summary[metric] == pytest.approx(sum(values) / len(values))
            assert summary[f"{metric}_min"] == min(values)
            assert summary[f"{metric}_max"] == max(values)
    assert json.loads((out / "results.json").read_text())["arms"] == json.loads(json.dumps(arms))
    for name, count in (("runs.csv", len(rows)), ("arms.csv", len(arms))):
        with open(out / name, newline="") as handle:
            assert len(list(csv.DictReader(handle))) == count
    assert (out / "budget.png").stat().st_size > 0


def test_resolvability_follows_the_benign_count(tiny_run) -> None:
    out, payload, _ = tiny_run
    table = (out / "table.md").read_text()
    for row in payload["rows"]:
        for suffix, benign in (
            ("", payload["test_benign"]),
            ("_clean", payload["test_benign_clean"]),
        ):
            for tag, fpr in (("1e-3", 1e-3), ("1e-4", 1e-4)):
                assert row[f"resolvable_{tag}{suffix}"] == (int(fpr * benign + 1e-9) >= 3)
    # The stand-in's few hundred benign names resolve neither FPR: the table must say so.
    assert payload["test_benign"] < 3000 and "**not resolvable**" in table


def test_no_name_from_the_data_is_written(tiny_run) -> None:
    out, _, names = tiny_run
    written = "".join(
        path.read_text(errors="replace") for path in out.iterdir() if path.suffix != ".png"
    )
    leaked = [name for name in names["dga"] + names["benign"] if name in written]
    assert not leaked, leaked[:5]


def test_an_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size must be one of"):
        lowfpr_budget.run(size="huge")
