"""Real flwr Simulation Engine runs over generated sites: SecAgg+, FedAvg, dropouts, no leaks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.share import SHARE_KEYS, is_shared
from tests.conftest import run_fedsec

pytestmark = pytest.mark.slow

ROUNDS = 2
STEPS = "15"
CLIP = 10.0  # delta-clip-norm default: the SecAgg+ clipping range
QUANTIZATION_STEP = 2 * CLIP / 2**22


def _simulate(data: Path, out: Path, tmp_path: Path, *extra: str) -> dict:
    args = [
        "simulate",
        "--data",
        str(data),
        "--out",
        str(out),
        "--rounds",
        str(ROUNDS),
        "--local-steps",
        STEPS,
        *extra,
    ]
    result = run_fedsec(args, tmp_path=tmp_path, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((out / "results.json").read_text()) | {"_stdout": result.stdout}


@pytest.fixture(scope="module")
def volume_federation(small_federation, tmp_path_factory) -> Path:
    """The small federation with every site sharing volumes: FedAvg then averages with the
    exact weights SecAgg+ masks (below `rates+volumes` FedAvg's clear weights are rounded)."""
    data = tmp_path_factory.mktemp("volumes") / "sites"
    shutil.copytree(small_federation, data, ignore=shutil.ignore_patterns("work"))
    for config in data.glob("*/site.toml"):
        config.write_text(re.sub(r'level = "[^"]*"', 'level = "rates+volumes"', config.read_text()))
    return data


@pytest.fixture(scope="module")
def runs(volume_federation, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    base = tmp_path_factory.mktemp("runs")
    found = {}
    for mode in ("secagg", "fedavg"):
        out = base / mode
        found[mode] = (
            out,
            _simulate(
                volume_federation, out, base, "--mode", mode, "--set", "select-by=pauc_fpr_1e-3"
            ),
        )
    return found


def _share_level(site: Path) -> str:
    import tomllib

    return tomllib.loads((site / "site.toml").read_text())["share"]["level"]


def _site_ids(data: Path) -> set[str]:
    return {p.name for p in data.iterdir() if (p / "site.toml").is_file()}


@pytest.mark.parametrize("mode", ["secagg", "fedavg"])
def test_every_site_every_round_in_results(runs, volume_federation, mode):
    small_federation = volume_federation
    out, results = runs[mode]
    assert results["config"]["mode"] == mode
    assert [r["round"] for r in results["rounds"]] == list(range(1, ROUNDS + 1))
    for entry in results["rounds"]:
        assert set(entry["sites"]) == _site_ids(small_federation)
        for site, metrics in entry["sites"].items():
            level = _share_level(small_federation / site)
            assert all(is_shared(key, level=level) for key in metrics), (site, level, metrics)
            assert 0.0 <= metrics["auc"] <= 1.0
            assert 0.0 <= metrics["tpr_at_fpr_1e-4"] <= 1.0
            assert 0.0 <= metrics["recall_at_budget"] <= 1.0
            if level == "rates+volumes":
                assert metrics["test_domains"] > metrics["test_positives"] > 0
                assert metrics["fp_per_day_upper95"] >= metrics["fp_per_day"] >= 0
            else:
                assert "test_domains" not in metrics and "fp_per_day" not in metrics
        assert entry["train"]["status"] == "aggregated"
        assert entry["train"]["results"] == len(_site_ids(small_federation))
        assert (out / "checkpoints" / f"round-{entry['round']:03d}.npz").is_file()
    assert (out / "model.npz").is_file()
    stdout = results["_stdout"]
    selected = results["selection"]
    assert selected["signal"] == "pauc_fpr_1e-3" and 1 <= selected["round"] <= ROUNDS
    assert (out / "model-selected.npz").read_bytes() == (
        out / "checkpoints" / f"round-{selected['round']:03d}.npz"
    ).read_bytes()
    assert f"selected model: {out / 'model-selected.npz'} (round {selected['round']}" in stdout
    assert re.search(rf"round {ROUNDS}/{ROUNDS}: 4 sites, mean AUC", stdout)
    assert "per-site fragility" in stdout and "federation report:" in stdout
    assert (out / "report.html").is_file() and (out / "report.json").is_file()
    for site in _site_ids(small_federation):
        fragility = small_federation / site / "work" / "fragility"
        assert (fragility / f"round-{ROUNDS:03d}.json").is_file()
        assert (fragility / f"round-{ROUNDS:03d}.html").is_file()


def _arrays(path: Path) -> list[np.ndarray]:
    from common.model import model_from_bytes, model_to_ndarrays

    model, _ = model_from_bytes(path.read_bytes())
    return model_to_ndarrays(model)


def test_secagg_aggregate_equals_plain_weighted_mean(runs):
    """Same seeds, same deltas: the SecAgg+ round-1 model matches FedAvg within quantization.

    Each site quantizes weight_ratio * delta with one step of error at most; the server
    divides the sum by the total ratio, so the bound is sites * step / sum(ratios).
    """
    secagg = _arrays(runs["secagg"][0] / "checkpoints" / "round-001.npz")
    fedavg = _arrays(runs["fedavg"][0] / "checkpoints" / "round-001.npz")
    results = runs["secagg"][1]
    max_weight = results["config"]["max-weight"]
    weights = [m["num_examples"] for m in results["rounds"][0]["train"]["sites"].values()]
    assert weights and weights == [
        m["num_examples"] for m in runs["fedavg"][1]["rounds"][0]["train"]["sites"].values()
    ]
    bound = len(weights) * QUANTIZATION_STEP / (sum(weights) / max_weight)
    assert len(secagg) == len(fedavg) > 0
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(secagg, fedavg, strict=True))
    assert worst <= bound + 1e-7, (worst, bound)
    from common.model import ModelSpec, build_model, model_to_ndarrays

    initial = model_to_ndarrays(build_model(ModelSpec(), seed=results["config"]["seed"]))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(secagg, initial, strict=True))
    assert moved > 100 * bound  # round 1 really moved the model: the check has teeth


