"""Log readers behind one registry: Zeek TSV (streamed), Zeek JSON, CSV, Parquet; fuzzing
(with the line cap at its default and at 40 bytes, so overlong lines are accounted too)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.quarantine import Quarantine
from client.readers import (
    READERS,
    STREAMS,
    LineBlocks,
    LogFormatError,
    ReadStats,
    collect,
    detect_format,
    parse_timestamps,
    read_zeek_tsv,
    stream_zeek_tsv,
)
from client.readers import lines as line_blocks
from client.readers.csv_log import stream_csv_log
from client.readers.zeek_json import stream_zeek_json

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURES, ZEEK = ROOT / "readers", ROOT / "zeek"
CSV_MAPPING = {"ts": "timestamp", "query": "qname", "qtype_name": "qtype", "id.orig_h": "client"}


def read(
    fmt: str, path: Path, tmp_path: Path, columns=("ts", "query", "qtype_name"), mapping=None
) -> tuple[pa.Table, ReadStats, dict[int, tuple[str, str]]]:
    quarantine = Quarantine(tmp_path / "quarantine")
    table, stats = READERS[fmt](path, quarantine=quarantine, columns=columns, mapping=mapping)
    quarantine.close()
    assert stats.lines_read == stats.header_lines + stats.records + sum(stats.quarantined.values())
    assert table.num_rows == stats.records and table.column_names[-1] == "line"
    assert table.schema.field("ts").type == pa.float64()
    return table, stats, quarantined(quarantine, path)


def quarantined(quarantine: Quarantine, path: Path) -> dict[int, tuple[str, str]]:
    file = quarantine.file_for(path)
    if file is None:
        return {}
    rows = [line.split("\t") for line in file.read_text(encoding="utf-8").splitlines()[1:]]
    return {int(row[0]): (row[1], row[2]) for row in rows}


# --- Zeek TSV: the registry and the streamed reader agree with the whole-file reader --------


@pytest.mark.parametrize(
    "name", ["dns.log", "crlf.log", "truncated.log", "reordered.log", "concatenated.log"]
)
@pytest.mark.parametrize("block_bytes", [64, 700, 1 << 20])
def test_streamed_tsv_equals_the_whole_file_reader(
    tmp_path: Path, name: str, block_bytes: int
) -> None:
    path = ZEEK / name
    whole, whole_stats = read_zeek_tsv(path, quarantine=Quarantine(tmp_path / "a"))
    stream = stream_zeek_tsv(path, quarantine=Quarantine(tmp_path / "b"), block_bytes=block_bytes)
    table, stats = collect(stream, ("ts", "query", "qtype_name", "rcode_name"))
    assert table.equals(whole) and stats == whole_stats
    registry, _ = READERS["zeek-tsv"](
        path,
        quarantine=Quarantine(tmp_path / "c"),
        columns=("ts", "query", "qtype_name", "rcode_name"),
    )
    assert registry.equals(whole)


def test_streamed_tsv_header_lines_escapes_unset_and_vectors(tmp_path: Path) -> None:
    stream = stream_zeek_tsv(
        ZEEK / "dns.log",
        quarantine=Quarantine(tmp_path),
        columns=("ts", "query", "answers", "TTLs"),
        block_bytes=300,
    )
    table, stats = collect(stream, ("ts", "query", "answers", "TTLs"))
    assert stats.header_lines == 9 and stats.quarantined == {
        "too-few-fields": 1,
        "bad-timestamp": 1,
    }
    rows = {row["line"]: row for row in table.to_pylist()}
    assert rows[10]["query"] == "café.example" and rows[17]["query"] == "a\tb.example"
    assert rows[11]["query"] is None and rows[11]["answers"] is None  # unset
    assert rows[12]["query"] is None  # (empty)
    assert rows[16]["answers"] == "" and rows[16]["TTLs"] == ""  # (empty) vectors
    assert rows[9]["answers"] == "93.184.216.34"


def test_streamed_tsv_rotated_gzip_members_and_a_cut_stream(tmp_path: Path) -> None:
    first, second = (ZEEK / "dns.log").read_bytes(), (ZEEK / "reordered.log").read_bytes()
    joined = tmp_path / "joined.log.gz"
    joined.write_bytes(gzip.compress(first) + gzip.compress(second) + b"\0\0")
    table, stats = collect(
        stream_zeek_tsv(joined, quarantine=Quarantine(tmp_path / "q"), block_bytes=256),
        ("ts", "query"),
    )
    assert stats.records == 9 and not stats.compressed_stream_truncated
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(gzip.compress(first * 200, compresslevel=1)[:-200])
    _, stats = collect(
        stream_zeek_tsv(cut, quarantine=Quarantine(tmp_path / "q2"), block_bytes=4096),
        ("ts", "query"),
    )
    assert stats.compressed_stream_truncated and stats.records > 0
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not gzip" * 8)
    with pytest.raises(LogFormatError, match="bad.log.gz"):
        list(LineBlocks(bad))


def test_line_blocks_end_at_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_bytes(b"".join(b"x" * (index % 7) + b"\n" for index in range(300)) + b"tail")
    blocks = list(LineBlocks(path, block_bytes=50))
    assert b"".join(block for block, _ in blocks) == path.read_bytes()
    assert all(block.endswith(b"\n") for block, last in blocks if not last)
    assert [last for _, last in blocks].count(True) == 1 and blocks[-1][1]


def test_mapping_is_refused_for_zeek_tsv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="columns"):
        READERS["zeek-tsv"](
            ZEEK / "dns.log",
            quarantine=Quarantine(tmp_path),
            columns=("ts", "query"),
            mapping={"query": "qname"},
        )


# --- Zeek JSON ------------------------------------------------------------------------------

JSON_COLUMNS = ("ts", "query", "qtype_name", "rcode_name", "answers", "TTLs", "AA", "id.orig_p")


def test_json_fields_types_escapes_unset_and_vectors(tmp_path: Path) -> None:
    table, stats, bad = read("zeek-json", FIXTURES / "dns.json.log", tmp_path, JSON_COLUMNS)
    rows = {row["line"]: row for row in table.to_pylist()}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7, 15]
    assert rows[1] | {"ts": 0} == {
        "ts": 0,
        "query": "www.example.com",
        "qtype_name": "A",
        "rcode_name": "NOERROR",
        "answers": "93.184.216.34,93.184.216.35",
        "TTLs": "3600,60",
        "AA": "F",
        "id.orig_p": "53124",
        "line": 1,
    }
    assert rows[1]["ts"] == pytest.approx(1709251205.10101)
    assert rows[2]["query"] == "café.example" and rows[2]["answers"] == ""  # \xNN, empty vector
    assert rows[3]["query"] is None and rows[3]["rcode_name"] is None  # unset: field omitted
    assert rows[4]["query"] is None  # empty string
    assert rows[5]["query"] == "WWW.Example.ORG."  # other field order, not normalised
    assert rows[6]["ts"] == 1709251209.75  # ISO 8601
    assert rows[7]["ts"] == 1709251210.5  # epoch milliseconds
    assert rows[15]["query"] == "a\tb.example"
    assert bad == {
        8: ("blank", ""),
        9: ("bad-timestamp", bad[9][1]),
        10: ("bad-timestamp", bad[10][1]),
        11: ("bad-json", "this is not json"),
        12: ("bad-json", '["an","array"]'),
        13: ("bad-field-type", bad[13][1]),
        14: ("undecodable", bad[14][1]),
    }
    assert stats.header_lines == 0 and stats.lines_read == 15


def test_json_truncated_last_line_header_lines_gzip_and_crlf(tmp_path: Path) -> None:
    table, stats, bad = read("zeek-json", FIXTURES / "truncated.json.log", tmp_path / "a")
    assert table["line"].to_pylist() == [1, 2] and list(bad) == [3] and bad[3][0] == "truncated"
    table, stats, _ = read("zeek-json", FIXTURES / "headers.json.log", tmp_path / "b")
    assert stats.header_lines == 4 and table["line"].to_pylist() == [4, 5]
    text = (FIXTURES / "dns.json.log").read_bytes()
    packed = tmp_path / "dns.json.log.gz"
    packed.write_bytes(gzip.compress(text.replace(b"\n", b"\r\n")))
    plain, plain_stats, _ = read(
        "zeek-json", FIXTURES / "dns.json.log", tmp_path / "c", JSON_COLUMNS
    )
    crlf, crlf_stats, _ = read("zeek-json", packed, tmp_path / "d", JSON_COLUMNS)
    assert crlf.equals(plain) and crlf_stats.quarantined == plain_stats.quarantined


def test_json_bulk_and_line_by_line_paths_agree(tmp_path: Path) -> None:
    good = [line for line in (FIXTURES / "dns.json.log").read_text().splitlines()[:7]]
    path = tmp_path / "good.json"
    path.write_text("\n".join(good) + "\n")
    bulk, _ = collect(
        stream_zeek_json(path, quarantine=Quarantine(tmp_path / "a"), columns=JSON_COLUMNS),
        JSON_COLUMNS,
    )
    mixed = tmp_path / "mixed.json"  # a blank line sends every block down the slow path
    mixed.write_text("\n".join(good) + "\n\n")
    slow, _ = collect(
        stream_zeek_json(mixed, quarantine=Quarantine(tmp_path / "b"), columns=JSON_COLUMNS),
        JSON_COLUMNS,
    )
    assert slow.equals(bulk)


def test_json_mapping_renames_fields(tmp_path: Path) -> None:
    path = tmp_path / "renamed.json"
    path.write_text('{"@timestamp":"2024-03-01T00:00:00Z","dns.qname":"x.example"}\n')
    table, _, _ = read(
        "zeek-json",
        path,
        tmp_path,
        ("ts", "query"),
        mapping={"ts": "@timestamp", "query": "dns.qname"},
    )
    assert table.to_pylist() == [{"ts": 1709251200.0, "query": "x.example", "line": 1}]


# --- CSV --------------------------------------------------------------------------------------


def test_csv_mapping_quotes_bom_crlf_and_bad_lines(tmp_path: Path) -> None:
    table, stats, bad = read(
        "csv",
        FIXTURES / "dns.csv",
        tmp_path,
        ("ts", "query", "qtype_name", "id.orig_h"),
        CSV_MAPPING,
    )
    assert table.to_pylist() == [
        {
            "ts": 1709251205.1,
            "query": "www.example.com",
            "qtype_name": "A",
            "id.orig_h": "10.0.0.5",
            "line": 2,
        },
        {
            "ts": 1709251206.0,
            "query": "quoted,comma.example",
            "qtype_name": "AAAA",
            "id.orig_h": "10.0.0.6",
            "line": 3,
        },
        {
            "ts": 1709251207.0,
            "query": 'say "hi".example',
            "qtype_name": "TXT",
            "id.orig_h": "10.0.0.7",
            "line": 4,
        },
        {"ts": 1709251208.0, "query": None, "qtype_name": "A", "id.orig_h": "10.0.0.8", "line": 5},
        {
            "ts": 1709251211.0,
            "query": "naive-iso.example",
            "qtype_name": "A",
            "id.orig_h": "10.0.0.12",
            "line": 10,
        },
    ]
    assert {line: reason for line, (reason, _) in bad.items()} == {
        6: "blank",
        7: "bad-timestamp",
        8: "too-few-fields",
        9: "too-many-fields",
        11: "truncated",
    }
    assert bad[8][1] == "1709251209.0,10.0.0.10,few"
    assert stats.header_lines == 1 and stats.lines_read == 11


def test_csv_other_column_order_and_gzip(tmp_path: Path) -> None:
    mapping = {"ts": "timestamp", "query": "qname", "qtype_name": "qtype"}
    table, _, _ = read("csv", FIXTURES / "reordered.csv", tmp_path / "a", mapping=mapping)
    assert table.to_pylist() == [
        {"ts": 1709337600.5, "query": "one.example.net", "qtype_name": "A", "line": 2},
        {"ts": 1709337601.25, "query": "two.example.net", "qtype_name": "AAAA", "line": 3},
    ]
    packed = tmp_path / "reordered.csv.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "reordered.csv").read_bytes()))
    again, _, _ = read("csv", packed, tmp_path / "b", mapping=mapping)
    assert again.equals(table)


def test_csv_quote_spanning_lines_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "span.csv"
    path.write_text('ts,query\n1.0,"open\n2.0,close"\n3.0,fine.example\n')
    table, _, bad = read("csv", path, tmp_path, ("ts", "query"))
    assert table["line"].to_pylist() == [3, 4] and list(bad) == [2]


def test_csv_missing_mapped_column_names_the_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"dns\.csv.*qname.*\[logs\] columns"):
        READERS["csv"](
            FIXTURES / "dns.csv",
            quarantine=Quarantine(tmp_path),
            columns=("ts", "query"),
            mapping={"ts": "timestamp"},
        )
    with pytest.raises(LogFormatError, match="zeek-tsv"):
        READERS["csv"](ZEEK / "dns.log", quarantine=Quarantine(tmp_path), columns=("ts", "query"))


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_types_mapping_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "dns.parquet"
    pq.write_table(
        pa.table(
            {
                "time": pa.array(
                    [1709251205_000000, None, 1709251206_500000, 1709251207_000000],
                    pa.timestamp("us", tz="UTC"),
                ),
                "qname": pa.array([b"www.example.com", b"x.example", b"bad\xff", b""], pa.binary()),
                "qtype_name": pa.array(["A", "A", "AAAA", "TXT"]).dictionary_encode(),
                "answers": pa.array([["1.2.3.4", "5.6.7.8"], [], None, ["x"]]),
            }
        ),
        path,
        row_group_size=3,
    )
    table, stats, bad = read(
        "parquet",
        path,
        tmp_path,
        ("ts", "query", "qtype_name", "answers", "rcode_name"),
        mapping={"ts": "time", "query": "qname"},
    )
    assert table.to_pylist() == [
        {
            "ts": 1709251205.0,
            "query": "www.example.com",
            "qtype_name": "A",
            "answers": "1.2.3.4,5.6.7.8",
            "rcode_name": None,
            "line": 1,
        },
        {
            "ts": 1709251207.0,
            "query": None,
            "qtype_name": "TXT",
            "answers": "x",
            "rcode_name": None,
            "line": 4,
        },
    ]
    assert {line: reason for line, (reason, _) in bad.items()} == {
        2: "bad-timestamp",
        3: "undecodable",
    }
    assert json.loads(bad[2][1])["time"] is None
    assert stats.lines_read == 4 and stats.header_lines == 0


def test_parquet_epoch_and_text_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "epoch.parquet"
    pq.write_table(
        pa.table({"ts": [1709251205.5, 1709251206500.0], "query": ["a.example", "b.example"]}), path
    )
    table, _, _ = read("parquet", path, tmp_path, ("ts", "query"))
    assert table["ts"].to_pylist() == [1709251205.5, 1709251206.5]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(LogFormatError, match="broken.parquet"):
        READERS["parquet"](broken, quarantine=Quarantine(tmp_path), columns=("ts", "query"))


def test_detect_format_and_timestamps(tmp_path: Path) -> None:
    assert detect_format(ZEEK / "dns.log") == "zeek-tsv"
    assert detect_format(FIXTURES / "dns.json.log") == "zeek-json"
    assert detect_format(FIXTURES / "dns.csv") == "csv"
    packed = tmp_path / "x.json.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "dns.json.log").read_bytes()))
    assert detect_format(packed) == "zeek-json"
    values = parse_timestamps(
        pa.array(
            ["1.5", "1709251200000", "2024-03-01T01:00:00+01:00", "nan", "inf", "", None, "soon"]
        )
    )
    assert values.to_pylist() == [1.5, 1709251200.0, 1709251200.0, None, None, None, None, None]


# --- fuzzing: arbitrary and mutated lines never crash a reader; every line is accounted ------

_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"), max_size=12)
_JSON_GOOD = st.builds(
    lambda ts, query, answers: json.dumps({"ts": ts, "query": query, "answers": answers}),
    st.one_of(st.floats(0, 2e12, allow_nan=False), st.integers(-5, 2**40), _TEXT),
    st.one_of(_TEXT, st.integers(), st.none()),
    st.lists(_TEXT, max_size=3),
)
_CSV_GOOD = st.builds(
    lambda ts, query: f'{ts},"{query}"',
    st.floats(0, 2e9, allow_nan=False),
    _TEXT.map(lambda t: t.replace('"', '""')),
)
_NOISE = st.one_of(
    st.text(st.sampled_from('{}[]",:\\x0f9 #\r\t-é\udcffab'), max_size=30),
    st.binary(max_size=30).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
)


def _mutations(good):
    return st.one_of(
        good,
        good.map(lambda line: line[: len(line) // 2]),
        good.map(lambda line: line + ",x"),
        good.map(lambda line: "#" + line),
        _NOISE,
    )


def _write(tmp_path: Path, lines: list[str], *, end: str, gz: bool, header: str = "") -> Path:
    text = header + "\n".join(lines) + ("\n" if end else "")
    raw = (text.replace("\n", "\r\n") if end == "\r\n" else text).encode("utf-8", "surrogateescape")
    path = tmp_path / ("fuzz.gz" if gz else "fuzz.log")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _accounted(table: pa.Table, stats: ReadStats, quarantine: Quarantine, path: Path) -> None:
    assert stats.lines_read == stats.header_lines + stats.records + sum(stats.quarantined.values())
    lines = set(table["line"].to_pylist())
    bad = set(quarantined(quarantine, path))
    assert len(lines) == table.num_rows and not lines & bad
    assert len(lines | bad) == stats.records + sum(stats.quarantined.values())
    assert lines | bad <= set(range(1, stats.lines_read + 1))
    assert table["ts"].null_count == 0


def _overlong(path: Path, cap: int) -> int:
    """Lines of the (gunzipped) file longer than ``cap`` bytes, newline excluded."""
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw.startswith(b"\x1f\x8b") else raw
    lines = raw.split(b"\n")
    lines = lines[:-1] if raw.endswith(b"\n") or not raw else lines
    return sum(len(line) > cap for line in lines)


_CAPS = st.sampled_from([None, 40])  # None: the reader's own line cap; 40: many lines over it


def _capped(cap: int | None):
    """The readers' line cap set to ``cap`` (kept when None) for the duration of a with."""
    return mock.patch.object(line_blocks, "MAX_LINE_BYTES", cap or line_blocks.MAX_LINE_BYTES)


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(
    body=st.lists(_mutations(_JSON_GOOD), max_size=20),
    end=st.sampled_from(["\n", "\r\n", ""]),
    gz=st.booleans(),
    block_bytes=st.sampled_from([40, 1 << 20]),
    cap=_CAPS,
)
def test_fuzz_json(tmp_path_factory, body, end, gz, block_bytes, cap) -> None:
    tmp_path = tmp_path_factory.mktemp("json")
    path = _write(tmp_path, body, end=end, gz=gz)
    quarantine = Quarantine(tmp_path / "q")
    if re.search(r"(?:^|\n)#fields", "\n".join(body)):
        # A Zeek TSV header among the lines: the reader names the right format instead.
        with pytest.raises(LogFormatError, match="zeek-tsv"):
            collect(stream_zeek_json(path, quarantine=quarantine), ("ts", "query"))
        return
    with _capped(cap):
        table, stats = collect(
            stream_zeek_json(
                path,
                quarantine=quarantine,
                columns=("ts", "query", "answers"),
                block_bytes=block_bytes,
            ),
            ("ts", "query", "answers"),
        )
    quarantine.close()
    _accounted(table, stats, quarantine, path)
    assert stats.quarantined.get("line-too-long", 0) == _overlong(path, cap or 1 << 20)
    shutil.rmtree(tmp_path)


