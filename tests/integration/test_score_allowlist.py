"""`fedsec score --site`: names the site's analysts judged benign do not alert there again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from client.scoring import score_command
from client.triage import hosts_path, read_alerts, read_host_groups
from client.verdicts import append_verdict, make_verdict, verdicts_path
from common.model import ModelSpec, build_model, model_to_bytes


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("allowlist") / "sites"
    return generate_sites(out_dir=out, n_sites=1, n_days=2, seed=3, scale=0.05)[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    path.write_bytes(model_to_bytes(build_model(ModelSpec(), seed=0)))
    return path


def _score(site: Path, model_path: Path, out: Path) -> int:
    return score_command(
        model=model_path, logs=[site / "logs"], out=out, site_dir=site, threshold=0.0
    )


def test_benign_verdicts_stop_alerting_and_are_counted(site, model_path, tmp_path, capsys):
    shutil.rmtree(site / "work", ignore_errors=True)
    before = tmp_path / "before.jsonl"
    assert _score(site, model_path, before) == 0
    alerts = read_alerts(before)
    benign, malicious, later = alerts[0]["domain"], alerts[1]["domain"], alerts[2]["domain"]
    path = verdicts_path(site)
    append_verdict(
        path, make_verdict(analyst="a", subject="domain", target=benign, verdict="benign")
    )
    append_verdict(
        path, make_verdict(analyst="a", subject="domain", target=malicious, verdict="malicious")
    )
    append_verdict(
        path, make_verdict(analyst="a", subject="domain", target=later, verdict="benign")
    )
    append_verdict(
        path, make_verdict(analyst="b", subject="domain", target=later, verdict="unsure")
    )
    with path.open("a") as stream:
        stream.write("not a verdict\n")
    capsys.readouterr()

    after = tmp_path / "after.jsonl"
    assert _score(site, model_path, after) == 0
    printed = capsys.readouterr().out
    names = {alert["domain"] for alert in read_alerts(after)}
    assert benign not in names  # judged benign: the site's own allowlist
    assert {malicious, later} <= names  # malicious stays; 'unsure' withdrew the benign verdict
    assert len(names) == len(alerts) - 1
    grouped = {name for group in read_host_groups(hosts_path(after)) for name in group["names"]}
    assert benign not in grouped
    assert f"left out 1 alerting name(s) this site's analysts judged benign ({path})" in printed
    quarantined = (tmp_path / "after.jsonl.quarantine" / "verdicts.jsonl.tsv").read_text()
    assert quarantined.splitlines()[1].startswith("5\t")  # the bad verdict line, by number


def test_without_a_site_no_allowlist_applies(site, model_path, tmp_path, capsys):
    append_verdict(
        verdicts_path(site),
        make_verdict(analyst="a", subject="domain", target="x-judged.example", verdict="benign"),
    )
    out = tmp_path / "alerts.jsonl"
    code = score_command(
        model=model_path, logs=[site / "logs"], out=out, site_dir=None, threshold=0.0
    )
    assert code == 0
    assert "judged benign" not in capsys.readouterr().out