# Share levels of the audited run; site-01 also raises in round 1's training.
LEVELS = {"site-00": "rates+volumes", "site-01": "none", "site-02": "rates"}
FAILING = "site-01"


@pytest.fixture(scope="module")
def audited_run(small_federation, tmp_path_factory) -> tuple[Path, dict]:
    """One SecAgg+ run that keeps every reply's bytes, with mixed share levels and a site that
    raises in round 1 (errors must pass the same checks as any other reply)."""
    base = tmp_path_factory.mktemp("audited")
    data = base / "data"
    shutil.copytree(small_federation, data, ignore=shutil.ignore_patterns("work"))
    for site, level in LEVELS.items():
        config = data / site / "site.toml"
        text = config.read_text()
        config.write_text(re.sub(r'level = "[^"]*"', f'level = "{level}"', text))
    results = _simulate(
        data,
        base / "run",
        base,
        "--mode",
        "secagg",
        "--set",
        "audit-replies=true",
        "--set",
        f"fail-sites={FAILING}",
        "--set",
        "fail-rounds=1",
    )
    return data, results


def test_site_raising_in_training_is_dropped_and_round_completes(audited_run):
    small_federation, results = audited_run
    first, second = results["rounds"]
    assert first["train"]["status"] == "aggregated"
    assert first["train"]["results"] == 3 and first["train"]["failures"] >= 1
    assert "site-01" not in first["train"]["sites"]
    assert second["train"]["results"] == 4  # it rejoins the next round
    assert set(first["sites"]) == _site_ids(small_federation)  # everyone still evaluates


def _domain_runs(payload: bytes) -> list[str]:
    return [m.decode() for m in re.findall(rb"[a-z0-9._-]{6,}", payload)]


def _leaks(payload: bytes, names: set[str]) -> set[str]:
    """Every substring of every name-like run checked against the site's names (brute force)."""
    found = set()
    for run in _domain_runs(payload):
        for start in range(len(run)):
            for end in range(start + 6, len(run) + 1):
                if run[start:end] in names:
                    found.add(run[start:end])
    return found


