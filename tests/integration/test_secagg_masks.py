"""SecAgg+ rounds with fedsec's ChaCha20 masks (common/masks.py), end to end and in process.

fedsec's ServerApp and ClientApp, flwr's SecAggPlusWorkflow and secaggplus_mod, over the
in-process grid (experiments.inprocess): the masks the clients add must be the masks the server
removes, with or without dropouts, or the aggregate is garbage. Five sites, threshold 3: the
same round with two sites raising in training must still unmask, to FedAvg over the three
survivors within the quantisation bound.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from common import masks
from common.model import model_from_bytes, model_to_ndarrays
from common.run_config import QUANTIZATION_RANGE
from experiments.simulate import run_in_process

OVERRIDES = {"num-rounds": 1, "local-steps": 3, "site-html": "off", "seed": 0}
FAILING = ("site-01", "site-03")
CLIENT_MOD, SERVER_WORKFLOW = masks.PATCHED_MODULES[1], masks.PATCHED_MODULES[2]


@pytest.fixture(scope="module")
def five_sites(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("five") / "sites"
    generate_sites(out_dir=out, n_sites=5, n_days=2, seed=2, scale=0.05)
    return out


@pytest.fixture(scope="module")
def runs(five_sites, tmp_path_factory) -> dict[str, tuple[Path, dict, Counter]]:
    """secagg and fedavg, each with no failure and with FAILING raising in round 1."""
    base = tmp_path_factory.mktemp("mask-runs")
    found = {}
    for dropouts in ("none", "two"):
        for mode in ("secagg", "fedavg"):
            extra = (
                {"fail-sites": ",".join(FAILING), "fail-rounds": "1"} if dropouts == "two" else {}
            )
            out = base / f"{mode}-{dropouts}"
            with _recording_callers() as callers:
                results = run_in_process(
                    data_dir=five_sites, out_dir=out, overrides={**OVERRIDES, **extra, "mode": mode}
                )
            found[f"{mode}-{dropouts}"] = (out, results, callers)
    return found


class _recording_callers:
    """Counts, by calling module, every mask expansion flwr asks `common.masks` for."""

    def __enter__(self) -> Counter:
        self.callers: Counter = Counter()
        self._patch = pytest.MonkeyPatch()
        generate = masks.expand_masks

        def recording(seed, *, num_range, shapes):
            # 0: here, 1: common.masks.pseudo_rand_gen, 2: the flwr module that called it.
            self.callers[sys._getframe(2).f_globals["__name__"]] += 1
            return generate(seed, num_range=num_range, shapes=shapes)

        self._patch.setattr(masks, "expand_masks", recording)
        return self.callers

    def __exit__(self, *exc_info: object) -> None:
        self._patch.undo()


def _round1(out: Path) -> list[np.ndarray]:
    model, _ = model_from_bytes((out / "checkpoints" / "round-001.npz").read_bytes())
    return model_to_ndarrays(model)


def _assert_matches_fedavg(secagg: tuple, fedavg: tuple, *, survivors: set[str]) -> None:
    (secagg_out, secagg_results, _), (fedavg_out, fedavg_results, _) = secagg, fedavg
    train = secagg_results["rounds"][0]["train"]
    assert train["status"] == "aggregated", train
    assert set(train["sites"]) == survivors == set(fedavg_results["rounds"][0]["train"]["sites"])
    weights = [site["num_examples"] for site in train["sites"].values()]
    config = secagg_results["config"]
    step = 2 * config["delta-clip-norm"] / QUANTIZATION_RANGE
    bound = len(weights) * step / (sum(weights) / config["max-weight"])
    secagg_model, fedavg_model = _round1(secagg_out), _round1(fedavg_out)
    worst = max(
        float(np.max(np.abs(a - b))) for a, b in zip(secagg_model, fedavg_model, strict=True)
    )
    assert worst <= bound + 1e-7, (worst, bound)
    from common.model import ModelSpec, build_model

    initial = model_to_ndarrays(build_model(ModelSpec(), seed=config["seed"]))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(secagg_model, initial, strict=True))
    assert moved > 10 * bound  # the round moved the model: the comparison has teeth


def test_both_sides_expand_masks_with_the_new_generator(runs):
    """Clients add self and pairwise masks, the server removes self masks: all via ChaCha20."""
    _, _, callers = runs["secagg-none"]
    assert callers[CLIENT_MOD] == 5 * 5  # each of 5 sites: its self mask + 4 pairwise masks
    assert callers[SERVER_WORKFLOW] == 5  # every site's self mask
    assert set(callers) == {CLIENT_MOD, SERVER_WORKFLOW}
    assert not runs["fedavg-none"][2]  # FedAvg masks nothing


def test_secagg_round_unmasks_to_fedavg_within_quantisation(runs):
    sites = {f"site-{index:02d}" for index in range(5)}
    _assert_matches_fedavg(runs["secagg-none"], runs["fedavg-none"], survivors=sites)


def test_two_dropouts_of_five_unmask_to_fedavg_over_the_survivors(runs):
    """Threshold 3 of 5 shares: the server rebuilds the dropped sites' keys from shares and
    removes their pairwise masks from the survivors' vectors, expanded by the new generator."""
    out, results, callers = runs["secagg-two"]
    assert results["config"]["fail-sites"] == ",".join(FAILING)
    survivors = {f"site-{index:02d}" for index in range(5)} - set(FAILING)
    _assert_matches_fedavg(runs["secagg-two"], runs["fedavg-two"], survivors=survivors)
    # Survivors: self mask + 4 pairwise each (the dropped sites had shared keys). Server: 3
    # self masks, and for each dropped site one pairwise mask per survivor it shared with.
    assert callers[CLIENT_MOD] == 3 * 5
    assert callers[SERVER_WORKFLOW] == 3 + 2 * 4


@pytest.mark.slow
def test_a_server_left_on_flwrs_generator_unmasks_to_garbage(
    runs, five_sites, tmp_path, monkeypatch
):
    """Why both apps must install the generator: a mismatch raises nothing in flwr, it unmasks
    to garbage (the test above is not passing by accident). flwr would apply it; fedsec's
    coordinator finds the unmasked weight sum impossible and refuses the round."""
    import importlib

    server = importlib.import_module(SERVER_WORKFLOW)
    monkeypatch.setattr(server, "pseudo_rand_gen", masks.flwr_generator())
    out = tmp_path / "mismatch"
    results = run_in_process(
        data_dir=five_sites, out_dir=out, overrides={**OVERRIDES, "mode": "secagg"}
    )
    train = results["rounds"][0]["train"]
    assert train["status"] == "failed", train  # every site replied: only the sum is garbage
    assert train["failures"] == 0 and len(train["sites"]) == 5
    assert "the masked weights sum to" in train["problem"], train["problem"]
    assert "mean_delta_norm" not in train  # no delta was applied: the model is unchanged
