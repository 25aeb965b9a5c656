"""Share level `aggregate`: a site's evaluation figures leave it only inside a SecAgg+-masked sum.

Real rounds on the in-process grid (fedsec's ServerApp and ClientApp, flwr's SecAgg+ workflow
and mod, serialised messages). Each test reads what the coordinator stored and decodes every
reply a site sent (`audit-replies`), and compares the federation means with the sites' own
fragility reports, which never leave them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from flwr.common.serde import recorddict_from_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict  # pylint: disable=E0611
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

from client.pipeline import prepare_site
from common.model import model_from_bytes, model_to_ndarrays
from common.protocol import (
    ACK,
    AGGREGATE_ONLY,
    RATE_METRICS,
    SERVER_ROUND,
    SITE_ID,
    TASK,
    TASK_EVALUATION_SUM,
)
from common.run_config import QUANTIZATION_RANGE
from common.share import (
    FEDERATION_FRACTIONS,
    FEDERATION_KEYS,
    MASKED_RANGE,
    MIN_CONTRIBUTORS,
    round_significant,
)
from experiments.simulate import run_in_process

SITES = ("site-00", "site-01", "site-02")
OVERRIDES = {"local-steps": 2, "site-html": "off", "seed": 0, "audit-replies": True}
# One SecAgg+ quantisation step of the evaluation sum (values in [-1, 1], 2^22 levels).
STEP = 2 * MASKED_RANGE / QUANTIZATION_RANGE


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("aggregate") / "sites"
    generate_sites(out_dir=out, n_sites=len(SITES), n_days=2, seed=2, scale=0.05)
    return out


def _sites(pristine: Path, where: Path, levels: dict[str, str]) -> Path:
    data = where / "sites"
    shutil.copytree(pristine, data, ignore=shutil.ignore_patterns("work"))
    for site, level in levels.items():
        config = data / site / "site.toml"
        config.write_text(re.sub(r'level = "[^"]*"', f'level = "{level}"', config.read_text()))
    return data


def _model_in_state(context) -> list[np.ndarray]:
    record = context.state.array_records[MAIN_PARAMS_RECORD]
    return [array.numpy().copy() for array in record.values()]


@pytest.fixture(scope="module")
def aggregate_run(pristine, tmp_path_factory) -> dict:
    """Every site at `aggregate`, SecAgg+, 2 rounds; the global model is read before and after
    each evaluation sum."""
    from server.federation import EvaluationSum

    where = tmp_path_factory.mktemp("all-aggregate")
    data = _sites(pristine, where, dict.fromkeys(SITES, "aggregate"))
    original = EvaluationSum.__call__
    models: list[tuple[list[np.ndarray], list[np.ndarray]]] = []

    def spy(self, grid, context) -> None:
        before = _model_in_state(context)
        original(self, grid, context)
        models.append((before, _model_in_state(context)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EvaluationSum, "__call__", spy)
        results = run_in_process(
            data_dir=data,
            out_dir=where / "run",
            overrides={**OVERRIDES, "mode": "secagg", "num-rounds": 2},
        )
    return {"data": data, "run": where / "run", "results": results, "models": models}


@pytest.fixture(scope="module")
def rates_run(pristine, tmp_path_factory) -> dict:
    where = tmp_path_factory.mktemp("all-rates")
    data = _sites(pristine, where, dict.fromkeys(SITES, "rates"))
    results = run_in_process(
        data_dir=data,
        out_dir=where / "run",
        overrides={**OVERRIDES, "mode": "secagg", "num-rounds": 1},
    )
    return {"data": data, "run": where / "run", "results": results}


def _replies(site_dir: Path, kind: str) -> list:
    paths = sorted((site_dir / "work" / "audit").glob(f"{kind}-*.bin"))
    return [recorddict_from_proto(ProtoRecordDict.FromString(path.read_bytes())) for path in paths]


def _arrays(path: Path) -> list[np.ndarray]:
    model, _ = model_from_bytes(path.read_bytes())
    return model_to_ndarrays(model)


def _own_report(site_dir: Path, server_round: int) -> dict[str, float]:
    report = json.loads(
        (site_dir / "work" / "fragility" / f"round-{server_round:03d}.json").read_text()
    )
    return {
        key: math.nan if value is None else float(value) for key, value in report["metrics"].items()
    }


def _what_the_site_would_add(metrics: dict[str, float], key: str) -> float | None:
    """The figure a site contributes for `key`, or None: written from docs/threat-model.md."""
    if key in FEDERATION_FRACTIONS:
        rate, limit = FEDERATION_FRACTIONS[key]
        value = metrics.get(rate, math.nan)
        return None if math.isnan(value) else float(round_significant(value) > limit)
    value = metrics.get(key, math.nan)
    if (
        not math.isfinite(value)
        or metrics.get(f"{key.removeprefix('federated_gain_')}_resolvable") == 0
    ):
        return None
    value = round_significant(value)
    return value if abs(value) <= 1 else None


def test_an_aggregate_site_sends_no_figure_and_no_count_in_clear(aggregate_run):
    results = aggregate_run["results"]
    for entry in results["rounds"]:
        assert entry["sites"] == {site: {ACK: 1.0, AGGREGATE_ONLY: 1.0} for site in SITES}
        assert all(set(figures) == {"num_examples"} for figures in entry["train"]["sites"].values())
        assert all(figures["num_examples"] == 1 for figures in entry["train"]["sites"].values())
    for site in SITES:
        evaluate = _replies(aggregate_run["data"] / site, "evaluate")
        train = _replies(aggregate_run["data"] / site, "train")
        assert (
            len(evaluate) == 2 and len(train) == 2 * 8
        )  # per round: 4 training + 4 summing stages
        for content in evaluate + train:
            # Arrays in clear: none (SecAgg+'s mod empties them; the masked vector is bytes).
            assert all(len(record) == 0 for record in content.array_records.values())
            for name, record in [*content.metric_records.items(), *content.config_records.items()]:
                if not name.startswith(("fitres.", "evaluateres.")):
                    continue  # SecAgg+'s own: keys, shares, node ids, the masked vector
                for key, value in record.items():
                    if key == SITE_ID:
                        assert value == site
                    elif key != "message":  # the status message, ""
                        assert value in (0, 1), (name, key, value)  # status code, ack, loss, count
        for content in evaluate:
            assert set(content.config_records["evaluateres.metrics"]) == {
                SITE_ID,
                ACK,
                AGGREGATE_ONLY,
            }
            assert content.metric_records["evaluateres.num_examples"]["num_examples"] == 1
            assert content.metric_records["evaluateres.loss"]["loss"] == 0.0


def test_federation_means_are_the_plain_means_of_the_sites_own_figures(aggregate_run):
    for entry in aggregate_run["results"]["rounds"]:
        assert entry["federation_sum"]["status"] == "aggregated"
        assert entry["federation_sum"]["results"] == len(SITES)
        reports = [_own_report(aggregate_run["data"] / site, entry["round"]) for site in SITES]
        expected_means, expected_counts = {}, {}
        for key in FEDERATION_KEYS:
            figures = [f for r in reports if (f := _what_the_site_would_add(r, key)) is not None]
            if figures:
                expected_counts[key] = len(figures)
            if len(figures) >= MIN_CONTRIBUTORS:
                expected_means[key] = float(np.mean(figures))
        assert entry["federation_contributors"] == expected_counts
        assert set(entry["federation_means"]) == set(expected_means)
        assert {"auc", "brier", "fpr_upper95", "fraction_over_budget"} <= set(expected_means)
        for key, expected in expected_means.items():
            count = expected_counts[key]
            bound = len(SITES) / count * 2 * STEP + 5e-7  # quantisation + 6-decimal rounding
            assert abs(entry["federation_means"][key] - expected) <= bound, key
        # Not one site's value: no key of the masked vocabulary reached results.json per site.
        assert not set(RATE_METRICS) & {k for s in entry["sites"].values() for k in s}


def test_the_evaluation_sum_leaves_the_global_model_alone(aggregate_run, rates_run):
    models = aggregate_run["models"]
    assert len(models) == 2  # one evaluation sum per round
    checkpoints = [aggregate_run["run"] / "checkpoints" / f"round-{n:03d}.npz" for n in (1, 2)]
    for (before, after), checkpoint in zip(models, checkpoints, strict=True):
        assert len(before) == len(after)
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        recorded = _arrays(checkpoint)
        if len(after) == 1:  # the model travels packed in one vector (common/weights.py)
            from common.weights import pack

            recorded = pack(recorded)
        assert all(
            np.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(after, recorded, strict=True)
        )
    # And the round's model is the one every site at `rates` gets, within SecAgg+'s quantisation.
    # Both runs are SecAgg+, each rounding stochastically on its own: each lies within `bound`
    # of the exact weighted mean, so the two lie within twice that of each other.
    aggregate_model = _arrays(checkpoints[0])
    rates_model = _arrays(rates_run["run"] / "checkpoints" / "round-001.npz")
    config = aggregate_run["results"]["config"]
    weights = []
    for site in SITES:
        weights.append(
            min(
                len(prepare_site(aggregate_run["data"] / site).require_data().train),
                config["max-weight"],
            )
        )
    step = 2 * config["delta-clip-norm"] / QUANTIZATION_RANGE
    bound = len(weights) * step / (sum(weights) / config["max-weight"])
    worst = max(
        float(np.max(np.abs(a - b))) for a, b in zip(aggregate_model, rates_model, strict=True)
    )
    assert worst <= 2 * bound + 1e-7, (worst, bound)
    from common.model import ModelSpec, build_model

    initial = model_to_ndarrays(build_model(ModelSpec(), seed=config["seed"]))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(aggregate_model, initial, strict=True))
    assert moved > 20 * bound  # the round moved the model: the comparison has teeth


def test_the_cost_is_recorded_per_round(aggregate_run):
    for entry in aggregate_run["results"]["rounds"]:
        seconds = entry["seconds"]
        assert seconds["federation_sum"] == entry["federation_sum"]["seconds"] > 0
        assert seconds["total"] == pytest.approx(
            seconds["train"] + seconds["evaluate"] + seconds["federation_sum"], abs=0.5
        )
    report = json.loads((aggregate_run["run"] / "report.json").read_text())
    federation = report["federation_level"]
    assert [row["round"] for row in federation["rounds"]] == [1, 2]
    assert federation["metrics"]["auc"]["contributors"] == [3, 3]
    html = (aggregate_run["run"] / "report.html").read_text()
    assert "Federation-level only (aggregate sites)" in html


def test_two_aggregate_sites_give_no_federation_figure(pristine, tmp_path):
    data = _sites(
        pristine, tmp_path, {"site-00": "aggregate", "site-01": "aggregate", "site-02": "rates"}
    )
    results = run_in_process(
        data_dir=data,
        out_dir=tmp_path / "run",
        overrides={**OVERRIDES, "mode": "secagg", "num-rounds": 1},
    )
    entry = results["rounds"][0]
    assert entry["federation_sum"]["status"] == "too-few-sites"
    assert entry["federation_sum"]["sites"] == 2
    assert entry["federation_means"] == {} and entry["federation_contributors"] == {}
    assert set(entry["sites"]["site-02"]) >= {"auc", "brier"}  # the rates site, in clear as ever
    # The sum was not even run: a sum over 2 sites would tell each the other's figures.
    for site in SITES:
        assert len(_replies(data / site, "train")) == 4  # SecAgg+'s 4 training stages only
    assert "Federation-level only" in (tmp_path / "run" / "report.html").read_text()


def test_fedavg_logs_once_and_aggregate_sites_send_only_acks(pristine, tmp_path, caplog):
    data = _sites(pristine, tmp_path, dict.fromkeys(SITES, "aggregate"))
    with caplog.at_level(logging.WARNING, logger="fedsec.server"):
        results = run_in_process(
            data_dir=data,
            out_dir=tmp_path / "run",
            overrides={**OVERRIDES, "mode": "fedavg", "num-rounds": 2},
        )
    warnings = [r.getMessage() for r in caplog.records if "mode=fedavg has none" in r.getMessage()]
    assert len(warnings) == 1, warnings
    for entry in results["rounds"]:
        assert entry["federation_sum"]["status"] == "needs-secagg"
        assert entry["federation_means"] == {}
        assert entry["sites"] == {site: {ACK: 1.0, AGGREGATE_ONLY: 1.0} for site in SITES}
    for site in SITES:
        assert len(_replies(data / site, "train")) == 2  # one plain train reply per round
        for content in _replies(data / site, "evaluate"):
            assert set(content.config_records["evaluateres.metrics"]) == {
                SITE_ID,
                ACK,
                AGGREGATE_ONLY,
            }
            assert content.metric_records["evaluateres.loss"]["loss"] == 0.0


def test_a_site_asked_without_secagg_sends_zeros(pristine, tmp_path):
    """A coordinator that asks for the evaluation sum in clear gets zeros, not the figures."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app.message_type import MessageType
    from flwr.common import (
        EvaluateIns,
        FitIns,
        Parameters,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )

    import client.app
    from common.model import ModelSpec, build_model
    from common.run_config import RunSettings
    from experiments.inprocess import LocalGrid
    from experiments.simulate import run_settings

    data = _sites(pristine, tmp_path, dict.fromkeys(SITES, "aggregate"))
    settings = run_settings(
        data_dir=data, out_dir=tmp_path / "run", overrides={**OVERRIDES, "mode": "secagg"}
    )
    assert isinstance(settings, RunSettings)
    grid = LocalGrid(
        client_app=client.app.app, num_nodes=len(SITES), run_config=settings.to_run_config()
    )
    node = next(iter(grid.contexts))
    model = ndarrays_to_parameters(model_to_ndarrays(build_model(ModelSpec(), seed=0)))
    evaluate = grid.create_message(
        compat.evaluateins_to_recorddict(EvaluateIns(model, {SERVER_ROUND: 1}), True),
        MessageType.EVALUATE,
        node,
        "1",
    )
    (reply,) = grid.send_and_receive([evaluate])
    assert reply.has_content()
    kept = grid.contexts[node].state.metric_records[client.app.MASKED_FIGURES_RECORD]
    assert sum(kept["valid"]) > 10  # the site holds its figures, waiting for a masked sum
    ask = FitIns(
        Parameters(tensors=[], tensor_type="numpy.ndarray"),
        {SERVER_ROUND: 1, TASK: TASK_EVALUATION_SUM},
    )
    train = grid.create_message(
        compat.fitins_to_recorddict(ask, True), MessageType.TRAIN, node, "1"
    )
    (reply,) = grid.send_and_receive([train])
    values, valid = parameters_to_ndarrays(
        compat.recorddict_to_fitres(reply.content, False).parameters
    )
    assert not values.any() and not valid.any()
    assert client.app.MASKED_FIGURES_RECORD not in grid.contexts[node].state.metric_records