def _evaluate_reply_keys(paths: list[Path]) -> list[set[str]]:
    """Decode the audited evaluate replies exactly as the coordinator would."""
    from flwr.common.serde import recorddict_from_proto
    from flwr.compat.common.recorddict_compat import recorddict_to_evaluateres
    from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

    assert paths, "no evaluate reply was audited"
    keys = []
    for path in paths:
        content = recorddict_from_proto(ProtoRecordDict.FromString(path.read_bytes()))
        metrics = recorddict_to_evaluateres(content).metrics
        keys.append(set(metrics) - {"site-id"})
    return keys


def _site_names(site: Path) -> set[str]:
    from client.pipeline import prepare_site

    data = prepare_site(site, work_dir=site / "work").require_data()
    return {
        n
        for part in (
            data.train.domains,
            data.test.domains,
            data.train.registered,
            data.test.registered,
        )
        for n in part.tolist()
        if len(n) >= 6
    }


def test_no_domain_leaves_a_site(audited_run):
    data, results = audited_run
    levels = LEVELS
    assert results["rounds"][-1]["sites"]["site-01"] == {"ack": 1.0}
    for site in sorted(p for p in data.iterdir() if (p / "site.toml").is_file()):
        replies = sorted((site / "work" / "audit").glob("*.bin"))
        kinds = {path.name.split("-")[0] for path in replies}
        assert {"train", "evaluate"} <= kinds, kinds
        # SecAgg+ sends four train replies per round (setup, share keys, masked vector, unmask);
        # the failing site sends two in its failed round, then raises instead of the vector.
        train_replies = sum(path.name.startswith("train") for path in replies)
        assert train_replies == 4 * ROUNDS - (2 if site.name == FAILING else 0), site.name
        evaluate_keys = _evaluate_reply_keys([p for p in replies if p.name.startswith("evaluate")])
        level = levels.get(site.name, _share_level(site))
        for keys in evaluate_keys:
            if level == "none":
                assert keys == {"ack"}
            else:
                assert "auc" in keys and keys <= SHARE_KEYS[level] | {
                    k for k in keys if k.startswith("recall_family_")
                }
                if level == "rates":
                    assert not keys & {"fp_per_day", "test_domains", "analyst_hours_per_day"}
        payload = b"".join(path.read_bytes() for path in replies)
        names = _site_names(site)
        assert len(names) > 100
        assert _leaks(payload, names) == set()
        planted = sorted(names)[0]
        assert planted in _leaks(payload + b"\x00" + planted.encode(), names)  # the check can fail


def test_killed_run_resumes_to_the_same_final_model(runs, volume_federation, tmp_path):
    """FedAvg is deterministic: kill mid-run, resume, and the final model is bit-identical to
    the uninterrupted FedAvg run of `runs` (same sites, rounds and steps)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import fedsec_env, kill_started

    rounds = str(ROUNDS)
    straight = runs["fedavg"][0]
    broken = tmp_path / "broken"
    command = [
        sys.executable,
        "-m",
        "fedsec",
        "simulate",
        "--data",
        str(volume_federation),
        "--out",
        str(broken),
        "--rounds",
        rounds,
        "--local-steps",
        STEPS,
        "--mode",
        "fedavg",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=fedsec_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        state = broken / "checkpoints" / "round-001.state.json"
        while not state.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert state.exists(), "round 1 never completed"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the run's process group
        process.wait(timeout=60)
        kill_started(tmp_path)  # Ray daemons leave the group: find them by their FLWR_HOME
    done_before = sorted(p.name for p in (broken / "checkpoints").glob("round-*.npz"))
    assert f"round-{ROUNDS:03d}.npz" not in done_before
    result = run_fedsec(["simulate", "--out", str(broken), "--resume"], tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "resuming after round" in result.stdout
    resumed = json.loads((broken / "results.json").read_text())
    assert [r["round"] for r in resumed["rounds"]] == list(range(1, ROUNDS + 1))
    final, reference = _arrays(broken / "model.npz"), _arrays(straight / "model.npz")
    assert all(np.array_equal(a, b) for a, b in zip(final, reference, strict=True))
