"""Which site a simulated node serves: read once per run and process, not per message."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

import client.app as client_app
from common.config import ConfigError


def _context(data_dir: Path, *, partition: int, run_id: int = 7) -> Context:
    return Context(
        run_id=run_id,
        node_id=partition + 1,
        node_config={"partition-id": partition, "num-partitions": 3},
        state=RecordDict(),
        run_config={"data-dir": str(data_dir)},
    )


def _sites(root: Path, names) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "site.toml").write_text("")
    return root


def test_a_run_lists_its_sites_once_per_process(tmp_path, monkeypatch):
    """Every message listed the data folder, ~26 ms at 1,000 sites, several times a message:
    a round's cost per site grew with the number of sites."""
    data = _sites(tmp_path / "sites", ["site-00", "site-01", "site-02"])
    listed = []
    real = client_app.find_site_dirs
    monkeypatch.setattr(client_app, "find_site_dirs", lambda d: listed.append(d) or real(d))
    client_app._simulated_sites.cache_clear()
    for partition in (0, 1, 2, 0, 1, 2):
        site, work = client_app.site_location(_context(data, partition=partition))
        assert site == data / f"site-{partition:02d}" and work is None
    assert len(listed) == 1
    client_app.site_location(_context(data, partition=0, run_id=8))  # a new run lists again
    assert len(listed) == 2


def test_a_node_keeps_its_site_when_a_folder_appears_mid_run(tmp_path):
    data = _sites(tmp_path / "sites", ["site-01", "site-02"])
    client_app._simulated_sites.cache_clear()
    assert client_app.site_location(_context(data, partition=0))[0] == data / "site-01"
    _sites(data, ["site-00"])  # sorts first: a fresh listing would move partition 0
    assert client_app.site_location(_context(data, partition=0))[0] == data / "site-01"
    assert client_app.site_location(_context(data, partition=0, run_id=9))[0] == data / "site-00"


def test_a_data_folder_without_sites_still_fails_with_its_fix(tmp_path):
    client_app._simulated_sites.cache_clear()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no site folders found"):
        client_app.site_location(_context(tmp_path / "empty", partition=0))
