"""Analysts' verdicts feed the next round: labels, hard negatives, figures, fingerprint, guard.

One tiny generated site (3 days: two train, one test) per module; each test writes its own
verdict file into a fresh copy of that site, so tests never see each other's verdicts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity

from client.audit import LeakError, make_reply_guard
from client.check import check_site
from client.dataset import ANALYST_FAMILY
from client.domains import registered_domain
from client.fragility_html import metric_tables
from client.pipeline import _fingerprint, load_site, prepare_site
from client.quarantine import Quarantine
from client.site import load_intel, load_site_config
from client.verdicts import append_verdict, local_allowlist, make_verdict, verdicts_path
from client.worker import site_fingerprint
from common.model import CharCNN, build_model, model_to_ndarrays
from common.share import SHARE_LEVELS, share_subset
from common.training import TrainConfig, required_schedule

NEW_BENIGN = "cdn-judged-benign-7781.example.net"  # in no log, on no list
NEW_MALICIOUS = "qxkzvbwplrtm-judged.example.org"
HOST = "10.77.1.23"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("feedback") / "sites"
    generate_sites(out_dir=out, n_sites=1, n_days=3, seed=5, scale=0.05)
    return out / "site-00"


@pytest.fixture()
def site(generated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "site"
    shutil.copytree(generated, copy, ignore=shutil.ignore_patterns("work"))
    return copy


def judge(site: Path, verdict: str, *names: str, subject: str = "domain", target: str = "") -> None:
    append_verdict(
        verdicts_path(site),
        make_verdict(
            analyst="alice",
            subject=subject,
            target=target or names[0],
            verdict=verdict,
            names=list(names),
            why="test",
        ),
    )


def label_of(examples, name: str) -> tuple[int, str] | None:
    rows = np.flatnonzero(examples.domains == name)
    return None if rows.size == 0 else (int(examples.labels[rows[0]]), examples.families[rows[0]])


def test_verdicts_label_training_over_the_intel_and_leave_the_test_alone(site: Path) -> None:
    before = prepare_site(site).require_data()
    negative = before.train.domains[before.train.labels == 0][0]
    positive = before.train.domains[before.train.labels == 1][0]
    test_only = next(n for n in before.test.domains if n not in set(before.train.domains))
    withdrawn = before.train.domains[before.train.labels == 0][1]
    judge(site, "malicious", negative)
    judge(site, "benign", positive)
    judge(site, "benign", NEW_BENIGN, test_only, subject="host", target=HOST)
    judge(site, "malicious", NEW_MALICIOUS)
    judge(site, "malicious", withdrawn)
    judge(site, "unsure", withdrawn)  # the latest verdict withdraws the label

    after = prepare_site(site).require_data()
    assert label_of(after.train, negative) == (1, ANALYST_FAMILY)
    assert label_of(after.train, positive) == (0, "")
    assert label_of(after.train, NEW_BENIGN) == (0, "")
    assert label_of(after.train, NEW_MALICIOUS) == (1, ANALYST_FAMILY)
    assert label_of(after.train, withdrawn) == label_of(before.train, withdrawn)
    assert label_of(after.train, test_only) is None  # a test-day name never trains
    # The test days keep the intel's examples and labels: nothing of the verdicts reaches them.
    assert after.test.domains.tolist() == before.test.domains.tolist()
    assert after.test.labels.tolist() == before.test.labels.tolist()
    assert set(after.train.registered) & set(after.test.registered) == set()
    judged = {negative, positive, NEW_BENIGN, NEW_MALICIOUS}
    assert set(after.train.domains[after.verdict_rows]) == judged
    assert set(after.train.domains[after.hard_negatives]) == {positive, NEW_BENIGN}
    assert NEW_MALICIOUS not in set(after.intel_only.domains)


def test_contradictions_with_the_intel_are_counted_and_listed(site: Path) -> None:
    with Quarantine(site / "scratch-quarantine") as quarantine:
        intel = load_intel(site, load_site_config(site), quarantine=quarantine)
    allowed = next(name for name in sorted(intel.allowlist) if registered_domain(name) == name)
    under_allowed = "zz-judged-sub." + registered_domain(allowed)  # allowlisted by its domain
    blocked = sorted(intel.blocklist)[0]
    judge(site, "malicious", allowed)
    judge(site, "malicious", under_allowed)
    judge(site, "benign", blocked)
    judge(site, "benign", NEW_BENIGN)  # unlisted: no contradiction
    with verdicts_path(site).open("a") as stream:
        stream.write('{"verdict": "maybe"}\nnot json\n')

    prepared = prepare_site(site)
    figures = prepared.quality.report.verdicts
    assert (figures.malicious, figures.benign, figures.unsure) == (2, 2, 0)
    assert (figures.contradict_allowlist, figures.contradict_blocklist) == (2, 1)
    assert figures.contradict_intel == 3 and figures.quarantined == 2 and figures.lines_read == 6
    assert prepared.quality.verdict_contradictions == {
        allowed: "benign",
        under_allowed: "benign",
        blocked: "dga",
    }
    metrics = prepared.quality.report.metrics()
    assert metrics["dqa_verdicts_contradict_intel"] == 3.0
    assert metrics["dqa_verdicts_quarantined"] == 2.0
    assert metrics["dqa_verdicts_not_in_logs"] >= 2.0
    quarantined = prepared.quality.quarantine_files[str(verdicts_path(site))].read_text()
    assert "\n5\t" in quarantined and "\n6\t" in quarantined  # with their line numbers
    # The verdicts label training but are not a reason to refuse it.
    assert not any("verdict" in problem for problem in prepared.quality.problems)


def test_verdict_counts_never_leave_the_site(site: Path) -> None:
    judge(site, "benign", NEW_BENIGN)
    metrics = prepare_site(site).quality.report.metrics()
    assert metrics["dqa_verdicts_benign"] == 1.0
    for level in SHARE_LEVELS:
        assert not [key for key in share_subset(metrics, level=level) if "verdict" in key]
    # The site's own fragility page shows them, each marked as not sent.
    page = metric_tables(metrics, share_subset(metrics, level="rates+volumes"))
    section = page.split("Analysts&#x27; verdicts (local only)", 1)[1].split("<h3>", 1)[0]
    for key in ("benign", "malicious", "unsure", "contradict_intel", "quarantined", "not_in_logs"):
        assert f"dqa_verdicts_{key}" in section
    assert "not sent" in section


def _rows_seen_in_training(site: Path, rounds: int) -> list[set[bytes]]:
    """Every encoded name each round's local training fed to the model."""
    from client import local
    from common.run_config import RunSettings

    seen: list[set[bytes]] = []

    def record(module, args):
        if isinstance(module, CharCNN) and module.training:
            seen[-1].update(row.tobytes() for row in args[0].numpy())

    settings = RunSettings(local_steps=3, batch_size=16)
    prepared = load_site(site)
    arrays = model_to_ndarrays(build_model(local.SPEC, seed=0))
    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        for server_round in range(1, rounds + 1):
            seen.append(set())
            local.train_round(
                prepared, global_arrays=arrays, settings=settings, server_round=server_round
            )
    finally:
        handle.remove()
    return seen


