"""`fedsec check` and `fedsec score` on hostile input (issue 18): nothing read silently less than
given; every log and intel line accounted for; score never reads its own output."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from client.check import check_site
from client.scoring import score_command
from common.model import ModelSpec, build_model, model_to_bytes


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("hostile-site") / "sites"
    return generate_sites(out_dir=out, n_sites=1, n_days=3, seed=3, scale=0.1)[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    path.write_bytes(model_to_bytes(build_model(ModelSpec(), seed=0)))
    return path


def copy_of(site: Path, tmp_path: Path) -> Path:
    target = tmp_path / site.name
    shutil.copytree(site, target, ignore=shutil.ignore_patterns("work"))
    return target


def first_log(site: Path) -> Path:
    return sorted((site / "logs").glob("dns.*.log.gz"))[0]


def cut_gzip(path: Path) -> None:
    """Cut a gzip'd log short, as a copy interrupted mid-file leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def test_check_fails_on_a_cut_gzip_stream(site: Path, tmp_path: Path) -> None:
    broken = copy_of(site, tmp_path)
    cut_gzip(first_log(broken))
    lines, code = check_site(broken)
    text = "\n".join(lines)
    assert code == 1, text
    assert "GZIP STREAM TRUNCATED" in text and "passes its quality gate" not in text
    assert re.search(r"  - .*dns\.[-0-9]+\.log\.gz: the gzip stream is truncated", text)


def test_check_fails_on_a_folder_matching_the_log_glob(site: Path, tmp_path: Path) -> None:
    broken = copy_of(site, tmp_path)
    (broken / "logs" / "dns.archive.log.gz").mkdir()
    lines, code = check_site(broken)
    text = "\n".join(lines)
    assert code == 1 and "dns.archive.log.gz: NOT A FILE" in text
    assert "dns.archive.log.gz: matches [logs] paths but is not a file" in text


def test_check_accounts_every_log_and_intel_line(site: Path, tmp_path: Path) -> None:
    broken = copy_of(site, tmp_path)
    blocklist = broken / "intel" / "blocklist.csv"
    rows = blocklist.read_text().splitlines()
    blocklist.write_text("\n".join([*rows, "not a domain!,x", "", "-bad-.com,y"]) + "\n")
    lines, code = check_site(broken)
    assert code == 0, lines
    logs = [line for line in lines if re.match(r"  dns\.[-0-9]+\.log\.gz: ", line)]
    assert len(logs) == 3
    for line in logs:
        read, header, records, bad = map(
            int,
            re.search(r"(\d+) lines read = (\d+) header \+ (\d+) records \+ (\d+)", line).groups(),
        )
        assert read == header + records + bad and records > 0
    block = next(line for line in lines if line.startswith("  blocklist blocklist.csv"))
    entries = len(rows) - 1
    assert f"{len(rows) + 3} lines read = 2 blank/comment/header + {entries} entries + 2 " in block
    written = [line.split(" in ", 1)[1] for line in lines if "quarantined lines in" in line]
    assert any(path.endswith("blocklist.csv.tsv") for path in written)
    for path in written:  # the files named are where the lines are
        assert Path(path).is_file() and Path(path).read_text().startswith("line\treason\traw\n")


def test_check_fails_when_every_blocklist_line_is_invalid(site: Path, tmp_path: Path) -> None:
    broken = copy_of(site, tmp_path)
    (broken / "intel" / "blocklist.csv").write_text("domain,family\nnot a name,x\n-x-.com,y\n")
    lines, code = check_site(broken)
    text = "\n".join(lines)
    assert code == 1
    assert "blocklist.csv: every one of the 2 entries of the blocklist is invalid" in text


