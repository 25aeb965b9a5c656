"""`fedsec evaluate` end to end on a generated site: every distinct valid test-day name, labelled
from the intel, scored as the model scores it, with bounded state; bad input is one error line."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from client.domains import normalise_domain, registered_domain
from client.evaluate import (
    EVALUATION_KIND,
    PSI_SAMPLE,
    evaluate_command,
    evaluate_site,
    load_model,
    summary_lines,
)
from client.fragility_html import benign_names_needed
from client.pipeline import prepare_site
from client.quarantine import Quarantine
from client.readers import READERS
from client.site import load_intel, load_site_config
from common.model import ModelSpec, build_model, model_to_bytes
from common.training import predict_scores
from tests.conftest import run_fedsec

# Lines added to the last log day: two spellings of one name, two invalid names, a name on
# both intel lists, and a record of the day before that sits in the last day's file.
SPELLINGS = ("WWW.Mixed-Case-Example.COM.", "www.mixed-case-example.com")
INVALID = ("bad..name.com", "-leading-hyphen.example.com")
CONFLICT = "listed-twice-example.com"
STRAGGLER = "straggler-from-yesterday.com"


def _add_lines(path: Path, rows: list[tuple[float, str]]) -> None:
    """Insert Zeek data lines (copies of the first one with ts and query replaced)."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    template = next(line for line in lines if not line.startswith("#")).rstrip("\n").split("\t")
    close = next(i for i, line in enumerate(lines) if line.startswith("#close"))
    added = []
    for ts, query in rows:
        fields = list(template)
        fields[0], fields[9] = f"{ts:.6f}", query
        added.append("\t".join(fields) + "\n")
    path.write_bytes(gzip.compress("".join(lines[:close] + added + lines[close:]).encode()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("evaluate") / "sites"
    site = generate_sites(out_dir=out, n_sites=1, n_days=3, seed=11, scale=0.2)[0]
    logs = sorted((site / "logs").glob("dns.*.log.gz"))
    last_day = dt.datetime.strptime(logs[-1].name.split(".")[1], "%Y-%m-%d").replace(tzinfo=dt.UTC)
    noon = last_day.timestamp() + 12 * 3600
    rows = [(noon + i, name) for i, name in enumerate((*SPELLINGS, *INVALID, CONFLICT))]
    _add_lines(logs[-1], [*rows, (noon - 86_400, STRAGGLER)])
    with open(site / "intel" / "blocklist.csv", "a", encoding="utf-8") as handle:
        handle.write(f"{CONFLICT},hexhash\n")
    with open(site / "intel" / "allowlist.txt", "a", encoding="utf-8") as handle:
        handle.write(f"{CONFLICT}\n")
    return site


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    path.write_bytes(model_to_bytes(build_model(ModelSpec(), seed=0)))
    return path


def names_by_day(site: Path, tmp_path: Path) -> dict[str, Counter]:
    """Independently of the streaming path: whole-file reader, per-name normaliser, datetime."""
    per_day: dict[str, Counter] = {}
    for path in sorted((site / "logs").glob("dns.*.log.gz")):
        table, _ = READERS["zeek-tsv"](
            path, quarantine=Quarantine(tmp_path / "independent"), columns=("ts", "query")
        )
        for ts, raw in zip(table["ts"].to_pylist(), table["query"].to_pylist(), strict=True):
            name, _ = normalise_domain(raw)
            if name is not None:
                day = dt.datetime.fromtimestamp(ts, tz=dt.UTC).date().isoformat()
                per_day.setdefault(day, Counter())[name] += 1
    return per_day


@pytest.fixture(scope="module")
def evaluated(site: Path, model_path: Path, tmp_path_factory):
    """The CLI run through the typer app, in process; the report folder is the default."""
    from fedsec.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--model", str(model_path), "--site", str(site)])
    assert result.exit_code == 0, result.output
    report_path = site / "work" / "evaluate" / "fragility" / "round-000.json"
    return result.stdout, json.loads(report_path.read_text())


def test_every_distinct_valid_test_day_name_is_evaluated(site, model_path, tmp_path) -> None:
    per_day = names_by_day(site, tmp_path)
    last = sorted(per_day)[-1]
    model, _ = load_model(model_path)
    result = evaluate_site(model, site, out=tmp_path / "out", html=False)
    test = result.labelled.test
    assert result.test_days == (last,)
    assert result.distinct_names == len(per_day[last])
    assert set(test.domains.tolist()) | {CONFLICT} == set(per_day[last])
    assert result.conflicts == 1 and CONFLICT not in set(test.domains.tolist())
    assert STRAGGLER not in set(test.domains.tolist())
    counts = dict(zip(test.domains.tolist(), test.query_counts.tolist(), strict=True))
    assert counts == {name: n for name, n in per_day[last].items() if name != CONFLICT}
    assert counts["www.mixed-case-example.com"] == 2  # two spellings, one name
    # Labels and families are the intel's, with `unlisted = "benign"`.
    config = load_site_config(site)
    intel = load_intel(site, config, quarantine=Quarantine(tmp_path / "intel"))
    for name, label, family in zip(test.domains, test.labels, test.families, strict=True):
        verdict, listed_family = intel.lookup(name, registered_domain(name))
        assert label == (1 if verdict == "dga" else 0), name
        assert family == (listed_family if verdict == "dga" else "")
    # Scores are the model's own, name by name.
    direct = predict_scores(model, domains=model.spec.encode(test.domains.tolist()))
    np.testing.assert_allclose(result.labelled.scores, direct, atol=1e-5)
    # The invalid names are quarantined once, with their reason; reader lines are not doubled.
    quarantined = (
        result.quarantine_dir / f"{sorted(site.glob('logs/*'))[-1].name}.tsv"
    ).read_text()
    for raw in INVALID:
        assert sum(line.split("\t")[2] == raw for line in quarantined.splitlines()) == 1
    numbers = [line.split("\t")[0] for line in quarantined.splitlines()[1:]]
    assert len(numbers) == len(set(numbers))


def test_more_test_days_take_the_straggler_in(site, model_path, tmp_path) -> None:
    per_day = names_by_day(site, tmp_path)
    days = sorted(per_day)[-2:]
    model, _ = load_model(model_path)
    result = evaluate_site(model, site, out=tmp_path / "out", days=2, html=False)
    expected = set(per_day[days[0]]) | set(per_day[days[1]])
    assert result.test_days == tuple(days)
    assert set(result.labelled.test.domains.tolist()) | {CONFLICT} == expected
    assert STRAGGLER in set(result.labelled.test.domains.tolist())
    assert result.files_scored == 2 and result.files_scanned == 3


def test_report_kind_flags_and_summary(evaluated, site) -> None:
    stdout, report = evaluated
    metrics = report["metrics"]
    assert report["evaluation"]["kind"] == EVALUATION_KIND == "full, streamed"
    assert report["round"] == 0
    benign = int(metrics["test_domains"] - metrics["test_positives"])
    for target in ("1e-3", "1e-4", "1e-5"):
        needed = benign_names_needed(float(target))
        assert metrics[f"tpr_at_fpr_{target}_resolvable"] == float(benign >= needed)
        status = (
            "resolvable"
            if benign >= needed
            else f"not resolvable (needs {needed:,} benign names, has {benign:,})"
        )
        assert f"TPR at FPR {target}: " in stdout and status in stdout
    assert f"benign {benign:,}, DGA {int(metrics['test_positives']):,}" in stdout
    assert "AUC " in stdout and "95% upper bound" in stdout
    assert any(note.startswith("psi_score compares with") for note in report["evaluation"]["notes"])
    assert report["evaluation"]["model"]["sha256"]
    html = (site / "work" / "evaluate" / "fragility" / "round-000.html").read_text()
    assert "full, streamed" in html
    if benign < 3_000:
        assert f"(not resolvable: {benign:,} benign names &lt; 3,000)" in html


def test_intel_only_families_and_psi_reference_match_the_in_memory_split(
    evaluated, site, tmp_path
) -> None:
    _, report = evaluated
    data = prepare_site(site, work_dir=tmp_path / "work").require_data()
    streamed = {row["family"]: row for row in report["families"]}
    in_memory_intel_only = Counter(data.intel_only.families.tolist())
    assert sum(row["intel_only"] for row in streamed.values()) == len(data.intel_only)
    assert sum(in_memory_intel_only.values()) == len(data.intel_only)
    seen = {row["family"] for row in report["families"] if row["seen_in_training"]}
    assert seen == {family.lower() for family in data.train_families}
    # The reference is every training name, or a sample of PSI_SAMPLE when there are more.
    assert report["evaluation"]["psi_reference_names"] == min(len(data.train), PSI_SAMPLE)
    # The in-memory test set drops leaked registered domains; the full one keeps every name.
    assert report["metrics"]["test_domains"] >= len(data.test)


def test_state_is_bounded_and_the_result_does_not_depend_on_it(site, model_path, tmp_path) -> None:
    """A 50-name cache, per-name merges every 64 rows and a 100-name PSI sample change how much
    is held at once, not what is computed: the memory grows only with the per-name table."""
    model, _ = load_model(model_path)
    roomy = evaluate_site(model, site, out=tmp_path / "roomy", html=False)
    tight = evaluate_site(
        model,
        site,
        out=tmp_path / "tight",
        html=False,
        cache_size=50,
        compact_rows=64,
        psi_sample=100,
    )
    assert roomy.cache_evictions == 0 and tight.cache_evictions > 0
    for field in ("domains", "labels", "families", "query_counts"):
        assert (
            getattr(tight.labelled.test, field).tolist()
            == getattr(roomy.labelled.test, field).tolist()
        )
    np.testing.assert_allclose(tight.labelled.scores, roomy.labelled.scores, atol=1e-5)
    assert tight.psi_reference == 100
    for key in ("test_domains", "test_positives", "test_queries", "tpr_at_fpr_1e-4_resolvable"):
        assert tight.metrics[key] == roomy.metrics[key]
    assert tight.metrics["auc"] == pytest.approx(roomy.metrics["auc"], abs=1e-6)


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedsec: error: "), captured.err
    assert "fix:" in lines[0]
    return lines[0]


def test_bad_input_is_one_line_naming_the_fix(site, model_path, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "nowhere.npz"
    assert evaluate_command(model=missing, site=site, days=None, out=out) == 2
    assert str(missing) in _one_error_line(capsys)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(model_path.read_bytes()[:500])
    assert evaluate_command(model=damaged, site=site, days=None, out=out) == 2
    assert "not a fedsec model" in _one_error_line(capsys)
    assert evaluate_command(model=model_path, site=site, days=9, out=out) == 2
    assert "--days 9" in _one_error_line(capsys)
    assert evaluate_command(model=model_path, site=tmp_path / "no-site", days=None, out=out) == 2
    assert str(tmp_path / "no-site") in _one_error_line(capsys)
    broken = tmp_path / "broken"
    shutil.copytree(site, broken, ignore=shutil.ignore_patterns("work"))
    config = broken / "site.toml"
    config.write_text(config.read_text().replace('format = "zeek-tsv"', 'format = "zeek-json"'))
    assert evaluate_command(model=model_path, site=broken, days=None, out=out) == 2
    assert "dns." in _one_error_line(capsys)
    assert not (out / "fragility").exists()


def test_cli_entry_point_error_is_one_line(site, tmp_path) -> None:
    result = run_fedsec(
        ["evaluate", "--model", str(tmp_path / "missing.npz"), "--site", str(site)],
        tmp_path=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("fedsec: error: ") and "missing.npz" in result.stderr


def test_summary_names_the_report(site, model_path, tmp_path) -> None:
    model, _ = load_model(model_path)
    result = evaluate_site(model, site, out=tmp_path / "out")
    lines = summary_lines(result)
    assert str(result.report.json_path) in lines[-2] and str(result.report.html_path) in lines[-2]
    assert result.report.json_path == tmp_path / "out" / "fragility" / "round-000.json"