def test_benign_verdicts_are_in_every_rounds_training_sample(site: Path) -> None:
    data = prepare_site(site).require_data()
    negatives = data.train.domains[data.train.labels == 0][-10:].tolist()
    judge(site, "benign", *negatives, subject="host", target=HOST)
    prepared = load_site(site)
    from client.local import SPEC

    hard = prepared.require_data().hard_negatives
    assert len(hard) == 10
    wanted = {row.tobytes() for row in prepared.encoded(SPEC).train[hard]}
    # 3 steps of 16 draw ~24 negatives of ~1,100: without the rule these 10 are rarely all in.
    for seen in _rows_seen_in_training(site, rounds=2):
        assert wanted <= seen


def test_more_required_rows_than_fit_take_a_fresh_subset_each_call() -> None:
    config = TrainConfig(steps=3, batch_size=16)  # 4 per batch, 12 per call
    required = np.arange(100, 150)
    draws = [
        np.concatenate(required_schedule(required, rows=200, config=config, generator=rng))
        for rng in (np.random.default_rng(1), np.random.default_rng(2))
    ]
    rng = np.random.default_rng(0)
    for drawn in draws:
        assert drawn.size == 12 and len(set(drawn.tolist())) == 12
        assert set(drawn.tolist()) <= set(required.tolist())
    assert set(draws[0].tolist()) != set(draws[1].tolist())
    with pytest.raises(ValueError, match="required_rows"):
        required_schedule(np.array([200]), rows=200, config=config, generator=rng)


