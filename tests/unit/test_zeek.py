"""Zeek dns.log reader and quarantine: headers, escapes, gzip, CRLF, bad lines, line accounting."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from client.quarantine import Quarantine, escape_field
from client.readers import LogFormatError, ReadStats, zeek_tsv
from client.readers.zeek_tsv import read_zeek_tsv, unescape_zeek

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zeek"
HEADER = [
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tdns",
    "#open\t2024-03-01-00-00-05",
    "#fields\tts\tuid\tquery\tqtype_name\trcode_name",
    "#types\ttime\tstring\tstring\tstring\tstring",
]


def read(path: Path, tmp_path: Path, **kwargs) -> tuple[pa.Table, ReadStats, Quarantine]:
    quarantine = Quarantine(tmp_path / "quarantine")
    table, stats = read_zeek_tsv(path, quarantine=quarantine, **kwargs)
    quarantine.close()
    assert_accounted(stats)
    return table, stats, quarantine


def assert_accounted(stats: ReadStats) -> None:
    assert stats.lines_read == stats.header_lines + stats.records + sum(stats.quarantined.values())


def quarantine_rows(quarantine: Quarantine, source: Path) -> list[list[str]]:
    path = quarantine.file_for(source)
    if path is None:
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line\treason\traw"
    return [line.split("\t") for line in lines[1:]]


def write(tmp_path: Path, name: str, lines: list[str], *, end: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes((end.join(lines) + end).encode("utf-8", "surrogateescape"))
    return path


def test_dns_log_every_header_line_and_schema(tmp_path: Path) -> None:
    table, stats, _ = read(FIXTURES / "dns.log", tmp_path)
    assert stats.header_lines == 9  # separator .. types, and #close
    assert stats.lines_read == 18
    assert stats.records == 7 == table.num_rows
    assert stats.quarantined == {"too-few-fields": 1, "bad-timestamp": 1}
    assert table.schema == pa.schema(
        [
            ("ts", pa.float64()),
            ("query", pa.string()),
            ("qtype_name", pa.string()),
            ("rcode_name", pa.string()),
            ("line", pa.int64()),
        ]
    )
    assert table["line"].to_pylist() == [9, 10, 11, 12, 13, 16, 17]
    assert table["ts"][0].as_py() == pytest.approx(1709251205.10101)


def test_escapes_unset_and_empty(tmp_path: Path) -> None:
    table, _, _ = read(FIXTURES / "dns.log", tmp_path)
    rows = {row["line"]: row for row in table.to_pylist()}
    assert rows[10]["query"] == "café.example"  # UTF-8 bytes written as \xNN
    assert rows[11]["query"] is None and rows[11]["qtype_name"] is None  # unset '-'
    assert rows[12]["query"] is None and rows[12]["qtype_name"] == "TXT"  # (empty)
    assert rows[13]["query"] == "-"  # Zeek writes a literal '-' as \x2d: not unset
    assert rows[16]["query"] == "WWW.Example.ORG."  # not normalised here
    assert rows[17]["query"] == "a\tb.example"


def test_malformed_lines_go_to_the_quarantine_file_with_line_numbers(tmp_path: Path) -> None:
    path = FIXTURES / "dns.log"
    _, stats, quarantine = read(path, tmp_path)
    rows = quarantine_rows(quarantine, path)
    assert [(row[0], row[1]) for row in rows] == [("14", "too-few-fields"), ("15", "bad-timestamp")]
    assert rows[0][2] == escape_field("1709251207.5\tCxyz\t10.0.0.5\t53124")
    assert quarantine.file_for(path) == tmp_path / "quarantine" / "dns.log.tsv"
    assert quarantine.counts_for(path) == stats.quarantined
    assert quarantine.total == 2


def test_separator_declared_as_hex_escape(tmp_path: Path) -> None:
    lines = ["#separator \\x7c", "#fields|ts|query|qtype_name", "1.5|a.example|A", "2.5|b\\x7cc|-"]
    table, stats, _ = read(write(tmp_path, "pipe.log", lines), tmp_path)
    assert table["query"].to_pylist() == ["a.example", "b|c"]
    assert table["qtype_name"].to_pylist() == ["A", None]
    assert table["rcode_name"].to_pylist() == [None, None]  # not in #fields: null
    assert stats.header_lines == 2


def test_gzip_reads_like_plain(tmp_path: Path) -> None:
    plain, plain_stats, _ = read(FIXTURES / "dns.log", tmp_path / "plain")
    packed = tmp_path / "dns.log.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "dns.log").read_bytes()))
    table, stats, _ = read(packed, tmp_path / "gz")
    assert table.equals(plain)
    assert stats.quarantined == plain_stats.quarantined
    assert not stats.compressed_stream_truncated


def test_gzip_multi_member_and_truncated_stream(tmp_path: Path) -> None:
    first, second = (FIXTURES / "dns.log").read_bytes(), (FIXTURES / "reordered.log").read_bytes()
    joined = tmp_path / "joined.log.gz"  # `cat a.gz b.gz`, as rotation scripts do
    joined.write_bytes(gzip.compress(first) + gzip.compress(second))
    table, stats, _ = read(joined, tmp_path)
    assert stats.records == 7 + 2
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(gzip.compress(first * 50, compresslevel=1)[:-40])
    _, stats, _ = read(cut, tmp_path / "cut")
    assert stats.compressed_stream_truncated and stats.records > 0


def test_corrupt_gzip_is_a_format_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 4)
    with pytest.raises(LogFormatError, match="bad.log.gz"):
        read_zeek_tsv(bad, quarantine=Quarantine(tmp_path / "q"))


def test_crlf_reads_like_lf(tmp_path: Path) -> None:
    table, stats, quarantine = read(FIXTURES / "crlf.log", tmp_path)
    assert table["query"].to_pylist() == ["crlf-one.example.com", "crlf-two.example.com"]
    assert table["rcode_name"].to_pylist() == ["NOERROR", "NOERROR"]  # no trailing '\r'
    assert stats.quarantined == {} and quarantine.total == 0


def test_truncated_last_line(tmp_path: Path) -> None:
    path = FIXTURES / "truncated.log"
    table, stats, quarantine = read(path, tmp_path)
    assert table["query"].to_pylist() == ["whole.example.com"]
    assert stats.quarantined == {"truncated": 1}
    assert quarantine_rows(quarantine, path)[0][:2] == ["10", "truncated"]


def test_different_fields_order(tmp_path: Path) -> None:
    table, _, _ = read(FIXTURES / "reordered.log", tmp_path)
    assert table.to_pylist() == [
        {
            "ts": 1709337600.5,
            "query": "one.example.net",
            "qtype_name": None,
            "rcode_name": "NOERROR",
            "line": 9,
        },
        {
            "ts": 1709337601.25,
            "query": "two.example.net",
            "qtype_name": None,
            "rcode_name": "NXDOMAIN",
            "line": 10,
        },
    ]


def test_two_concatenated_header_blocks(tmp_path: Path) -> None:
    table, stats, _ = read(FIXTURES / "concatenated.log", tmp_path)
    assert table["query"].to_pylist() == [
        "first.example.com",
        "second.example.com",
        "third.example.com",
    ]
    assert table["line"].to_pylist() == [9, 10, 20]
    assert table["ts"].to_pylist() == [1709251200.0, 1709251201.0, 1709254800.0]
    assert stats.header_lines == 18


def test_blank_lines_bad_escapes_and_stray_bytes(tmp_path: Path) -> None:
    lines = HEADER + [
        "1.0\tC1\tok.example\tA\tNOERROR",
        "",
        "2.0\tC2\tlone\\backslash.example\tA\tNOERROR",
        "3.0\tC3\tbad\\xffutf8.example\tA\tNOERROR",
        "4.0\tC4\traw\udcffbyte.example\tA\tNOERROR",  # a raw 0xff byte Zeek would have escaped
        "5.0\tC5\tbare\rcr.example\tA\tNOERROR",
        "\r",
        "6.0\tC6\textra\tA\tNOERROR\tsurplus",
        "-\tC7\tunset-ts.example\tA\tNOERROR",
        "nan\tC8\tnan-ts.example\tA\tNOERROR",
    ]
    path = write(tmp_path, "mixed.log", lines)
    table, stats, quarantine = read(path, tmp_path)
    assert table["query"].to_pylist() == ["ok.example", "bare\rcr.example"]
    assert stats.quarantined == {
        "blank": 2,
        "bad-escape": 1,
        "undecodable": 2,
        "too-many-fields": 1,
        "bad-timestamp": 2,
    }
    reasons = {int(row[0]): row[1] for row in quarantine_rows(quarantine, path)}
    assert reasons == {
        10: "blank",
        11: "bad-escape",
        12: "undecodable",
        13: "undecodable",
        15: "blank",
        16: "too-many-fields",
        17: "bad-timestamp",
        18: "bad-timestamp",
    }


def test_missing_query_column_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError) as error:
        read_zeek_tsv(FIXTURES / "conn.log", quarantine=Quarantine(tmp_path))
    message = str(error.value)
    assert "conn.log" in message and "query" in message and "[logs] format" in message


@pytest.mark.parametrize(
    ("name", "hint"), [("dns.csv", "not Zeek TSV"), ("dns.json.log", "zeek-json")]
)
def test_not_zeek_tsv_names_the_file_and_the_setting(tmp_path: Path, name: str, hint: str) -> None:
    with pytest.raises(LogFormatError) as error:
        read_zeek_tsv(FIXTURES / name, quarantine=Quarantine(tmp_path))
    assert name in str(error.value) and hint in str(error.value)
    assert "[logs] format" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_bad_separator_declaration(tmp_path: Path) -> None:
    path = write(tmp_path, "sep.log", ["#separator \\x09\\x09", "#fields\tts\tquery"])
    with pytest.raises(LogFormatError, match="sep.log"):
        read_zeek_tsv(path, quarantine=Quarantine(tmp_path))


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    table, stats, _ = read(empty, tmp_path)
    assert table.num_rows == 0 and stats.lines_read == 0 and "line" in table.column_names
    table, stats, _ = read(write(tmp_path, "head.log", HEADER), tmp_path)
    assert table.num_rows == 0 and stats.header_lines == len(HEADER)


def test_unescape_zeek() -> None:
    assert unescape_zeek("caf\\xC3\\xA9") == ("café", None)
    assert unescape_zeek("a\\x5cb") == ("a\\b", None)
    assert unescape_zeek("a\\b") == (None, "bad-escape")
    assert unescape_zeek("\\xff") == (None, "undecodable")
    assert unescape_zeek("a\\b\\xff", strict=False) == ("a\\b\\xff", None)


def test_quarantine_escaping_and_name_collisions(tmp_path: Path) -> None:
    with Quarantine(tmp_path / "q") as quarantine:
        assert not (tmp_path / "q").exists()  # created on the first write only
        quarantine.add(source="a/dns.log", line_number=3, reason="blank", raw="x\ty\\z\nw")
        quarantine.add(source="b/dns.log", line_number=4, reason="blank", raw="")
        quarantine.add(source="b/dns.log", line_number=9, reason="truncated", raw="cut")
    first, second = quarantine.file_for("a/dns.log"), quarantine.file_for("b/dns.log")
    assert first is not None and second is not None and first != second
    assert first.read_text().splitlines() == ["line\treason\traw", "3\tblank\tx\\ty\\\\z\\nw"]
    assert quarantine.counts() == {"blank": 2, "truncated": 1}
    assert quarantine.counts_for("b/dns.log") == {"blank": 1, "truncated": 1}
    assert quarantine.total == 3


def test_chunked_parsing_keeps_line_numbers(tmp_path: Path) -> None:
    body = [f"{index}.5\tC\tq{index}.example\tA\tNOERROR" for index in range(200)]
    body[57] = "broken"
    path = write(tmp_path, "many.log", HEADER + body)
    # many chunks parsed by a thread pool, each in several Arrow blocks
    with (
        mock.patch.object(zeek_tsv, "CHUNK_BYTES", 1000),
        mock.patch.object(zeek_tsv, "ARROW_BLOCK_BYTES", 100),
    ):
        table, stats, quarantine = read(path, tmp_path)
    assert stats.records == 199
    lines = table["line"].to_pylist()
    assert lines == [len(HEADER) + 1 + index for index in range(200) if index != 57]
    assert table["query"].to_pylist()[:2] == ["q0.example", "q1.example"]
    assert quarantine_rows(quarantine, path)[0][:2] == [str(len(HEADER) + 58), "too-few-fields"]


def test_hash_signs_inside_lines_are_data(tmp_path: Path) -> None:
    body = [f"{index}.0\tC#{index}\tq{index}.example\tA\tNOERROR" for index in range(100)]
    path = write(tmp_path, "hash.log", HEADER + body + ["#close\t2024", *body[:2]])
    table, stats, _ = read(path, tmp_path)
    assert stats.records == 102 and stats.header_lines == len(HEADER) + 1
    assert table["line"].to_pylist()[-2:] == [len(HEADER) + 102, len(HEADER) + 103]


_GOOD = st.builds(
    lambda ts, query: f"{ts}\tC\t{query}\tA\tNOERROR",
    st.floats(0, 2e9, allow_nan=False),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\t\n\r"), max_size=20),
)
_LINE = st.one_of(
    _GOOD,
    _GOOD.map(lambda line: line[: len(line) // 2]),
    _GOOD.map(lambda line: line + "\textra"),
    st.text(st.sampled_from("ab.-\\x0f9\t\r #(empty)é\udcff"), max_size=30),
    st.binary(max_size=30).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
)


@settings(max_examples=150, deadline=None)
@example(body=["\n#fields"], end="\n", chunk_bytes=16, block_bytes=48, gz=False)
@given(
    body=st.lists(_LINE, max_size=25),
    end=st.sampled_from(["\n", "\r\n", ""]),
    chunk_bytes=st.sampled_from([16, 1 << 20]),
    block_bytes=st.sampled_from([48, 1 << 20]),
    gz=st.booleans(),
)
def test_random_lines_never_crash_and_every_line_is_accounted(
    tmp_path_factory: pytest.TempPathFactory,
    body: list[str],
    end: str,
    chunk_bytes: int,
    block_bytes: int,
    gz: bool,
) -> None:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    text = "\n".join(HEADER + body) + ("\n" if end == "\n" else "")
    raw = text.replace("\n", "\r\n") if end == "\r\n" else text
    data = raw.encode("utf-8", "surrogateescape")
    path = tmp_path / ("fuzz.log.gz" if gz else "fuzz.log")
    path.write_bytes(gzip.compress(data) if gz else data)
    quarantine = Quarantine(tmp_path / "q")
    try:
        with (
            mock.patch.object(zeek_tsv, "CHUNK_BYTES", chunk_bytes),
            mock.patch.object(zeek_tsv, "ARROW_BLOCK_BYTES", block_bytes),
        ):
            table, stats = read_zeek_tsv(path, quarantine=quarantine)
    except LogFormatError:  # only a mutated header line ('#fields ...', '#separator ...')
        # A generated line may hold a newline, so look at the lines the reader sees.
        assert any(line.startswith("#") for line in "\n".join(body).split("\n"))
        return
    finally:
        quarantine.close()
    assert_accounted(stats)
    header_lines = {
        number for number, line in enumerate(data.split(b"\n"), start=1) if line.startswith(b"#")
    }
    record_lines = set(table["line"].to_pylist())
    quarantined_lines = {int(row[0]) for row in quarantine_rows(quarantine, path)}
    assert len(record_lines) == table.num_rows and len(header_lines) == stats.header_lines
    assert header_lines | record_lines | quarantined_lines == set(range(1, stats.lines_read + 1))
    assert not (record_lines & quarantined_lines) and not (header_lines & record_lines)
    assert table["ts"].null_count == 0
    shutil.rmtree(tmp_path)
