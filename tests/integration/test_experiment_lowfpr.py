"""experiments/lowfpr.py at its tiny size, on synthetic stand-in CSVs this test writes.

Never the real development data: a few hundred made-up names in the real files' layout
(`benign.csv.gz` domain,source; `dga.csv.gz` domain,family), one benign source named like
the contaminated list and salted with random names, one family under a dynamic-DNS provider.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from experiments import lowfpr
from tests.conftest import ROOT, fedsec_env, run_fedsec

pytestmark = pytest.mark.slow

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ber", "lin", "mar", "sun", "web")
WORDS = ("blue", "cloud", "data", "fast", "green", "home", "net", "shop", "star", "tech")


def _random(rng, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(low, high + 1))))


def _family_names(rng, family: str, count: int) -> set[str]:
    makers = {
        "alpha": lambda: _random(rng, LETTERS, 12, 18) + ".com",
        "hexa": lambda: _random(rng, "0123456789abcdef", 16, 16) + ".net",
        "digits": lambda: _random(rng, LETTERS + "0123456789", 10, 12) + ".biz",
        "syllab": lambda: "".join(rng.choice(["ba", "ko", "ti", "mu", "re"], size=5)) + ".info",
        "short": lambda: _random(rng, LETTERS, 6, 7) + str(rng.choice([".ru", ".cn", ".top"])),
        "dyn": lambda: _random(rng, LETTERS, 9, 11) + ".ddns.net",
        "wordy": lambda: "".join(rng.choice(list(WORDS), size=3)) + ".com",
        "mixed": lambda: _random(rng, LETTERS + "0123456789", 8, 8) + ".org",
    }
    names: set[str] = set()
    while len(names) < count:
        names.add(makers[family]())
    return names


def write_stand_in(folder, *, seed: int = 0) -> dict[str, list[str]]:
    """Synthetic CSVs in the real layout; returns every name written, by file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    dga_rows, taken = [], set()
    for family in ("alpha", "hexa", "digits", "syllab", "short", "dyn", "wordy", "mixed"):
        for name in sorted(_family_names(rng, family, 40)):
            dga_rows.append((name, family))
            taken.add(name)
    benign: set[str] = set()
    while len(benign) < 420:
        word = "".join(rng.choice(list(SYLLABLES), size=int(rng.integers(2, 4))))
        name = word + str(rng.choice([".com", ".org", ".net", ".de", ".co.uk"]))
        if rng.random() < 0.1:
            name = str(rng.choice(["www.", "mail.", "cdn."])) + name
        if name not in taken:
            benign.add(name)
    benign_rows = [
        (name, lowfpr.CONTAMINATED_SOURCE if i % 5 < 3 else "alexa_top100k_2015")
        for i, name in enumerate(sorted(benign))
    ]
    for _ in range(6):  # the contaminated list holds a few DGA-looking names
        benign_rows.append((_random(rng, LETTERS, 9, 14) + ".biz", lowfpr.CONTAMINATED_SOURCE))
    for file_name, header, rows in (
        (lowfpr.DGA_FILE, ("domain", "family"), dga_rows),
        (lowfpr.BENIGN_FILE, ("domain", "source"), benign_rows),
    ):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        (folder / file_name).write_bytes(gzip.compress(buffer.getvalue().encode()))
    return {"dga": [r[0] for r in dga_rows], "benign": [r[0] for r in benign_rows]}


def run_on_stand_in(tmp_path_factory, experiment):
    """`experiment.run` at its tiny size on fresh stand-in names, the way `fedsec experiment`
    calls it: (its results folder, its payload, every name written, by file)."""
    base = tmp_path_factory.mktemp(experiment.NAME)
    names = write_stand_in(base / "real-dev")
    root = base / "results"
    payload = experiment.run(size="tiny", root=root, real_dev=base / "real-dev")
    return root / experiment.NAME, payload, names


def leaked_names(folder, names) -> list[str]:
    """The stand-in names found in any text an experiment wrote (its plots are pixels)."""
    text = "".join(
        path.read_text() for path in folder.iterdir() if path.suffix in (".json", ".csv", ".md")
    )
    return [name for name in names["dga"] + names["benign"] if name in text]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, lowfpr)


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_output_is_written_and_well_formed(tiny_run):
    folder, payload, _ = tiny_run
    stored = json.loads((folder / "results.json").read_text())
    assert {
        "config",
        "data",
        "sites",
        "checks",
        "timings",
        "arms",
        "sources",
        "families",
        "site_split",
        "fp_check",
        "targets",
    } <= set(stored)
    for name in ("arms", "sources", "families", "site_split", "fp_check", "targets", "sites"):
        assert _csv_rows(folder / f"{name}.csv"), name
    for plot in ("roc.png", "families.png"):
        assert (folder / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (folder / "table.md").read_text()
    for heading in ("Targets", "Every arm on the pooled test names", "Per benign source"):
        assert heading in table
    for block in table.split("### ")[1:]:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) == 1, block.splitlines()[0]
    assert (folder.parent / "README.md").read_text().count("lowfpr/table.md") == 1