def test_a_new_verdict_changes_the_fingerprint_and_reprepares_the_site(site: Path) -> None:
    first = load_site(site)
    assert load_site(site) is first
    before, published = _fingerprint(site), site_fingerprint(site)
    judge(site, "benign", NEW_BENIGN)
    assert _fingerprint(site) != before
    assert site_fingerprint(site) != published  # a warm worker's guard names are stale now
    second = load_site(site)
    assert second is not first
    assert label_of(second.require_data().train, NEW_BENIGN) == (0, "")
    judge(site, "malicious", NEW_BENIGN)  # an append changes the size: read again
    assert label_of(load_site(site).require_data().train, NEW_BENIGN) == (1, ANALYST_FAMILY)


def test_fedsec_check_shows_the_verdict_figures(site: Path) -> None:
    lines, code = check_site(site)
    assert code == 0 and any(line.startswith("verdicts: none yet") for line in lines)
    train = prepare_site(site).require_data().train
    blocked = train.domains[train.labels == 1][0]
    judge(site, "benign", blocked)
    judge(site, "malicious", NEW_MALICIOUS)
    judge(site, "unsure", NEW_BENIGN)
    with verdicts_path(site).open("a") as stream:
        stream.write("{broken\n")
    lines, code = check_site(site)
    text = "\n".join(lines)
    assert code == 0
    assert (
        "verdicts.jsonl: 4 lines read, 1 quarantined; names by latest verdict: "
        "malicious 1, benign 1, unsure 1" in text
    )
    assert "contradict the intel: 1 (malicious but allowlisted 0, benign but blocklisted 1)" in text
    assert "not in the logs 1; training examples labelled by a verdict 2" in text
    assert f"    {blocked}: judged benign, blocklisted" in text
    assert "quarantined lines in" in text and "verdicts.jsonl.tsv" in text
    assert "never: the analysts' verdicts" in text


def _message() -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    return Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=7,
        message_type=MessageType.EVALUATE,
        group_id="1",
    )


@pytest.mark.parametrize("leaked", [NEW_MALICIOUS, "cdn-judged-benign-7781_example_net", HOST])
def test_the_reply_guard_withholds_a_judged_name_or_host(site: Path, leaked: str) -> None:
    from client import app

    judge(site, "malicious", NEW_MALICIOUS)
    judge(site, "benign", NEW_BENIGN, subject="host", target=HOST)
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"site-dir": str(site)},
        state=RecordDict(),
        run_config={},
    )
    guard = make_reply_guard(site_names=app._site_names, audit_dir=lambda _: None)

    def leaking(msg, _context):
        return Message(RecordDict({"m": ConfigRecord({"note": f"see {leaked}"})}), reply_to=msg)

    def clean(msg, _context):
        return Message(RecordDict({"m": MetricRecord({"auc": 0.9})}), reply_to=msg)

    with pytest.raises(LeakError, match="withheld"):
        guard(_message(), context, leaking)
    assert guard(_message(), context, clean).content["m"]["auc"] == 0.9


def test_benign_verdicts_are_the_sites_local_allowlist(site: Path) -> None:
    assert local_allowlist(site) == frozenset()
    judge(site, "benign", NEW_BENIGN, NEW_MALICIOUS, subject="host", target=HOST)
    judge(site, "malicious", NEW_MALICIOUS)  # changed their mind: alerts again
    assert local_allowlist(site) == {NEW_BENIGN}
    judge(site, "unsure", NEW_BENIGN)
    assert local_allowlist(site) == frozenset()
