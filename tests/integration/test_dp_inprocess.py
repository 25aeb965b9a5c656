"""Differential privacy in real rounds (fedsec's apps over the in-process grid, no Ray): the ε
ledger under a dropout, the budget stop, and a resumed run that keeps the ledger exact.

Three tiny sites under SecAgg+ (3 shares, threshold 2), z = 1; site-02 fails to train in
round 2, so that round's sum has only t = 2 sites, the worst case the noise is sized for.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from common.dp import epsilon_of_rounds
from common.model import ModelSpec, build_model, model_to_ndarrays
from experiments.simulate import run_in_process

Z = 1.0
DELTA = 1e-6
# Round 1: 3 of 3 survive (z·√(3/2)); round 2: 2 survive (z); round 3 would cost at least z.
RELEASED = [Z * math.sqrt(3 / 2), Z]
BUDGET = (
    epsilon_of_rounds(RELEASED, delta=DELTA) + epsilon_of_rounds([*RELEASED, Z], delta=DELTA)
) / 2
OVERRIDES = {
    "num-rounds": 3,
    "local-steps": 2,
    "site-html": "off",
    "seed": 0,
    "delta-clip-norm": 10.0,
    "dp-noise-multiplier": Z,
    "dp-delta": DELTA,
    "dp-epsilon-budget": BUDGET,
    "fail-sites": "site-02",
    "fail-rounds": "2",
}


@pytest.fixture(scope="module")
def tiny_sites(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("dp-tiny") / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=2, seed=2, scale=0.05)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tiny_sites, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dp-run") / "run"
    return out, run_in_process(data_dir=tiny_sites, out_dir=out, overrides=OVERRIDES)


def test_ledger_records_the_noise_actually_present_and_stops_at_the_budget(uninterrupted):
    _, results = uninterrupted
    rounds = results["rounds"]
    assert [entry["round"] for entry in rounds] == [1, 2]
    privacy = [entry["privacy"] for entry in rounds]
    assert [p["survivors"] for p in privacy] == [3, 2]
    assert [p["threshold"] for p in privacy] == [2, 2]
    assert [p["effective_noise_multiplier"] for p in privacy] == pytest.approx(RELEASED)
    assert all(p["effective_noise_multiplier"] >= Z for p in privacy)
    assert privacy[0]["epsilon"] == epsilon_of_rounds(RELEASED[:1], delta=DELTA)
    assert privacy[1]["epsilon"] == epsilon_of_rounds(RELEASED, delta=DELTA)
    assert privacy[1]["epsilon_round"] == epsilon_of_rounds([Z], delta=DELTA)
    stop = results["privacy_stop"]
    assert stop["stopped_before_round"] == 3 and stop["epsilon_budget"] == BUDGET
    assert stop["epsilon"] == privacy[1]["epsilon"] < BUDGET < stop["epsilon_if_run"]


def test_the_noise_reaches_the_model(uninterrupted):
    """Round 1's mean delta is the mean of 3 clipped deltas (norm <= C = 10 each) plus noise of
    z·C·√(3/2)/3 per value: over 46,753 values its norm is ~882, the clipped signal <= 10."""
    _, results = uninterrupted
    values = sum(a.size for a in model_to_ndarrays(build_model(ModelSpec(), seed=0)))
    clip = 10.0
    expected = Z * clip * math.sqrt(3 / 2) / 3 * math.sqrt(values)
    observed = results["rounds"][0]["train"]["mean_delta_norm"]
    assert observed == pytest.approx(expected, rel=0.05)


def test_fedavg_sites_add_the_whole_noise_and_the_ledger_charges_z(tiny_sites, tmp_path):
    overrides = {**OVERRIDES, "mode": "fedavg", "num-rounds": 1, "fail-sites": ""}
    results = run_in_process(data_dir=tiny_sites, out_dir=tmp_path / "run", overrides=overrides)
    privacy = results["rounds"][0]["privacy"]
    assert privacy["threshold"] is None and privacy["effective_noise_multiplier"] == Z
    assert privacy["epsilon"] == epsilon_of_rounds([Z], delta=DELTA)
    # Each delta carries N(0, (zC)²) per value; their mean of 3 has z·C/√3 per value.
    values = sum(a.size for a in model_to_ndarrays(build_model(ModelSpec(), seed=0)))
    expected = Z * 10.0 / math.sqrt(3) * math.sqrt(values)
    assert results["rounds"][0]["train"]["mean_delta_norm"] == pytest.approx(expected, rel=0.05)


def test_report_shows_the_ledger(uninterrupted):
    out, _ = uninterrupted
    report = json.loads((out / "report.json").read_text())
    assert report["privacy"]["rounds"][-1]["epsilon"] == pytest.approx(
        epsilon_of_rounds(RELEASED, delta=DELTA)
    )
    assert report["privacy"]["stop"]["stopped_before_round"] == 3
    html = (out / "report.html").read_text()
    assert "Differential privacy" in html and "stopped before round 3" in html


def test_resumed_run_keeps_the_ledger_exact(uninterrupted, tiny_sites, tmp_path):
    """Drop the last checkpoint as a kill after round 1 would, resume: the same ε per round."""
    out, results = uninterrupted
    broken = tmp_path / "run"
    shutil.copytree(out, broken)
    (broken / "checkpoints" / "round-002.npz").unlink()
    resumed = run_in_process(
        data_dir=tiny_sites, out_dir=broken, overrides={**OVERRIDES, "resume": True}
    )
    assert [entry["round"] for entry in resumed["rounds"]] == [1, 2]
    assert [entry["privacy"] for entry in resumed["rounds"]] == [
        entry["privacy"] for entry in results["rounds"]
    ]
    assert resumed["privacy_stop"] == results["privacy_stop"]
