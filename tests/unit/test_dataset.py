"""A generated site becomes labelled, time-split examples with nothing lost and nothing leaked."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from client.domains import registered_domain
from client.pipeline import prepare_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("gen") / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=3, seed=3, scale=0.1)
    manifest = json.loads((out / "manifest.json").read_text())
    sites = manifest["sites"]
    entry = sites[0] if isinstance(sites, list) else sites["site-00"]
    return out / "site-00", entry, out / "truth.csv"


def test_every_line_is_accounted_for_and_bad_lines_are_quarantined(site):
    site_dir, manifest, _ = site
    site = prepare_site(site_dir, work_dir=site_dir / "work")
    read = site.quality.report.read
    quarantined = sum(read.quarantined.values())
    injected = sum(f["total"] for f in manifest["malformed_lines"].values())
    assert quarantined == injected > 0
    data_lines = sum(manifest["volume"]["data_lines_by_file"].values())
    assert read.total("records") + quarantined == data_lines + injected
    kept = list((site_dir / "work" / "quarantine").glob("*.tsv"))
    rows = sum(len(path.read_text().splitlines()) - 1 for path in kept)
    invalid_names = read.total("invalid_domains")  # includes records without a query
    assert quarantined <= rows <= quarantined + invalid_names


def test_split_is_in_time_and_no_registered_domain_is_on_both_sides(site):
    site_dir, _, _ = site
    data = prepare_site(site_dir, work_dir=site_dir / "work").require_data()
    assert data.train_days == ("2026-01-01", "2026-01-02") and data.test_days == ("2026-01-03",)
    assert set(data.train.registered) & set(data.test.registered) == set()
    assert len(data.test) > 0 and data.test.positives > 0 and data.train.positives > 0
    for examples in (data.train, data.test):
        assert [registered_domain(n) for n in examples.domains[:200]] == list(
            examples.registered[:200]
        )


def test_labels_come_from_intel_not_truth(site):
    site_dir, manifest, truth_path = site
    data = prepare_site(site_dir, work_dir=site_dir / "work").require_data()
    truth = {row["domain"]: row["label"] for row in csv.DictReader(truth_path.open())}
    names = np.concatenate([data.train.domains, data.test.domains])
    labels = np.concatenate([data.train.labels, data.test.labels])
    true_dga = np.array([truth.get(n) == "dga" for n in names])
    # the site's blocklist misses some DGA names (labelled benign) as configured
    missed = float(np.mean(labels[true_dga] == 0))
    assert 0 < missed < 0.5
    assert manifest["blocklist"]["miss_rate"] > 0


def test_intel_only_names_never_appear_in_the_logs(site):
    site_dir, _, _ = site
    data = prepare_site(site_dir, work_dir=site_dir / "work").require_data()
    logged = set(data.train.domains) | set(data.test.domains)
    assert len(data.intel_only) > 0 and set(data.intel_only.domains).isdisjoint(logged)
    assert set(data.intel_only.labels.tolist()) == {1}
