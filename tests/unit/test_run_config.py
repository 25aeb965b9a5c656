"""Run settings: one source of defaults, SecAgg+ shares (counts or fractions), fault injection."""

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
    [
        (3, (3, 2)),
        (4, (4, 3)),
        (8, (8, 5)),
        (9, (9, 5)),
        (10, (10, 6)),
        (16, (15, 8)),
        (25, (15, 8)),
        (100, (15, 8)),
    ],
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


@pytest.mark.parametrize(
    ("fraction", "nodes", "shares"),
    [
        (0.6, 100, 61),
        (0.6, 10, 7),
        (0.6, 5, 3),
        (0.5, 8, 5),
        (0.1, 10, 10),
        (1.0, 9, 9),
        (0.6, 3, 3),
        (0.35, 20, 7),
    ],
)
def test_fraction_of_nodes_follows_flwr(fraction, nodes, shares):
    # By hand from flwr 1.42's setup stage: round(f * n), made odd below n, n if <= 2.
    settings = RunSettings.from_run_config({"num-shares": fraction})
    assert settings.resolved_secagg_shares(num_nodes=nodes) == (shares, shares // 2 + 1)
    passed_shares, passed_threshold = settings.secagg_shares(num_nodes=nodes)
    assert isinstance(passed_shares, float) and passed_shares == fraction  # flwr resolves it
    assert passed_threshold == shares // 2 + 1 and isinstance(passed_threshold, int)


def test_fractional_threshold_is_a_fraction_of_the_shares():
    settings = RunSettings.from_run_config({"num-shares": 11, "reconstruction-threshold": 0.6})
    assert settings.resolved_secagg_shares(num_nodes=50) == (11, 7)  # round(6.6)
    assert settings.secagg_shares(num_nodes=50) == (11, 0.6)
    both = RunSettings.from_run_config({"num-shares": 0.6, "reconstruction-threshold": 0.5})
    assert both.resolved_secagg_shares(num_nodes=100) == (61, 30)  # round(30.5): half to even
    assert both.resolved_secagg_shares(num_nodes=5) == (3, 2)  # never below 2
    with pytest.raises(ConfigError, match="reconstruction-threshold 1 gives 5 of 5"):
        RunSettings(num_shares=5, reconstruction_threshold=1).secagg_shares(num_nodes=50)


def test_whole_counts_from_toml_floats_and_cli_ints_agree():
    as_float = RunSettings.from_run_config({"num-shares": 5.0, "reconstruction-threshold": 3.0})
    as_int = RunSettings.from_run_config({"num-shares": 5, "reconstruction-threshold": 3})
    assert as_float.secagg_shares(num_nodes=20) == as_int.secagg_shares(num_nodes=20) == (5, 3)
    assert all(isinstance(v, int) for v in as_int.secagg_shares(num_nodes=20))
    assert RunSettings.from_run_config(as_int.to_run_config()) == as_int


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num-shares", 2.5),
        ("reconstruction-threshold", 3.7),
        ("num-shares", -1),
        ("num-shares", float("inf")),
    ],
)
def test_bad_share_values_name_the_key_and_the_fix(key, value):
    with pytest.raises(ConfigError) as error:
        RunSettings.from_run_config({key: value})
    assert key in str(error.value) and "fix:" in str(error.value)


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


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("every-round", [True, True, True]),
        ("last-round", [False, False, True]),
        ("off", [False, False, False]),
    ],
)
def test_site_html_rounds(value: str, rendered: list[bool]) -> None:
    settings = RunSettings.from_run_config({"site-html": value, "num-rounds": 3})
    assert [settings.site_html_at(server_round) for server_round in (1, 2, 3)] == rendered


def test_site_html_rejects_unknown_values_by_name() -> None:
    with pytest.raises(ConfigError, match="site-html"):
        RunSettings.from_run_config({"site-html": "sometimes"})


def test_a_site_renders_its_html_page_once_by_default() -> None:
    """Every round writes the JSON report; the page with its plots waits for the last round."""
    settings = RunSettings.from_run_config({"num-rounds": 3})
    assert settings.site_html == "last-round"
    assert [settings.site_html_at(server_round) for server_round in (1, 2, 3)] == [
        False,
        False,
        True,
    ]