def test_no_name_from_the_data_is_written(tiny_run):
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]


def test_arms_and_sites_are_all_there(tiny_run):
    _, payload, _ = tiny_run
    shape = lowfpr.SIZES["tiny"]
    sites = [f"site-{i:02d}" for i in range(shape.sites)]
    arms = {f"local:{s}" for s in sites} | {"fedavg", "secagg", "pooled", "transfer"}
    assert {(r["arm"], r["benign"]) for r in payload["arms"]} == {
        (arm, scope) for arm in arms for scope in lowfpr.SCOPES
    }
    assert [r["site"] for r in payload["sites"]] == sites
    assert all(r["quality_gate"] == "pass" for r in payload["sites"])
    families = payload["data"]["site_families"]
    dealt = [f for s in sites for f in families[s]]
    assert len(dealt) == len(set(dealt)) == payload["data"]["families"]  # disjoint, all dealt
    for mode in ("fedavg", "secagg", "transfer"):
        assert payload["timings"][mode]["rounds_completed"] == shape.rounds
        assert payload["timings"][mode]["site_failures"] == 0
    assert payload["checks"] == {
        "label_mismatches": 0,
        "unknown_names": 0,
        "pooled_test_names_at_sites": 0,
    }
    scores = {r["arm"]: r["auc"] for r in payload["arms"] if r["benign"] == "all"}
    assert scores["pooled"] != scores["local:site-00"]


def test_figures_agree_with_the_counts(tiny_run):
    _, payload, _ = tiny_run
    data = payload["data"]
    contaminated = data["test_benign_by_source"].get(lowfpr.CONTAMINATED_SOURCE, 0)
    assert contaminated > 0
    expected_benign = {"all": data["test_benign"], "clean": data["test_benign"] - contaminated}
    for row in payload["arms"] + payload["sources"]:
        if "benign" in row:
            assert row["n_benign"] == expected_benign[row["benign"]]
        assert row["n_dga"] == data["test_dga"]
        assert 0.0 <= row["auc"] <= 1.0
        for fpr, tag in lowfpr.TAGS.items():
            n = row["n_benign"]
            assert row[f"resolvable_{tag}"] == (n * fpr >= 3), (row["arm"], tag, n)
            assert row[f"k_{tag}"] == math.floor(fpr * n + 1e-9)
            assert 0 <= row[f"fp_{tag}"] <= row[f"k_{tag}"]
            assert 0.0 <= row[f"tpr_at_fpr_{tag}"] <= 1.0
            assert row[f"fp_per_day_upper95_{tag}"] >= row[f"fp_per_day_{tag}"] >= 0.0
    for arm in {r["arm"] for r in payload["sources"]}:
        per_source = [r["n_benign"] for r in payload["sources"] if r["arm"] == arm]
        assert sum(per_source) == data["test_benign"]
    cells = [r for r in payload["families"] if r["arm"] == "secagg" and r["benign"] == "all"]
    assert len(cells) == data["families"]
    assert sum(r["test_names"] for r in cells) == data["test_dga"]
    for row in payload["fp_check"]:
        assert row["decidable"] == (row["local_fp"] >= lowfpr.MIN_LOCAL_FP_TO_DECIDE)
        assert row["local_fp"] <= row["k"]


def test_unresolvable_figures_are_never_met_or_headlined(tiny_run):
    folder, payload, _ = tiny_run
    fed = next(r for r in payload["arms"] if r["arm"] == "secagg" and r["benign"] == "all")
    assert not fed["resolvable_1e-4"]  # a few hundred benign test names
    verdicts = {t["target"]: t["verdict"] for t in payload["targets"]}
    assert verdicts["TPR at FPR 1e-4"] == "undecidable"
    assert verdicts["TPR at FPR 1e-3"] == "undecidable"
    fp_rows = [v for k, v in verdicts.items() if k.startswith("federated")]
    assert fp_rows == ["undecidable", "undecidable"]
    intro = (folder / "table.md").read_text().split("### ")[0]
    assert "TPR@1e-4" not in intro and "NOT resolvable" in intro


def test_a_missing_real_dev_folder_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(lowfpr.REAL_DEV_ENV, raising=False)
    result = run_fedsec(["experiment", "lowfpr", "--tiny"], tmp_path=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fedsec: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lowfpr.REAL_DEV_ENV in errors[0] and "fix:" in errors[0]
    module = subprocess.run(
        [sys.executable, "-m", "experiments.lowfpr", "--tiny", "--real-dev", str(tmp_path)],
        cwd=ROOT,
        env=fedsec_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert module.returncode == 2 and "Traceback" not in module.stderr, module.stderr
    assert lowfpr.BENIGN_FILE in module.stderr and "fix:" in module.stderr
