"""`fedsec experiment analyst-loop`: simulated analysts judge alerts; the next round trains on them.

The tiny run (two sites, two rounds, both arms, real ServerApp and ClientApp in one process)
must leave verdicts at every loop-arm site and none in the other arm, and the loop arm's next
prepared training set must carry them; the results must hold every round of every arm,
including the test day's operational queue, where a name judged benign that recurs on the test
day must not alert again (the site's local allowlist, as `fedsec score --site` applies it).
The fast tests pin the harness's pieces: truth lookup, the simulated analyst's answers, the
day each round reviews, and the check that stops the experiment when verdicts do not reach
training.
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
    assert "Headline: false-positive alerts on the site's test day" in table
    assert "Held-out evaluation set: with minus without the loop" in table
    assert "with the loop" in table
    assert table.index("Headline:") < table.index("Held-out evaluation set: with minus")
    assert json.loads((folder / "results.json").read_text())["size"] == "tiny"


@slow
def test_every_round_and_arm_has_the_test_days_queue(outputs):
    """Both cut points, every round, every arm: labelled alerts, the budget queue, the hours,
    the allowlist's removals; the operating threshold is the round's own fragility figure."""
    _, _, payload = outputs
    shape = analyst_loop.SIZES["tiny"]
    rows = payload["rows"]
    assert len(rows) == len(analyst_loop.ARMS) * shape.sites * shape.rounds
    for row in rows:
        for point in analyst_loop.QUEUE_POINTS:
            get = {k: row[analyst_loop.queue_key(point, k)] for k in analyst_loop.QUEUE_KEYS}
            assert get["alerts"] == get["fp_alerts"] + get["true_alerts"] + get["unknown_alerts"]
            assert 0 <= get["queue_fp_alerts"] <= get["fp_alerts"]
            assert get["clear_hours"] >= 0 and get["allowlisted"] >= 0
            if row["arm"] == "without" or row["round"] == 1:
                assert get["allowlisted"] == 0, row  # no verdicts: an empty allowlist
        assert row[analyst_loop.queue_key("op", "threshold")] == row["threshold"]
        assert row[analyst_loop.queue_key("fixed", "threshold")] == analyst_loop.TRIAGE_THRESHOLD
    assert any(r[analyst_loop.queue_key("fixed", "alerts")] > 0 for r in rows)
    for entry in payload["last_round"]:
        diff = entry["diff_" + analyst_loop.queue_key("fixed", "fp_alerts")]
        assert diff == entry["allowlist_part_fixed"] + entry["model_part_fixed"]


@slow
def test_a_name_judged_benign_that_recurs_on_the_test_day_does_not_alert_again(outputs):
    """Round 2's test day, loop arm: names judged benign after round 1 that alerted on the test
    day at round 1 (so they recur there) are left out by the allowlist, and counted."""
    from client.verdicts import local_allowlist

    _, keep, payload = outputs
    with_rows = {r["site"]: r for r in payload["rows"] if r["arm"] == "with" and r["round"] == 2}
    for site_dir in sorted(p for p in (keep / "with" / "sites").iterdir() if p.is_dir()):
        queue = keep / "with" / "queue" / site_dir.name
        benign = local_allowlist(site_dir)
        before = _alerting(queue / "round-001" / "fixed" / "alerts.jsonl")
        recurring = benign & before
        assert recurring, f"{site_dir.name}: no judged-benign name alerted on the test day"
        for point in analyst_loop.QUEUE_POINTS:
            after = _alerting(queue / "round-002" / point / "alerts.jsonl")
            assert not recurring & after, (site_dir.name, point, sorted(recurring & after)[:5])
        assert with_rows[site_dir.name][analyst_loop.queue_key("fixed", "allowlisted")] > 0


def _alerting(path):
    with path.open(encoding="utf-8") as handle:
        return {json.loads(line)["domain"] for line in handle if line.strip()}


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


def test_each_round_reviews_another_training_day_newest_first(tmp_path, monkeypatch):
    """One day reviewed over and over runs the list dry after round 1; the test day is never
    reviewed, and it alone is what the operational queue scores."""
    from types import SimpleNamespace

    import client.pipeline

    train, test = ["2026-01-01", "2026-01-02", "2026-01-03"], ["2026-01-04"]
    files = [tmp_path / f"dns.{day}.log.gz" for day in (*train, *test)]
    monkeypatch.setattr(client.pipeline, "log_files", lambda *_: files)
    data = SimpleNamespace(train_days=train, test_days=test)
    fake = SimpleNamespace(site_dir=tmp_path, config=None, require_data=lambda: data)
    days = [analyst_loop.training_day_files(fake, r)[0] for r in range(1, 6)]
    assert days == ["2026-01-03", "2026-01-02", "2026-01-01", "2026-01-03", "2026-01-02"]
    assert analyst_loop.training_day_files(fake, 2)[1] == [files[1]]
    assert analyst_loop.queue_day_files(fake) == ("2026-01-04", [files[-1]])


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