def test_score_exits_non_zero_on_a_cut_gzip_stream(
    site: Path, model_path: Path, tmp_path: Path, capsys
) -> None:
    log = tmp_path / "logs" / "day.log.gz"
    log.parent.mkdir()
    shutil.copy(first_log(site), log)
    cut_gzip(log)
    code = score_command(
        model=model_path,
        logs=[log.parent],
        out=tmp_path / "alerts.jsonl",
        site_dir=None,
        threshold=0.99,
    )
    captured = capsys.readouterr()
    assert code == 1 and "day.log.gz: the gzip stream is truncated" in captured.err
    assert (tmp_path / "alerts.jsonl").is_file()  # what was read is still scored


ZEEK_HEAD = b"#separator \\x09\n#fields\tts\tquery\n"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "extra-field.log",
            b"#separator \\x09\n#fields\tts\tquery\tqtype_name\n"
            + b"1767225600.5\texample.com\n" * 20,
        ),
        ("swapped.log", ZEEK_HEAD + b"example.com\t1767225600.5\n" * 20),
        ("int-query.parquet", None),
    ],
)
def test_score_fails_loudly_on_unreadable_columns(
    model_path: Path, tmp_path: Path, capsys, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"ts": [1.7e9] * 20, "query": pa.array(range(20))}), path)
    else:
        path.write_bytes(content)
    code = score_command(
        model=model_path, logs=[path], out=tmp_path / "alerts.jsonl", site_dir=None, threshold=0.5
    )
    captured = capsys.readouterr()
    assert code == 1, captured
    assert f"{name}: none of its 20 data lines could be read" in captured.err


def test_score_never_reads_its_own_output(model_path: Path, tmp_path: Path, capsys) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    body = "".join(f"{1767225600 + i}.0\tq{i % 50}x{i % 7}.example\n" for i in range(400))
    (logs / "dns.log").write_bytes(ZEEK_HEAD + body.encode())
    out = logs / "alerts.jsonl"
    results = []
    for run in range(3):
        code = score_command(model=model_path, logs=[logs], out=out, site_dir=None, threshold=0.0)
        captured = capsys.readouterr()
        assert code == 0, captured
        results.append(re.search(r"read ([\d,]+) lines from (\d+) file", captured.out).groups())
        if run == 1:  # an earlier run's alerts kept under another name are output too
            shutil.copy(out, logs / "alerts-yesterday.jsonl")
            (logs / "old-quarantine.tsv").write_text("line\treason\traw\n7\tblank\t\n")
    assert results == [("402", "1")] * 3
    assert out.read_text().count("\n") == 350  # one alert per distinct name at threshold 0


def test_score_quarantines_a_gzip_bomb_line_and_scores_the_rest(
    model_path: Path, tmp_path: Path, capsys
) -> None:
    member = gzip.compress(b"a" * (1 << 20))
    path = tmp_path / "bomb.log.gz"
    tail = b"\n" + b"1767225600.5\texample.com\n" * 40
    path.write_bytes(gzip.compress(ZEEK_HEAD) + member * 8 + gzip.compress(tail))
    code = score_command(
        model=model_path, logs=[path], out=tmp_path / "alerts.jsonl", site_dir=None, threshold=0.0
    )
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "read 43 lines from 1 file(s): 40 records, 1 quarantined" in captured.out
    quarantine = (tmp_path / "alerts.jsonl.quarantine" / "bomb.log.gz.tsv").read_text()
    assert "\n3\tline-too-long\taaa" in quarantine


def test_evaluate_exits_non_zero_on_a_cut_gzip_stream(
    site: Path, model_path: Path, tmp_path: Path, capsys
) -> None:
    from client.evaluate import evaluate_command

    broken = copy_of(site, tmp_path)
    log = sorted((broken / "logs").glob("dns.*.log.gz"))[-1]  # a test day: it is scored
    cut_gzip(log)
    code = evaluate_command(model=model_path, site=broken, days=None, out=tmp_path / "report")
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert f"{log.name}: the gzip stream is truncated" in captured.err
    assert "the evaluation covers only the lines that were read" in captured.err
