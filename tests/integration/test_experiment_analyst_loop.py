"""`fedsec experiment analyst-loop`: simulated analysts judge alerts; the next round trains on them.

The tiny run (two sites, two rounds, both arms, real ServerApp and ClientApp in one process)
must leave verdicts at every loop-arm site and none in the other arm, and the loop arm's next
prepared training set must carry them; the results must hold every round of every arm. The
fast tests pin the harness's pieces: truth lookup, the simulated analyst's answers, and the
check that stops the experiment when verdicts do not reach training.
"""

from __future__ import annotations

import csv
import json

import pytest

from experiments import analyst_loop
from experiments.generator import generate_sites


def slow(test):
    """The tiny run: two arms of two real rounds, ~30 s of CPU (minutes on a loaded machine)."""
    return pytest.mark.slow(pytest.mark.timeout(900)(test))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    keep = tmp_path_factory.mktemp("arms")
    payload = analyst_loop.run(size="tiny", root=root, keep=keep)
    return root / analyst_loop.NAME, keep, payload


@slow
def test_loop_sites_receive_verdicts_and_the_other_arm_none(outputs):
    from client.verdicts import read_verdicts, verdicts_path

    _, keep, payload = outputs
    for arm, expect in (("with", True), ("without", False)):
        sites = sorted(p for p in (keep / arm / "sites").iterdir() if p.is_dir())
        assert len(sites) == analyst_loop.SIZES["tiny"].sites
        for site in sites:
            entries = read_verdicts(verdicts_path(site)).entries
            assert bool(entries) is expect, (arm, site.name)
            assert all(e.analyst == analyst_loop.ANALYST for e in entries)
    reviews = payload["reviews"]
    assert {r["arm"] for r in reviews} == {"with"}
    assert all(0 < r["reviewed"] <= r["budget"] for r in reviews), reviews
    assert all(r["malicious"] > 0 and r["benign"] > 0 for r in reviews), reviews


@slow
def test_next_round_training_labels_carry_the_verdicts(outputs):
    from client.pipeline import prepare_site
    from client.verdicts import read_verdicts, verdicts_path

    _, keep, payload = outputs
    for site_dir in sorted(p for p in (keep / "with" / "sites").iterdir() if p.is_dir()):
        labels = read_verdicts(verdicts_path(site_dir)).labels()
        data = prepare_site(site_dir, work_dir=keep / "check" / site_dir.name).require_data()
        train = dict(zip(data.train.domains.tolist(), data.train.labels.tolist(), strict=True))
        judged = [name for name in labels if name in train]
        assert judged, site_dir.name
        for name in judged:
            assert train[name] == int(labels[name] == "malicious"), name
        assert len(data.verdict_rows) == len(judged)
    checks = payload["feedback_checks"]
    assert {c["round"] for c in checks} == {1}  # after every round but the last
    for check in checks:
        assert check["in_train"] == check["train_label_is_verdict"] > 0
        assert check["relabelled_in_train"] == check["relabelled_carried"]


