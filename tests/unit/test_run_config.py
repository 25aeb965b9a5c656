"""Run settings: one source of defaults, integer SecAgg+ shares, fault injection."""

from __future__ import annotations

import tomllib

import pytest

from common.config import ConfigError
from common.run_config import RunSettings
from tests.conftest import ROOT


def test_pyproject_defaults_equal_run_settings_defaults():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["config"] == RunSettings().to_run_config()


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [(3, (3, 2)), (4, (4, 3)), (8, (8, 5)), (9, (9, 5)), (10, (10, 6)), (16, (15, 8)),
     (25, (15, 8)), (100, (15, 8))],
)
def test_auto_shares_odd_unless_all_nodes_with_threshold_over_half(nodes, expected):
    shares, threshold = RunSettings().secagg_shares(num_nodes=nodes)
    assert (shares, threshold) == expected
    assert threshold > shares // 2


def test_explicit_shares_are_kept_and_checked():
    explicit = RunSettings(num_shares=5, reconstruction_threshold=3)
    assert explicit.secagg_shares(num_nodes=50) == (5, 3)
    with pytest.raises(ConfigError, match="reconstruction-threshold"):
        RunSettings(num_shares=5, reconstruction_threshold=5).secagg_shares(num_nodes=50)
    with pytest.raises(ConfigError, match="at least 3 nodes"):
        RunSettings().secagg_shares(num_nodes=2)


def test_unknown_key_names_the_key_and_the_fix():
    with pytest.raises(ConfigError) as error:
        RunSettings.from_run_config({"local-stepz": 3})
    assert "local-stepz" in str(error.value) and "fix:" in str(error.value)


def test_fault_injection_by_site_and_round():
    settings = RunSettings.from_run_config({"fail-sites": "site-01, site-03", "fail-rounds": 2})
    assert settings.fails_at(site_id="site-01", server_round=2)
    assert not settings.fails_at(site_id="site-01", server_round=1)
    assert not settings.fails_at(site_id="site-02", server_round=2)
    assert RunSettings(fail_sites="site-02").fails_at(site_id="site-02", server_round=7)
