"""The experiment harness: result folders, tables, the index and memory sampling."""

from __future__ import annotations

import csv
import importlib
import json
import math
import subprocess
import sys

import numpy as np

from experiments.lab import EXPERIMENTS, Column, PeakRss, Results, write_index


def test_results_folder_holds_json_csv_table_and_index(tmp_path):
    results = Results("demo-exp", "A demo experiment", root=tmp_path)
    results.write_json({"nan": math.nan, "arr": np.float32(1.5), "nested": [{"x": np.int64(3)}]})
    payload = json.loads((tmp_path / "demo-exp" / "results.json").read_text())
    assert payload == {"nan": None, "arr": 1.5, "nested": [{"x": 3}]}

    rows = [{"site": "site-00", "auc": 0.91234}, {"site": "site-01", "auc": math.nan, "x": [1]}]
    results.write_csv(rows, "sites.csv")
    with open(tmp_path / "demo-exp" / "sites.csv", newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [row["site"] for row in read] == ["site-00", "site-01"]
    assert read[1]["auc"] == "" and read[1]["x"] == "[1]" and read[0]["x"] == ""

    table = results.add_table(
        "Per site",
        rows,
        [Column("site", "site"), Column("auc", "AUC", "{:.2f}")],
        notes=["NaN prints as n/a."],
    )
    assert "| site-00 | 0.91 |" in table and "| site-01 | n/a |" in table

    path = results.write_table_md(
        size="tiny",
        command="fedsec experiment demo-exp --tiny",
        intro="Intro text.",
        plots=["plot.png"],
    )
    text = path.read_text()
    assert text.startswith("## A demo experiment")
    assert "`fedsec experiment demo-exp --tiny`" in text and "![plot](plot.png)" in text
    index = (tmp_path / "README.md").read_text()
    assert "[A demo experiment](demo-exp/table.md)" in index


def test_index_lists_every_experiment_in_name_order(tmp_path):
    for name in ("zeta", "alpha"):
        Results(name, f"Title {name}", root=tmp_path).write_table_md(size="tiny", command="x")
    lines = [
        line for line in write_index(tmp_path).read_text().splitlines() if line.startswith("- ")
    ]
    assert lines == ["- [Title alpha](alpha/table.md)", "- [Title zeta](zeta/table.md)"]


def test_plot_writes_a_png(tmp_path):
    results = Results("plots", "Plots", root=tmp_path)
    path = results.plot("line.png", lambda figure: figure.add_subplot().plot([0, 1], [1, 0]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_rss_sees_child_processes():
    """A child holding ~200 MiB must show up in the tree's peak, not just this process."""
    code = (
        "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "time.sleep(1.5)"
    )
    with PeakRss(interval=0.05) as peak:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert peak.added_mib > 150


def test_every_registered_experiment_is_a_module_with_run():
    assert set(EXPERIMENTS) == {
        "value",
        "secagg-cost",
        "dropouts",
        "scale",
        "ray",
        "noniid",
        "lowfpr",
        "lowfpr-budget",
        "lowfpr-momentum",
        "lowfpr-families",
        "lowfpr-decay",
        "lowfpr-combined",
        "lowfpr-rate",
        "lowfpr-end",
        "lowfpr-noise",
        "lowfpr-share",
        "lowfpr-rounds",
        "capacity",
        "dp-utility",
        "poisoning",
        "analyst-loop",
    }
    for name, module_name in EXPERIMENTS.items():
        module = importlib.import_module(module_name)
        assert name == module.NAME and callable(module.run), module_name


def test_cli_rejects_conflicting_sizes_and_unknown_names(tmp_path):
    from typer.testing import CliRunner

    from fedsec.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["experiment", "value", "--full", "--tiny", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--full and --tiny" in result.output
    result = runner.invoke(app, ["experiment", "values", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown experiment 'values'" in result.output
    assert not any(tmp_path.iterdir())


def test_the_experiment_commands_help_names_every_experiment() -> None:
    import inspect

    from fedsec import research_commands

    source = inspect.getsource(research_commands.experiment)
    for name in EXPERIMENTS:
        assert f" {name} " in source.replace('"', " ").replace("|", " ") + " ", name