@slow
def test_results_hold_every_round_and_arm(outputs):
    folder, _, payload = outputs
    shape = analyst_loop.SIZES["tiny"]
    for name in ("results.json", "rounds.csv", "last_round.csv", "reviews.csv", "table.md"):
        assert (folder / name).is_file(), name
    assert (folder / "fp_per_day.png").stat().st_size > 0
    with (folder / "rounds.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    seen = {(r["arm"], r["site"], int(r["round"])) for r in rows}
    sites = {r["site"] for r in rows}
    assert len(sites) == shape.sites
    assert seen == {
        (arm, site, rnd)
        for arm in analyst_loop.ARMS
        for site in sites
        for rnd in range(1, shape.rounds + 1)
    }
    for row in payload["rows"]:
        assert row["fp_per_day_upper95"] >= row["fp_per_day"] >= 0
        assert row["alert_budget_per_day"] > 0
    with_rows = [r for r in payload["rows"] if r["arm"] == "with" and r["round"] == 2]
    assert all(r["verdicts_malicious"] + r["verdicts_benign"] > 0 for r in with_rows)
    assert all(row["same_test_set"] for row in payload["last_round"])
    table = (folder / "table.md").read_text()
    assert "With minus without the loop" in table and "with the loop" in table
    assert json.loads((folder / "results.json").read_text())["size"] == "tiny"


# --- fast: the harness's pieces ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen") / "sites"
    generate_sites(out_dir=root, n_sites=1, n_days=2, seed=3, scale=0.05)
    return root, root / "site-00"


def test_truth_is_read_normalised_and_the_analyst_answers_from_it(tmp_path):
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text(
        "domain,label,family\nQxKz.Example.,dga,randalpha\nwww.example.com,benign,\n"
    )
    truth = analyst_loop.read_truth(truth_csv)
    assert truth == {"qxkz.example": "randalpha", "www.example.com": ""}
    answers = analyst_loop.judge(["qxkz.example", "www.example.com", "never.seen"], truth)
    assert answers == {
        "malicious": ["qxkz.example"],
        "benign": ["www.example.com"],
        "unsure": ["never.seen"],
    }


def test_the_analyst_scores_a_training_day_never_the_test_day(site):
    from client.pipeline import prepare_site

    _, site_dir = site
    prepared = prepare_site(site_dir, work_dir=site_dir.parent / "w1")
    day, files = analyst_loop.training_day_files(prepared)
    data = prepared.require_data()
    assert day == data.train_days[-1] and day not in data.test_days
    assert files and all(day in f.name for f in files)
    assert not any(test in f.name for f in files for test in data.test_days)


def test_verdicts_that_do_not_reach_training_stop_the_experiment(site, monkeypatch):
    """A pipeline that ignores the verdict file (a stale prepared site) must fail loudly."""
    import client.pipeline
    from client.domains import registered_domain
    from client.verdicts import append_verdict, make_verdict, verdicts_path

    root, site_dir = site
    truth = analyst_loop.read_truth(root / "truth.csv")
    stale = client.pipeline.prepare_site(site_dir)
    data = stale.require_data()
    # A DGA name the intel left unlisted, judged malicious: training must label it positive.
    unlisted = [
        name
        for name, label in zip(data.train.domains, data.train.labels, strict=True)
        if truth.get(name) and label == 0 and registered_domain(name)
    ]
    assert unlisted, "the generated site has no DGA name its intel missed"
    append_verdict(
        verdicts_path(site_dir),
        make_verdict(
            analyst="t", subject="domain", target=unlisted[0], verdict="malicious", why="round 1"
        ),
    )
    assert analyst_loop.feedback_check(site_dir)["relabelled_carried"] == 1
    monkeypatch.setattr(client.pipeline, "load_site", lambda *a, **k: stale)
    with pytest.raises(analyst_loop.FeedbackMissing, match="client/pipeline.py"):
        analyst_loop.feedback_check(site_dir)


def test_a_failing_analyst_stops_the_federation_instead_of_becoming_an_error_reply():
    """LocalGrid turns a ClientApp's Exception into an error reply and the run goes on; the
    analyst's failure must escape it and be kept for the harness to raise after the run."""
    from types import SimpleNamespace

    reply = SimpleNamespace(has_error=lambda: False)
    message = SimpleNamespace(metadata=SimpleNamespace(message_type="evaluate"))

    def broken(message, context):
        raise analyst_loop.FeedbackMissing("verdicts ignored")

    wrapped = analyst_loop.AnalystClientApp(lambda **_: reply, broken)
    with pytest.raises(BaseException) as raised:
        wrapped(message=message, context=None)
    assert not isinstance(raised.value, Exception)  # passes LocalGrid's `except Exception`
    assert isinstance(wrapped.failure, analyst_loop.FeedbackMissing)
    train = SimpleNamespace(metadata=SimpleNamespace(message_type="train"))
    assert analyst_loop.AnalystClientApp(lambda **_: reply, broken)(message=train, context=None)
