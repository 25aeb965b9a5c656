"""Probes of what leaves a site, as an attacker would try them: errors, intel strings, the
guard's blind spots and the clear text beside the masked update. Each probe found a leak in
fedsec before the fix; each runs a real round (in-process grid) and reads what the
coordinator stored (results.json, report.json, report.html) and every reply a site sent.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from flwr.common.serde import recorddict_from_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict  # pylint: disable=E0611

from client.audit import leaked_names, reply_texts
from client.pipeline import prepare_site
from common.protocol import SITE_ERRORS
from experiments.simulate import run_in_process

IP = re.compile(rb"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("probe") / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=2, seed=2, scale=0.05)
    return out


def _copy(pristine: Path, tmp_path: Path, levels: dict[str, str]) -> Path:
    data = tmp_path / "sites"
    shutil.copytree(pristine, data, ignore=shutil.ignore_patterns("work"))
    for site, level in levels.items():
        config = data / site / "site.toml"
        config.write_text(re.sub(r'level = "[^"]*"', f'level = "{level}"', config.read_text()))
    return data


def _coordinator_bytes(run: Path) -> bytes:
    return b"".join(
        (run / name).read_bytes() for name in ("results.json", "report.json", "report.html")
    )


def _run(data: Path, run: Path, **overrides) -> dict:
    return run_in_process(
        data_dir=data,
        out_dir=run,
        overrides={"num-rounds": 1, "local-steps": 2, "site-html": "off", **overrides},
    )


def _failure_reasons(results: dict) -> list[str]:
    entry = results["rounds"][0]
    return entry["train"].get("failure_reasons", []) + entry["aggregate"]["failure_reasons"]


def test_a_log_without_its_header_sends_a_code_not_a_log_line(pristine, tmp_path):
    data = _copy(pristine, tmp_path, {"site-01": "none"})
    for log in (data / "site-01" / "logs").glob("*.gz"):
        lines = gzip.decompress(log.read_bytes()).splitlines(keepends=True)
        log.write_bytes(
            gzip.compress(b"".join(line for line in lines if not line.startswith(b"#")))
        )
    results = _run(data, tmp_path / "run", mode="fedavg")
    reasons = _failure_reasons(results)
    assert reasons and all("fedsec-E2" in reason for reason in reasons), reasons
    stored = _coordinator_bytes(tmp_path / "run")
    assert not IP.search(stored)
    assert b"C" + b"\t" not in stored and b"fields" not in stored
    detail = (data / "site-01" / "work" / "errors.log").read_text()
    assert "no '#fields' header" in detail  # the site keeps the whole story


def test_a_quality_gate_refusal_sends_no_figures(pristine, tmp_path):
    data = _copy(pristine, tmp_path, {"site-02": "none"})
    config = data / "site-02" / "site.toml"
    config.write_text(config.read_text() + "\n[dqa]\nmin_train_positives = 1000000\n")
    results = _run(data, tmp_path / "run", mode="secagg")
    reasons = _failure_reasons(results)
    assert any("fedsec-E3" in reason for reason in reasons), reasons
    for reason in reasons:
        assert not re.search(r"\d{2,}", reason.replace("fedsec-E", "")), reason
        assert "train_positives" not in reason and "1000000" not in reason
    assert b"train_positives" not in _coordinator_bytes(tmp_path / "run")
    assert (data / "site-02" / "work" / "errors.log").is_file()


def test_every_error_text_is_one_of_the_fixed_sentences(pristine, tmp_path):
    data = _copy(pristine, tmp_path, {})
    results = _run(data, tmp_path / "run", mode="fedavg", **{"fail-sites": "site-00"})
    reasons = _failure_reasons(results)
    assert len(reasons) == 1
    assert SITE_ERRORS["E5"] in reasons[0] and "site-00" not in reasons[0]


def test_an_intel_family_string_does_not_reach_the_coordinator(pristine, tmp_path):
    data = _copy(pristine, tmp_path, {"site-00": "rates"})
    blocklist = data / "site-00" / "intel" / "blocklist.csv"
    rows = blocklist.read_text().splitlines()
    secret = "victim-laptop.corp.acme-bank.com"
    blocklist.write_text(
        "\n".join([rows[0], *(f"{row.split(',')[0]},{secret}" for row in rows[1:]), ""])
    )
    _run(data, tmp_path / "run", mode="fedavg")
    stored = _coordinator_bytes(tmp_path / "run")
    assert b"victim" not in stored and b"acme" not in stored
    assert b"recall_family_local_1" in stored


def test_the_guard_knows_every_name_the_site_read(pristine, tmp_path):
    """Held-out training-day names and label conflicts are names of the site's traffic too."""
    data = _copy(pristine, tmp_path, {})
    site = prepare_site(data / "site-00")
    split = site.require_data()
    examples = {*split.train.domains, *split.test.domains}
    logged = set()
    for log in (data / "site-00" / "logs").glob("*.gz"):
        for line in gzip.decompress(log.read_bytes()).decode().splitlines():
            if not line.startswith("#"):
                fields = line.split("\t")
                if len(fields) > 9 and fields[9] not in ("-", "(empty)"):
                    logged.add(fields[9].lower().rstrip("."))
    valid = {name for name in logged if name in site.names}
    assert len(valid) >= 0.95 * len(logged)
    assert len(valid - examples) > 0  # names the split dropped: the old guard missed them
    assert valid <= site.names


@pytest.mark.parametrize("length", range(4, 70))
def test_the_guard_finds_a_name_whatever_its_length(length):
    """The old matcher scanned wire bytes, where a length byte can be a name character."""
    name = "a" * (length - 4) + "x.io" if length > 4 else "x.io"
    from flwr.app import ConfigRecord, RecordDict

    texts, binary = reply_texts(RecordDict({"m": ConfigRecord({"top": name})}))
    assert leaked_names(texts, frozenset({name}), binary=binary) == {name}


def test_train_replies_carry_only_what_the_share_level_allows(pristine, tmp_path):
    data = _copy(
        pristine, tmp_path, {"site-00": "none", "site-01": "rates", "site-02": "rates+volumes"}
    )
    results = _run(data, tmp_path / "run", mode="secagg", **{"audit-replies": True})
    trained = results["rounds"][0]["train"]["sites"]
    assert set(trained["site-00"]) == {"num_examples"} and trained["site-00"]["num_examples"] == 1
    assert trained["site-01"]["num_examples"] == 1 and "delta_norm" not in trained["site-01"]
    assert all(
        len(f"{value:.6g}".replace(".", "").strip("0")) <= 2
        for key, value in trained["site-01"].items()
        if key != "num_examples"
    )
    exact = len(prepare_site(data / "site-02").require_data().train)
    assert trained["site-02"]["num_examples"] == exact and "delta_norm" in trained["site-02"]
    for site in ("site-00", "site-01"):  # decode every reply the site sent, not just results
        for path in (data / site / "work" / "audit").glob("train-*.bin"):
            content = recorddict_from_proto(ProtoRecordDict.FromString(path.read_bytes()))
            counts = content.metric_records.get("fitres.num_examples")
            if counts is not None:
                assert counts["num_examples"] == 1
            metrics = content.config_records.get("fitres.metrics", {})
            assert "delta_norm" not in metrics
    assert json.loads((tmp_path / "run" / "results.json").read_text())["rounds"]
