"""A site's logs are read once per process: the gate, training, evaluation and the reply guard
all derive from one prepared site (counted with Python's audit hook on `open`)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from client.check import check_site
from experiments.simulate import run_in_process

_opened: Counter[str] = Counter()
_watching: set[str] = set()


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _watching and isinstance(args[0], str | Path):
        path = str(Path(args[0]).resolve()) if not isinstance(args[0], int) else ""
        if path in _watching:
            _opened[path] += 1


sys.addaudithook(_audit)  # hooks cannot be removed; it does nothing unless a test watches


@pytest.fixture()
def sites(tmp_path) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=2, seed=4, scale=0.05)
    return out


def _watch(paths: list[Path]) -> None:
    _opened.clear()
    _watching.clear()
    _watching.update(str(path.resolve()) for path in paths)


def test_a_secagg_run_reads_each_log_file_once(sites, tmp_path):
    logs = sorted(sites.glob("*/logs/*"))
    assert len(logs) >= 6
    _watch(logs)
    try:
        results = run_in_process(
            data_dir=sites,
            out_dir=tmp_path / "run",
            overrides={"mode": "secagg", "num-rounds": 2, "local-steps": 2, "site-html": "off"},
        )
    finally:
        counts = dict(_opened)
        _watching.clear()
    assert [entry["train"]["status"] for entry in results["rounds"]] == ["aggregated"] * 2
    # 2 rounds x (4 SecAgg+ messages + 1 evaluation) per site, and still one read per file
    assert counts == {str(path.resolve()): 1 for path in logs}


def test_fedsec_check_reads_each_log_file_once(sites):
    site = sites / "site-00"
    logs = sorted(site.glob("logs/*"))
    _watch(logs)
    try:
        lines, code = check_site(site)
    finally:
        counts = dict(_opened)
        _watching.clear()
    assert code == 0, lines
    assert counts == {str(path.resolve()): 1 for path in logs}
    assert f"quarantined lines: {site.resolve() / 'work' / 'quarantine'}" in lines
