"""The scan of `fedsec evaluate`: days found in any order, older days folded as soon as they are
known to be training days, and the small facts it keeps equal to what the whole logs give."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from client.dataset import held_out, intel_only_examples
from client.domains import registered_domain
from client.evaluate import DayScan, EvaluationScorer, day_index, label_names
from client.quarantine import Quarantine
from client.scoring import StageClock
from client.site import Intel
from common.config import parse_site_config
from common.model import ModelSpec, build_model
from common.training import predict_scores

DAY = 86_400
INTEL = Intel(
    blocklist={"evil.com": "hexhash", "x.bad.org": "cvsyll", "both.net": "hexhash"},
    allowlist=frozenset({"good.com", "both.net"}),
)


def config(unlisted: str = "benign"):
    return parse_site_config(
        {
            "site_id": "scan-site",
            "logs": {"paths": ["logs/*"]},
            "labels": {"unlisted": unlisted},
            "split": {"holdout_fraction": 0.2},
            "deployment": {"benign_events_per_day": 1.0e6, "base_rate": 1e-3},
            "analysts": {"count": 2, "productive_hours_per_day": 5.6, "minutes_per_alert": 20},
        },
        source="scan-site.toml",
    )


def day_names(day: int) -> list[str]:
    benign = [f"host{i}-d{day}.example{i % 7}.com" for i in range(40)]
    listed = [f"a{day}.evil.com", "x.bad.org", f"y{day}.bad.org", "both.net", "www.good.com"]
    return [*benign, *listed, "UPPER.Example0.COM."]


def block(day: int, names: list[str]) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([day * DAY + 60.0 * i for i in range(len(names))], pa.float64()),
            "query": pa.array(names, pa.string()),
            "line": pa.array(range(1, len(names) + 1), pa.int64()),
        }
    )


def scanned(days: list[int], *, test_days: int, sample_size: int) -> DayScan:
    scan = DayScan(INTEL, config=config(), test_days=test_days, sample_size=sample_size)
    clock = StageClock(scan.summary.seconds)
    for number, day in enumerate(days):
        scan.add(block(day, day_names(day)), source=Path(f"log-{number}"), clock=clock)
    return scan


def usable(name: str) -> bool:
    registered = registered_domain(name)
    if held_out(registered, site_id="scan-site", fraction=0.2):
        return False
    return INTEL.lookup(name, registered)[0] in ("dga", "benign", "unlisted")


def test_day_index_is_the_utc_day() -> None:
    assert day_index(pa.array([0.0, DAY - 0.5, DAY, None])).to_pylist() == [0, 0, 1, None]


@pytest.mark.parametrize("order", [[10, 11, 12, 13], [13, 11, 10, 12, 11]])
def test_older_days_fold_and_the_sample_is_the_bottom_k_of_training_names(order) -> None:
    scan = scanned(order, test_days=1, sample_size=7)
    assert scan.days == {10, 11, 12, 13}
    assert set(scan.recent) == {13}  # only the newest day is kept apart
    assert scan.file_days["log-0"] == {order[0]}
    training = scan.training_facts([13])
    names = {name.lower().rstrip(".") for day in (10, 11, 12) for name in day_names(day)}
    expected = sorted((zlib.crc32(name.encode()), name) for name in names if usable(name))[:7]
    assert sorted((hash_, name) for name, hash_ in training.sample.items()) == expected
    positives = {
        INTEL.lookup(name, registered_domain(name))[1]
        for name in names
        if usable(name) and INTEL.lookup(name, registered_domain(name))[0] == "dga"
    }
    assert training.families == positives
    # Every logged name counts for the intel-only names, test days included.
    logged = {name.lower().rstrip(".") for day in order for name in day_names(day)}
    assert intel_only_examples(INTEL, set(scan.logged_listed)).domains.tolist() == (
        intel_only_examples(INTEL, logged).domains.tolist()
    )


def test_labels_leave_out_conflicts_and_apply_the_unlisted_policy() -> None:
    table = pa.table(
        {
            "name": ["a.evil.com", "both.net", "plain.org", "www.good.com"],
            "count": pa.array([3, 1, 2, 5], pa.int64()),
            "score": [0.9, 0.5, 0.2, 0.1],
        }
    )
    benign = label_names(table, INTEL, unlisted_benign=True)
    assert benign.test.domains.tolist() == ["a.evil.com", "plain.org", "www.good.com"]
    assert benign.test.labels.tolist() == [1, 0, 0]
    assert benign.test.families.tolist() == ["hexhash", "", ""]
    assert benign.test.query_counts.tolist() == [3, 2, 5]
    assert benign.scores.tolist() == [0.9, 0.2, 0.1]
    assert benign.conflicts == 1 and benign.unlisted_ignored == 0
    ignored = label_names(table, INTEL, unlisted_benign=False)
    assert ignored.test.domains.tolist() == ["a.evil.com", "www.good.com"]
    assert ignored.unlisted_ignored == 1


def test_scorer_keeps_test_days_only_and_merges_names_across_blocks(tmp_path: Path) -> None:
    model = build_model(ModelSpec(), seed=0)
    with Quarantine(tmp_path / "q") as quarantine:
        scorer = EvaluationScorer(
            model, days=[12], quarantine=quarantine, cache_size=3, compact_rows=4
        )
        clock = StageClock(scorer.summary.seconds)
        try:
            for day in (11, 12, 12):
                scorer.add(block(day, day_names(day)), source=Path("log"), clock=clock)
            scorer.finish()
        finally:
            scorer.close()
    table = scorer.names_table()
    names = table["name"].to_pylist()
    assert names == sorted({name.lower().rstrip(".") for name in day_names(12)})
    counts = dict(zip(names, table["count"].to_pylist(), strict=True))
    assert counts["x.bad.org"] == 2 and counts["upper.example0.com"] == 2
    assert scorer.test_day_records == 2 * len(day_names(12))
    assert scorer.cache.evictions > 0
    direct = predict_scores(model, domains=model.spec.encode(names))
    np.testing.assert_allclose(table["score"].to_numpy(), direct, atol=1e-5)
