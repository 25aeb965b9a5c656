"""Bad input stops `fedsec simulate` with one line naming the file and field; nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_fedsec


def _copy_site(small_federation: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(
        small_federation / "site-00", data / "site-00", ignore=shutil.ignore_patterns("work")
    )
    return data


def _assert_clean_failure(result, out: Path, *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fedsec: error:")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists(), "a failed start must not leave an output folder"


def test_missing_site_folder(tmp_path):
    out = tmp_path / "run"
    result = run_fedsec(
        ["simulate", "--data", str(tmp_path / "nowhere"), "--out", str(out)], tmp_path=tmp_path
    )
    _assert_clean_failure(result, out, str(tmp_path / "nowhere"), "does not exist", "fix:")


def test_unknown_log_format(small_federation, tmp_path):
    data = _copy_site(small_federation, tmp_path)
    config = data / "site-00" / "site.toml"
    config.write_text(config.read_text().replace('format = "zeek-tsv"', 'format = "splunk"'))
    out = tmp_path / "run"
    result = run_fedsec(["simulate", "--data", str(data), "--out", str(out)], tmp_path=tmp_path)
    _assert_clean_failure(result, out, str(config), "logs.format", "fix:")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            "benign_events_per_day = ",
            'benign_events_per_day = "lots" # ',
            "deployment.benign_events_per_day",
        ),
        ("[analysts]", "[analysts]\nhours = 3", "analysts.hours"),
    ],
)
def test_wrong_site_field(small_federation, tmp_path, old, new, field):
    data = _copy_site(small_federation, tmp_path)
    config = data / "site-00" / "site.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    out = tmp_path / "run"
    result = run_fedsec(["simulate", "--data", str(data), "--out", str(out)], tmp_path=tmp_path)
    _assert_clean_failure(result, out, str(config), field, "fix:")


def test_unknown_run_config_key(small_federation, tmp_path):
    out = tmp_path / "run"
    result = run_fedsec(
        ["simulate", "--data", str(small_federation), "--out", str(out), "--set", "local-stepz=3"],
        tmp_path=tmp_path,
    )
    _assert_clean_failure(result, out, "local-stepz", "fix:")