@FUZZ
@given(
    body=st.lists(_mutations(_CSV_GOOD), max_size=20),
    end=st.sampled_from(["\n", "\r\n", ""]),
    gz=st.booleans(),
    block_bytes=st.sampled_from([40, 1 << 20]),
    cap=_CAPS,
)
def test_fuzz_csv(tmp_path_factory, body, end, gz, block_bytes, cap) -> None:
    tmp_path = tmp_path_factory.mktemp("csv")
    path = _write(tmp_path, body, end=end, gz=gz, header="ts,query\n")
    quarantine = Quarantine(tmp_path / "q")
    with _capped(cap):
        table, stats = collect(
            stream_csv_log(
                path, quarantine=quarantine, columns=("ts", "query"), block_bytes=block_bytes
            ),
            ("ts", "query"),
        )
    quarantine.close()
    _accounted(table, stats, quarantine, path)
    assert stats.quarantined.get("line-too-long", 0) == _overlong(path, cap or 1 << 20)
    assert stats.header_lines == 1
    shutil.rmtree(tmp_path)


_TSV_HEADER = "#separator \\x09\n#fields\tts\tquery\tqtype_name\n#types\ttime\tstring\tstring\n"
_TSV_GOOD = st.builds(
    lambda ts, query: f"{ts}\t{query}\tA",
    st.floats(0, 2e9, allow_nan=False),
    _TEXT.map(lambda text: text.replace("\t", " ")),
)


