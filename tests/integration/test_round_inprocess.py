"""A real federated round in the quick subset: fedsec's ServerApp and ClientApp, flwr's
workflows and mods, serialised messages, over an in-process grid (no Ray; seconds).

Three tiny sites: SecAgg+ refuses fewer (with two, each site could subtract its own update
from the sum and read the other's), and FedAvg runs on the same sites so the two aggregates
can be compared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from common.config import ConfigError
from common.model import ModelSpec, build_model, model_from_bytes, model_to_ndarrays
from common.run_config import QUANTIZATION_RANGE
from experiments.simulate import run_in_process
from server.selection import select_round

ROUNDS = 2
OVERRIDES = {
    "num-rounds": ROUNDS,
    "local-steps": 3,
    "site-html": "last-round",
    "seed": 0,
    "select-by": "auc",
}


@pytest.fixture(scope="module")
def tiny_sites(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("tiny") / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=2, seed=2, scale=0.05)
    for config in out.glob("*/site.toml"):
        text = re.sub(r'level = "[^"]*"', 'level = "rates+volumes"', config.read_text())
        config.write_text(text)
    return out


@pytest.fixture(scope="module")
def runs(tiny_sites, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    base = tmp_path_factory.mktemp("inprocess-runs")
    found = {}
    for mode in ("secagg", "fedavg"):
        out = base / mode
        results = run_in_process(
            data_dir=tiny_sites, out_dir=out, overrides={**OVERRIDES, "mode": mode}
        )
        found[mode] = (out, results)
    return found


def _arrays(path: Path) -> list[np.ndarray]:
    model, _ = model_from_bytes(path.read_bytes())
    return model_to_ndarrays(model)


@pytest.mark.parametrize("mode", ["secagg", "fedavg"])
def test_every_site_trains_and_evaluates_every_round(runs, mode):
    out, results = runs[mode]
    assert results["config"]["mode"] == mode
    assert [entry["round"] for entry in results["rounds"]] == list(range(1, ROUNDS + 1))
    for entry in results["rounds"]:
        assert entry["train"]["status"] == "aggregated", entry["train"]
        assert entry["train"]["results"] == 3 and entry["train"]["failures"] == 0
        assert set(entry["sites"]) == {"site-00", "site-01", "site-02"}
        assert entry["aggregate"]["sites"] == 3 and 0 < entry["aggregate"]["mean_auc"] <= 1
        # The gap before a round (recording and checkpoint of the one before) from round 2 on.
        gap = {"before"} if entry["round"] > 1 else set()
        assert set(entry["seconds"]) == {"train", "evaluate", "total"} | gap
        assert entry["seconds"].get("before", 0.0) >= 0.0
        assert (out / "checkpoints" / f"round-{entry['round']:03d}.npz").is_file()
    assert (out / "model.npz").is_file() and (out / "report.html").is_file()
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["rounds"] == results["rounds"]


@pytest.mark.parametrize("mode", ["secagg", "fedavg"])
def test_select_by_writes_the_round_the_sites_rank_highest(runs, mode):
    out, results = runs[mode]
    chosen = select_round(results["rounds"], "auc")
    assert chosen is not None and results["selection"]["round"] == chosen.round
    assert results["selection"]["sites"] == 3  # every site's AUC, in clear at rates+volumes
    checkpoint = out / "checkpoints" / f"round-{chosen.round:03d}.npz"
    assert (out / "model-selected.npz").read_bytes() == checkpoint.read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert report["selection"] == results["selection"]


def test_secagg_round_one_matches_fedavg_within_quantisation(runs):
    """Same seeds, same deltas: masks cancel, only quantisation separates the two models.

    Every tiny site shares volumes, so FedAvg averages with the exact weights SecAgg+ masks.
    """
    secagg_out, results = runs["secagg"]
    fedavg_out, fedavg_results = runs["fedavg"]
    secagg = _arrays(secagg_out / "checkpoints" / "round-001.npz")
    fedavg = _arrays(fedavg_out / "checkpoints" / "round-001.npz")
    weights = [site["num_examples"] for site in results["rounds"][0]["train"]["sites"].values()]
    assert weights == [
        site["num_examples"] for site in fedavg_results["rounds"][0]["train"]["sites"].values()
    ]
    config = results["config"]
    step = 2 * config["delta-clip-norm"] / QUANTIZATION_RANGE
    bound = len(weights) * step / (sum(weights) / config["max-weight"])
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(secagg, fedavg, strict=True))
    assert worst <= bound + 1e-7, (worst, bound)
    initial = model_to_ndarrays(build_model(ModelSpec(), seed=config["seed"]))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(secagg, initial, strict=True))
    assert moved > 10 * bound  # the round really moved the model: the comparison has teeth


def test_secagg_refuses_two_sites_before_any_round(tiny_sites, tmp_path):
    two = tmp_path / "two"
    two.mkdir()
    for name in ("site-00", "site-01"):
        (two / name).symlink_to(tiny_sites / name, target_is_directory=True)
    with pytest.raises(ConfigError, match="at least 3 nodes"):
        run_in_process(data_dir=two, out_dir=tmp_path / "run", overrides={"mode": "secagg"})
    assert not (tmp_path / "run").exists()
