"""experiments/lowfpr_budget.py at its tiny size on stand-in names in the real-dev layout:
one SecAgg+ federation per budget, every figure carried with its resolvability."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import lowfpr_budget, repeats
from server.selection import SIGNALS
from tests.integration.test_experiment_lowfpr import leaked_names, run_on_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, lowfpr_budget)


def test_one_run_per_arm_and_seed_summarised_per_arm(tiny_run) -> None:
    out, payload, _ = tiny_run
    budget = lowfpr_budget.SIZES["tiny"]
    rows, arms = payload["rows"], payload["arms"]
    assert [(row["arm"], row["local_steps"], row["seed"]) for row in rows] == [
        (arm.label, arm.local_steps, seed) for arm in budget.arms for seed in budget.seeds
    ]
    assert {row["run_config"] for row in rows} == {
        "hard-negatives=0",
        "hard-negatives=48",
        "hard-negatives=48, num-rounds=3",
    }
    for row in rows:
        assert (row["hard_negatives_used"] > 0) == (row["arm"] == "hard negatives")
        for signal in SIGNALS:  # the round each selection signal picks, and its checkpoint
            assert 1 <= row[f"round_by_{signal}"] <= row["rounds"]
            assert 0.0 <= row[f"auc_by_{signal}"] <= 1.0
        assert row["rounds"] == (3 if row["knob"] == "num-rounds=3" else budget.rounds)
        assert row["samples_per_site"] == row["rounds"] * row["local_steps"] * budget.batch
        assert row["rounds_completed"] == row["rounds"] and row["site_failures"] == 0
        assert 0.0 <= row["auc"] <= 1.0 and row["wall_s"] > row["train_phase_s"] > 0
    assert len(arms) == len(budget.arms)
    for summary in arms:
        runs = [
            row
            for row in rows
            if (row["arm"], row["local_steps"], row["run_config"])
            == (summary["arm"], summary["local_steps"], summary["run_config"])
        ]
        assert summary["seeds"] == len(runs) == len(budget.seeds)
        for metric in repeats.METRICS:
            values = [run[metric] for run in runs]
            assert summary[metric] == pytest.approx(sum(values) / len(values))
            assert summary[f"{metric}_min"] == min(values)
            assert summary[f"{metric}_max"] == max(values)
    assert json.loads((out / "results.json").read_text())["arms"] == json.loads(json.dumps(arms))
    for name, count in (("runs.csv", len(rows)), ("arms.csv", len(arms))):
        with open(out / name, newline="") as handle:
            assert len(list(csv.DictReader(handle))) == count
    assert (out / "budget.png").stat().st_size > 0
    assert "### Model selection" in (out / "table.md").read_text()


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
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]


def test_an_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size must be one of"):
        lowfpr_budget.run(size="huge")
