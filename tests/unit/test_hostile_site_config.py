"""Hostile or careless `site.toml` (issue 18): strict types, finite numbers, BOM, one line each.

Every probe here was accepted or misreported before: `inf` budgets, `count = true` read as 1,
numeric strings coerced, a UTF-8 byte-order mark reported as "Invalid statement", and a
site.toml of any size read whole. The fuzz tests feed arbitrary text and arbitrary values to
the loader: the only exception that may leave it is ConfigError, one line per problem.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.site import MAX_SITE_FILE_BYTES, SITE_FILE, load_site_config
from common.config import ConfigError, parse_site_config

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1536 * 2**20

GOOD = """\
site_id = "acme-eu"

[logs]
paths = ["logs/dns*.log"]

[deployment]
benign_events_per_day = 1.0e6
base_rate = 1e-3

[analysts]
count = 5
productive_hours_per_day = 5.6
minutes_per_alert = 20
"""


def _site(tmp_path: Path, text: str | bytes) -> Path:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    (site / SITE_FILE).write_bytes(data)
    return site


def _replace(old: str, new: str) -> str:
    """GOOD with `old` replaced by `new`; with `old` empty, `new` appended (a new section)."""
    if not old:
        return GOOD + new + "\n"
    assert old in GOOD
    return GOOD.replace(old, new)


def _one_error(tmp_path: Path, text: str | bytes) -> str:
    with pytest.raises(ConfigError) as caught:
        load_site_config(_site(tmp_path, text))
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(str(tmp_path / "site" / SITE_FILE)), message
    assert "(fix: " in message
    return message


def test_the_good_file_loads(tmp_path: Path) -> None:
    config = load_site_config(_site(tmp_path, GOOD))
    assert config.analysts.count == 5 and config.deployment.benign_events_per_day == 1e6


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("benign_events_per_day = 1.0e6", "benign_events_per_day = inf", "benign_events_per_day"),
        ("benign_events_per_day = 1.0e6", "benign_events_per_day = nan", "benign_events_per_day"),
        ("minutes_per_alert = 20", "minutes_per_alert = inf", "minutes_per_alert"),
        ("minutes_per_alert = 20", "minutes_per_alert = nan", "minutes_per_alert"),
        ("productive_hours_per_day = 5.6", "productive_hours_per_day = nan", "productive_hours"),
        ("base_rate = 1e-3", "base_rate = nan", "base_rate"),
        ("base_rate = 1e-3", "base_rate = inf", "base_rate"),
        ("", "[dqa]\ngap_seconds = inf", "gap_seconds"),
        ("", "[operating]\ntarget_fpr = nan", "target_fpr"),
        ("", "[dqa]\nmax_malformed_rate = nan", "max_malformed_rate"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, old: str, new: str, field: str) -> None:
    message = _one_error(tmp_path, _replace(old, new))
    assert field in message and "finite" in message


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("benign_events_per_day = 1.0e6", "benign_events_per_day = 0", "benign_events_per_day"),
        ("benign_events_per_day = 1.0e6", "benign_events_per_day = -5", "benign_events_per_day"),
        ("minutes_per_alert = 20", "minutes_per_alert = 0", "minutes_per_alert"),
        ("minutes_per_alert = 20", "minutes_per_alert = -1.5", "minutes_per_alert"),
        ("count = 5", "count = -1", "count"),
        ("minutes_per_alert = 20", "minutes_per_alert = 1e-310", "minutes_per_alert"),
    ],
)
def test_zero_negative_or_overflowing_numbers_are_refused(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert field in _one_error(tmp_path, _replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "field", "kind"),
    [
        ("count = 5", "count = true", "analysts.count", "whole number"),
        ("count = 5", 'count = "5"', "analysts.count", "whole number"),
        ("count = 5", "count = 5.0", "analysts.count", "whole number"),
        ("benign_events_per_day = 1.0e6", 'benign_events_per_day = "1e6"', "benign", "number"),
        ("minutes_per_alert = 20", "minutes_per_alert = true", "minutes_per_alert", "number"),
        ('site_id = "acme-eu"', "site_id = 7", "site_id", "string"),
        ('paths = ["logs/dns*.log"]', 'paths = "logs/dns*.log"', "logs.paths", "list"),
        ("", "[split]\ntest_days = true", "split.test_days", "whole number"),
        ("", '[share]\nlevel = ["rates"]', "share.level", "one of"),
    ],
)
def test_wrong_types_are_errors_not_coerced(
    tmp_path: Path, old: str, new: str, field: str, kind: str
) -> None:
    message = _one_error(tmp_path, _replace(old, new))
    assert field in message and kind in message


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    config = load_site_config(_site(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()))
    assert config.site_id == "acme-eu"


def test_a_mark_inside_the_file_is_still_an_error(tmp_path: Path) -> None:
    assert "not valid TOML" in _one_error(tmp_path, GOOD + "\ufeffx = 1\n")


def test_not_utf8_and_oversized_files_are_one_line(tmp_path: Path) -> None:
    assert "UTF-8" in _one_error(tmp_path, GOOD.encode() + b"# \xff\xfe\n")
    path = _site(tmp_path, GOOD) / SITE_FILE
    with path.open("r+b") as stream:
        stream.truncate(MAX_SITE_FILE_BYTES + 1)
    with pytest.raises(ConfigError, match=r"site\.toml: .*bytes.*\(fix: "):
        load_site_config(path.parent)


def test_parse_site_config_is_strict_for_mappings_too() -> None:
    raw = {
        "site_id": "x",
        "logs": {"paths": ["a"]},
        "deployment": {"benign_events_per_day": float("inf")},
        "analysts": {"count": True, "productive_hours_per_day": 5, "minutes_per_alert": 2},
    }
    with pytest.raises(ConfigError) as caught:
        parse_site_config(raw, source="m.toml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("m.toml: field ") for line in lines)


# --- fuzz ------------------------------------------------------------------------------------

_FUZZ = settings(
    max_examples=int(os.environ.get("FEDSEC_FUZZ_EXAMPLES", "80")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_TOML_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats().map(lambda x: {"inf": "inf", "-inf": "-inf"}.get(str(x), repr(x))),
    st.sampled_from(["true", "false", "nan", "-0.0", "1979-05-27", "[]", "{}", '"measured"']),
    st.text(max_size=30).map(lambda text: '"' + text.encode("unicode_escape").decode() + '"'),
    st.lists(st.integers(-5, 5), max_size=3).map(str),
)
_KEYS = [line.split(" = ")[0] for line in GOOD.splitlines() if " = " in line]


def _assert_loads_or_refuses(site: Path) -> None:
    try:
        load_site_config(site)
    except ConfigError as error:
        for line in str(error).splitlines():
            assert line.startswith(str(site / SITE_FILE) + ": "), line
            assert "(fix: " in line, line


@_FUZZ
@given(text=st.text(max_size=400) | st.binary(max_size=400))
def test_fuzz_arbitrary_text_loads_or_refuses(tmp_path: Path, text: str | bytes) -> None:
    _assert_loads_or_refuses(_site(tmp_path, text))


@_FUZZ
@given(key=st.sampled_from(_KEYS), value=_TOML_VALUES)
def test_fuzz_field_values_load_or_refuse(tmp_path: Path, key: str, value: str) -> None:
    lines = [
        f"{key} = {value}" if line.split(" = ")[0] == key else line for line in GOOD.splitlines()
    ]
    _assert_loads_or_refuses(_site(tmp_path, "\n".join(lines)))


@pytest.mark.slow
def test_fuzz_and_a_huge_file_run_under_a_memory_limit(tmp_path: Path) -> None:
    """The fuzz tests again, and a 4 GiB (sparse) site.toml, in a child with capped memory."""
    huge = tmp_path / "huge"
    huge.mkdir()
    with (huge / SITE_FILE).open("wb") as stream:
        stream.truncate(4 * 2**30)
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        from pathlib import Path
        from client.site import load_site_config
        from common.config import ConfigError
        try:
            load_site_config(Path({str(huge)!r}))
        except ConfigError as error:
            print("refused:", error)
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-k", "test_fuzz_ and not limit",
                              {str(Path(__file__))!r}]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "FEDSEC_FUZZ_EXAMPLES": "40"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "refused:" in result.stdout
