"""The verdict file: validated, append-only, durable across a killed writer, read defensively."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from client.quarantine import Quarantine
from client.verdicts import (
    MAX_LINE_BYTES,
    VerdictError,
    append_verdict,
    make_verdict,
    read_verdicts,
)

ROOT = Path(__file__).resolve().parents[2]


def _domain(name: str, verdict: str, analyst: str = "alice"):
    return make_verdict(analyst=analyst, subject="domain", target=name, verdict=verdict)


def test_round_trip_and_latest_verdict_wins(tmp_path):
    path = tmp_path / "work" / "verdicts.jsonl"
    append_verdict(path, _domain("QXKZ.Example.", "malicious"))
    append_verdict(
        path,
        make_verdict(
            analyst="bob",
            subject="host",
            target="10.0.0.5",
            verdict="benign",
            names=["cdn-a1.example", "qxkz.example"],
            why="a CDN's shard names",
        ),
    )
    verdicts = read_verdicts(path)
    assert [entry.analyst for entry in verdicts.entries] == ["alice", "bob"]
    assert verdicts.entries[0].target == "qxkz.example"  # normalised
    assert verdicts.labels() == {"qxkz.example": "benign", "cdn-a1.example": "benign"}
    append_verdict(path, _domain("qxkz.example", "unsure"))
    assert read_verdicts(path).labels() == {"cdn-a1.example": "benign"}
    assert read_verdicts(path).counts() == {"benign": 1, "unsure": 1}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"subject": "ip"}, "subject"),
        ({"analyst": ""}, "analyst"),
        ({"target": "bad..name"}, "target"),
        ({"why": "x" * 5000}, "why"),
        ({"subject": "host", "target": "10.0.0.1", "names": []}, "names"),
        ({"subject": "host", "target": "10.0.0.1", "names": ["ok.example", "a..b"]}, "names"),
    ],
)
def test_bad_verdicts_name_their_field(fields, field):
    values = {"analyst": "alice", "subject": "domain", "target": "a.example", "verdict": "benign"}
    values.update(fields)
    with pytest.raises(VerdictError, match=f"field {field}"):
        make_verdict(**values)


def test_bad_lines_are_quarantined_not_fatal(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    append_verdict(path, _domain("good.example", "malicious"))
    with path.open("ab") as stream:
        stream.write(b"not json\n[1, 2]\n")
        stream.write(b'{"analyst": "x", "subject": "domain", "target": "a.example"}\n')
        stream.write(b"x" * (MAX_LINE_BYTES + 10) + b"\n")
    append_verdict(path, _domain("later.example", "benign"))
    with Quarantine(tmp_path / "q") as quarantine:
        verdicts = read_verdicts(path, quarantine=quarantine)
    assert verdicts.labels() == {"good.example": "malicious", "later.example": "benign"}
    assert verdicts.quarantined == 4
    rows = (tmp_path / "q" / "verdicts.jsonl.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[0] for row in rows] == ["2", "3", "4", "5"]
    assert "verdict-line-too-long" in rows[3]


def test_an_append_after_a_torn_line_starts_fresh(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    append_verdict(path, _domain("one.example", "malicious"))
    with path.open("ab") as stream:
        stream.write(b'{"analyst": "alice", "subj')  # the writer died mid-line
    append_verdict(path, _domain("two.example", "malicious"))
    verdicts = read_verdicts(path)
    assert set(verdicts.labels()) == {"one.example", "two.example"}
    assert verdicts.quarantined == 1


def test_acknowledged_verdicts_survive_a_killed_writer(tmp_path):
    """A writer killed with SIGKILL loses nothing it had acknowledged (returned from append)."""
    path = tmp_path / "verdicts.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from client.verdicts import append_verdict, make_verdict
        for index in range(100000):
            append_verdict({str(path)!r}, make_verdict(
                analyst="alice", subject="domain", target=f"n{{index}}.example",
                verdict="malicious"))
            print(index, flush=True)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    try:
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= 30:
                break
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    names = set(read_verdicts(path).labels())
    assert {f"n{index}.example" for index in range(acknowledged + 1)} <= names
    for line in path.read_bytes().splitlines()[: acknowledged + 1]:
        assert json.loads(line)["verdict"] == "malicious"
