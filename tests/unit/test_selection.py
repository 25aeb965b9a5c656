"""Model selection (server/selection.py): the round the sites' own figures rank highest."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from common.model import ModelSpec, build_model, model_to_ndarrays
from server.checkpoints import CheckpointStore
from server.report import build_federation_report
from server.report_html import render_federation_html
from server.selection import SIGNALS, round_signal, save_selected, select_round


def _round(number: int, sites: dict[str, dict[str, Any]], **federation: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"round": number, "train": {}, "sites": sites, "aggregate": {}}
    if federation:
        entry["federation_means"] = federation["means"]
        entry["federation_contributors"] = federation["contributors"]
    return entry


def test_full_and_aggregate_sites_weigh_alike() -> None:
    # Two sites in clear (0.6, 0.9) and three whose mean 0.5 came through the masked sum.
    entry = _round(
        1,
        {"a": {"auc": 0.6}, "b": {"auc": 0.9}, "c": {"ack": 1, "aggregate_only": 1}},
        means={"auc": 0.5},
        contributors={"auc": 3},
    )
    value, sites = round_signal(entry, "auc")
    assert sites == 5 and value == pytest.approx((0.6 + 0.9 + 3 * 0.5) / 5)


def test_a_tpr_the_site_cannot_resolve_is_left_out() -> None:
    entry = _round(
        1,
        {
            "a": {"tpr_at_fpr_1e-3": 0.9, "tpr_at_fpr_1e-3_resolvable": 0.0},
            "b": {"tpr_at_fpr_1e-3": 0.4, "tpr_at_fpr_1e-3_resolvable": 1.0},
            "c": {"tpr_at_fpr_1e-3": float("nan")},
        },
    )
    assert round_signal(entry, "tpr_at_fpr_1e-3") == (pytest.approx(0.4), 1)
    assert round_signal(_round(2, {"a": {"auc": 0.7}}), "tpr_at_fpr_1e-3") is None


def test_the_best_round_wins_ties_go_to_the_later_one_and_silent_rounds_never_win() -> None:
    rounds = [
        _round(1, {"a": {"pauc_fpr_1e-3": 0.7}}),
        _round(2, {"a": {"pauc_fpr_1e-3": 0.8}}),
        _round(3, {"a": {"pauc_fpr_1e-3": 0.8}}),
        _round(4, {"a": {"pauc_fpr_1e-3": 0.6}}),
        _round(5, {"a": {"auc": 0.99}}),  # no pAUC from anyone
    ]
    chosen = select_round(rounds, "pauc_fpr_1e-3")
    assert chosen is not None and (chosen.round, chosen.value, chosen.sites) == (3, 0.8, 1)
    assert chosen.by_round == {1: 0.7, 2: 0.8, 3: 0.8, 4: 0.6}
    assert select_round(rounds[4:], "pauc_fpr_1e-3") is None
    assert select_round([], "auc") is None


def test_an_unknown_signal_is_refused() -> None:
    with pytest.raises(ValueError, match="signal must be one of"):
        round_signal(_round(1, {}), "fp_per_day")
    assert "pauc_fpr_1e-3" in SIGNALS


def _store(tmp_path, rounds: int) -> CheckpointStore:
    spec = ModelSpec()
    store = CheckpointStore(tmp_path / "checkpoints", spec=spec)
    for number in range(1, rounds + 1):
        store.save(number, model_to_ndarrays(build_model(spec, seed=number)))
    return store


def test_the_chosen_checkpoint_is_what_is_saved(tmp_path, caplog) -> None:
    store = _store(tmp_path, 3)
    rounds = [_round(n, {"a": {"auc": auc}}) for n, auc in ((1, 0.8), (2, 0.95), (3, 0.9))]
    with caplog.at_level(logging.INFO, logger="fedsec.server"):
        record = save_selected(
            rounds, signal="auc", checkpoints=store, path=tmp_path / "model-selected.npz"
        )
    assert (tmp_path / "model-selected.npz").read_bytes() == store.path_for(2).read_bytes()
    assert record["round"] == 2 and record["file"] == "model-selected.npz"
    assert record["by_round"] == {"1": 0.8, "2": 0.95, "3": 0.9}
    assert json.loads(json.dumps(record)) == record
    assert "model selection: round 2 of 3 by auc" in caplog.text


def test_without_the_figure_the_last_round_is_saved_and_the_record_says_why(
    tmp_path, caplog
) -> None:
    store = _store(tmp_path, 2)
    rounds = [_round(n, {"a": {"ack": 1}}) for n in (1, 2)]
    with caplog.at_level(logging.WARNING, logger="fedsec.server"):
        record = save_selected(
            rounds, signal="pauc_fpr_1e-3", checkpoints=store, path=tmp_path / "m.npz"
        )
    assert (tmp_path / "m.npz").read_bytes() == store.path_for(2).read_bytes()
    assert (
        record["round"] == 2
        and record["value"] is None
        and "no completed round" in (record["reason"])
    )
    assert "model selection: no completed round carried pauc_fpr_1e-3" in caplog.text


def test_a_run_stopped_before_its_first_round_writes_nothing(tmp_path, caplog) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", spec=ModelSpec())
    with caplog.at_level(logging.WARNING, logger="fedsec.server"):
        record = save_selected([], signal="auc", checkpoints=store, path=tmp_path / "s.npz")
    assert record is None and not (tmp_path / "s.npz").exists()
    assert "no completed round, so no s.npz" in caplog.text


def test_the_report_shows_the_choice(tmp_path) -> None:
    store = _store(tmp_path, 2)
    rounds = [_round(n, {"a": {"auc": auc}}) for n, auc in ((1, 0.9), (2, 0.8))]
    record = save_selected(rounds, signal="auc", checkpoints=store, path=tmp_path / "s.npz")
    report = build_federation_report({"config": {}, "rounds": rounds, "selection": record})
    assert report["selection"]["round"] == 1
    page = render_federation_html(report)
    assert "<h2>Model selection</h2>" in page and "s.npz is round 1" in page
    assert "Model selection" not in render_federation_html(
        build_federation_report({"config": {}, "rounds": rounds})
    )
    with pytest.raises(ValueError, match="field `selection`"):
        build_federation_report({"config": {}, "rounds": rounds, "selection": {"round": "x"}})