@FUZZ
@given(
    body=st.lists(_mutations(_TSV_GOOD), max_size=20),
    end=st.sampled_from(["\n", "\r\n", ""]),
    gz=st.booleans(),
    block_bytes=st.sampled_from([30, 1 << 20]),
    cap=_CAPS,
)
def test_fuzz_streamed_tsv_equals_whole_file(
    tmp_path_factory, body, end, gz, block_bytes, cap
) -> None:
    tmp_path = tmp_path_factory.mktemp("tsv")
    path = _write(tmp_path, body, end=end, gz=gz, header=_TSV_HEADER)
    with _capped(cap):
        try:
            whole, whole_stats = read_zeek_tsv(path, quarantine=Quarantine(tmp_path / "a"))
        except LogFormatError:
            with pytest.raises(LogFormatError):
                list(stream_zeek_tsv(path, quarantine=Quarantine(tmp_path / "b")))
            return
        quarantine = Quarantine(tmp_path / "b")
        table, stats = collect(
            stream_zeek_tsv(path, quarantine=quarantine, block_bytes=block_bytes),
            whole.column_names[:-1],
        )
    quarantine.close()
    assert table.equals(whole) and stats == whole_stats
    _accounted(table, stats, quarantine, path)
    assert stats.quarantined.get("line-too-long", 0) == _overlong(path, cap or 1 << 20)
    shutil.rmtree(tmp_path)


@FUZZ
@given(
    ts=st.lists(st.one_of(st.none(), _TEXT, st.floats(allow_nan=True).map(str)), max_size=15),
    data=st.data(),
)
def test_fuzz_parquet(tmp_path_factory, ts, data) -> None:
    tmp_path = tmp_path_factory.mktemp("parquet")
    queries = data.draw(
        st.lists(st.one_of(st.none(), st.binary(max_size=12)), min_size=len(ts), max_size=len(ts))
    )
    path = tmp_path / "fuzz.parquet"
    pq.write_table(
        pa.table({"ts": pa.array(ts, pa.string()), "query": pa.array(queries, pa.binary())}),
        path,
        row_group_size=4,
    )
    quarantine = Quarantine(tmp_path / "q")
    table, stats = collect(
        STREAMS["parquet"](path, quarantine=quarantine, columns=("ts", "query")), ("ts", "query")
    )
    quarantine.close()
    _accounted(table, stats, quarantine, path)
    shutil.rmtree(tmp_path)


def test_json_reader_refuses_zeek_tsv(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"dns\.log.*zeek-tsv"):
        READERS["zeek-json"](
            ZEEK / "dns.log", quarantine=Quarantine(tmp_path), columns=("ts", "query")
        )
