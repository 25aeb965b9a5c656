"""Hostile log files (issue 18): bounded memory, a clear error or a quarantined line, never a
traceback, and every line accounted for (read = header + records + quarantined)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from client.quarantine import Quarantine
from client.readers import READERS, STREAMS, LineBlocks, LogFormatError, collect, lines
from client.scoring import unscored

MEMORY_LIMIT = int(1.5 * 2**30)  # address space of the probe process: far below the old 4.5 GB
PEAK_RSS_LIMIT_MB = 512  # and what it really touched (VmHWM), whatever the allocator reserves
# Arrow's default allocator (mimalloc) reserves about 1 GiB of address space at its first large
# allocation, which RLIMIT_AS counts as if it were used; the probes use the system allocator
# so the address-space limit measures the readers, and check the peak RSS as well.
PROBE_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}
HEADS = {
    "zeek-tsv": b"#separator \\x09\n#fields\tts\tquery\n",
    "zeek-json": b"",
    "csv": b"ts,query\n",
}
GOOD = {
    "zeek-tsv": b"1700000000.5\texample.com\n",
    "zeek-json": b'{"ts": 1700000000.5, "query": "example.com"}\n',
    "csv": b"1700000000.5,example.com\n",
}


def gzip_bomb(path: Path, *, head: bytes, line_mib: int, tail: bytes) -> Path:
    """A small gzip file (one member per MiB) that inflates to one line of ``line_mib`` MiB."""
    member = gzip.compress(b"a" * (1 << 20), compresslevel=9)
    path.write_bytes(gzip.compress(head) + member * line_mib + gzip.compress(b"\n" + tail))
    return path


def run_limited(code: str) -> dict:
    """Run ``code`` in a fresh interpreter under RLIMIT_AS; it prints one JSON object."""
    probe = textwrap.dedent(
        f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        """
    ) + textwrap.dedent(code)
    probe += textwrap.dedent(
        """
        from pathlib import Path
        status = Path("/proc/self/status").read_text().splitlines()
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        print(json.dumps({"peak_rss_mb": peak // 1024}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **PROBE_ENV},
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    *_, result, peak = done.stdout.strip().splitlines()
    assert json.loads(peak)["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, peak
    return json.loads(result)


@pytest.mark.parametrize("fmt", ["zeek-tsv", "zeek-json", "csv"])
def test_a_400_mb_line_in_a_small_gzip_is_quarantined_in_bounded_memory(
    tmp_path: Path, fmt: str
) -> None:
    path = gzip_bomb(tmp_path / "bomb.gz", head=HEADS[fmt], line_mib=400, tail=GOOD[fmt] * 3)
    assert path.stat().st_size < 1 << 20
    result = run_limited(
        f"""
        from client.quarantine import Quarantine
        from client.readers import READERS
        with Quarantine({str(tmp_path / "q")!r}) as quarantine:
            table, stats = READERS[{fmt!r}](
                {str(path)!r}, quarantine=quarantine, columns=("ts", "query")
            )
        raw = quarantine.file_for({str(path)!r}).read_text()
        print(json.dumps({{"stats": stats.__dict__, "queries": table["query"].to_pylist(),
                           "raw": raw}}))
        """
    )
    stats = result["stats"]
    heads = {"zeek-tsv": 2, "zeek-json": 0, "csv": 1}[fmt]
    assert stats["quarantined"] == {"line-too-long": 1}
    assert stats["header_lines"] == heads and stats["records"] == 3
    assert stats["lines_read"] == heads + 1 + 3  # the long line and every line after it
    assert result["queries"] == ["example.com"] * 3
    assert f"{heads + 1}\tline-too-long\taaaa" in result["raw"]
    assert f"[a line of {400 << 20} bytes]" in result["raw"]
    assert len(result["raw"]) < 1000  # the quarantine keeps the first bytes, not the line


def test_the_line_cap_is_the_same_whatever_the_block_size(tmp_path: Path) -> None:
    body = b"short\n" + b"x" * 50 + b"\nmid\n" + b"y" * 30 + b"\nend"
    path = tmp_path / "lines.txt"
    path.write_bytes(body)
    for block_bytes in (4, 16, 1 << 20):
        segments = list(LineBlocks(path, block_bytes=block_bytes, max_line_bytes=20).segments())
        kept = b"".join(block for block, _, _ in segments)
        overlong = [text for _, _, cut in segments for text in cut]
        assert kept == b"short\nmid\nend"
        assert [text[:20] + text[-20:] for text in overlong] == [
            "x" * 20 + "[a line of 50 bytes]",
            "y" * 20 + "[a line of 30 bytes]",
        ]
        assert [last for _, last, _ in segments].count(True) == 1


@pytest.mark.parametrize("fmt", ["zeek-tsv", "zeek-json", "csv"])
def test_an_overlong_last_line_is_counted_and_quarantined(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "log"
    path.write_bytes(HEADS[fmt] + GOOD[fmt] + b"b" * 300)
    with mock.patch.object(lines, "MAX_LINE_BYTES", 100), Quarantine(tmp_path / "q") as quarantine:
        table, stats = READERS[fmt](path, quarantine=quarantine, columns=("ts", "query"))
    assert stats.quarantined == {"line-too-long": 1} and stats.records == 1
    assert stats.lines_read == stats.header_lines + 2


def test_a_csv_header_over_128_kib_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(b"ts,query," + b"c" * (200 << 10) + b"\n1,example.com,x\n")
    with pytest.raises(LogFormatError, match=r"wide\.csv: line 1: the CSV header cannot be read"):
        READERS["csv"](path, quarantine=Quarantine(tmp_path / "q"), columns=("ts", "query"))
    path.write_bytes(b"ts,query," + b"c" * (3 << 20) + b"\n1,example.com,x\n")
    with pytest.raises(LogFormatError, match=r"wide\.csv: line 1: the CSV header is longer"):
        READERS["csv"](path, quarantine=Quarantine(tmp_path / "q2"), columns=("ts", "query"))


def test_a_cut_gzip_stream_and_unreadable_columns_are_named_as_unscored(tmp_path: Path) -> None:
    text = HEADS["zeek-tsv"] + GOOD["zeek-tsv"] * 5000
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(gzip.compress(text, compresslevel=1)[:-100])
    extra = tmp_path / "extra.log"  # the header names one column more than the data has
    extra.write_bytes(b"#separator \\x09\n#fields\tts\tquery\tqtype_name\n" + GOOD["zeek-tsv"] * 9)
    swapped = tmp_path / "swapped.log"  # ts and query swapped in the data
    swapped.write_bytes(HEADS["zeek-tsv"] + b"example.com\t1700000000.5\n" * 9)
    integer = tmp_path / "int.parquet"
    pq.write_table(pa.table({"ts": [1.7e9] * 4, "query": pa.array([1, 2, 3, 4])}), integer)
    some_bad = tmp_path / "some.log"
    some_bad.write_bytes(HEADS["zeek-tsv"] + GOOD["zeek-tsv"] * 9 + b"garbage\n")
    clean = tmp_path / "clean.log"
    clean.write_bytes(HEADS["zeek-tsv"] + GOOD["zeek-tsv"] * 9)
    expected = {
        cut: "gzip stream is truncated",
        extra: "none of its 9 data lines could be read (too-few-fields 9)",
        swapped: "none of its 9 data lines could be read (bad-timestamp 9)",
        integer: "none of its 4 data lines could be read (bad-field-type 4)",
        some_bad: "1 of its 10 data lines were quarantined",
        clean: None,
    }
    for path, problem in expected.items():
        fmt = "parquet" if path.suffix == ".parquet" else "zeek-tsv"
        _, stats = collect(
            STREAMS[fmt](path, quarantine=Quarantine(tmp_path / "q"), columns=("ts", "query")),
            ("ts", "query"),
        )
        problems = unscored(stats, max_malformed_rate=0.05)
        if problem is None:
            assert problems == []
        else:
            assert len(problems) == 1 and problem in problems[0] and str(path) in problems[0]


# --- fuzz: hostile sizes under a memory limit ------------------------------------------------

_FUZZ_PROBE = """
from hypothesis import example, given, settings, strategies as st, HealthCheck
import gzip, pathlib, tempfile
from client.quarantine import Quarantine
from client.readers import READERS, LogFormatError

HEADS = {heads!r}
MEMBER = gzip.compress(b"a" * (1 << 20), compresslevel=9)
runs = []

@settings(max_examples={examples}, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(
    fmt=st.sampled_from(sorted(HEADS)),
    parts=st.lists(
        st.one_of(
            st.integers(1, 48).map(lambda mib: ("long", mib)),
            st.binary(max_size=40).map(lambda raw: ("raw", raw)),
            st.sampled_from([b"\\n", b"\\r\\n", b"#x\\n", b"{{\\n", b"1,a.com\\n"]).map(
                lambda raw: ("raw", raw)
            ),
        ),
        max_size=6,
    ),
    cut=st.integers(0, 64),
)
@example(fmt=sorted(HEADS)[0], parts=[], cut=len(gzip.compress(HEADS[sorted(HEADS)[0]])) - 1)
def probe(fmt, parts, cut):
    folder = pathlib.Path(tempfile.mkdtemp())
    data = gzip.compress(HEADS[fmt])
    for kind, value in parts:
        data += MEMBER * value if kind == "long" else gzip.compress(value)
    path = folder / "log.gz"
    path.write_bytes(data[: len(data) - cut])
    try:
        with Quarantine(folder / "q") as quarantine:
            table, stats = READERS[fmt](path, quarantine=quarantine, columns=("ts", "query"))
    except LogFormatError:
        runs.append("error")
        return
    quarantined = sum(stats.quarantined.values())
    assert stats.lines_read == stats.header_lines + stats.records + quarantined, stats
    assert table.num_rows == stats.records
    if not stats.compressed_stream_truncated:  # count the lines without holding them
        newlines, size, last = 0, 0, b"\\n"
        # The readers sniff gzip by its two magic bytes, as here: a .gz cut to its first byte
        # is a one-byte plain file, not a gzip stream.
        gzipped = path.read_bytes()[:2] == b"\\x1f\\x8b"
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as stream:
            while piece := stream.read(1 << 20):
                newlines, size, last = newlines + piece.count(b"\\n"), size + 1, piece[-1:]
        assert stats.lines_read == newlines + (size > 0 and last != b"\\n"), stats
    runs.append("read")

probe()
print(json.dumps({{"runs": len(runs), "read": runs.count("read")}}))
"""


@pytest.mark.slow
def test_fuzz_hostile_sizes_in_bounded_memory() -> None:
    result = run_limited(_FUZZ_PROBE.format(heads=HEADS, examples=40))
    assert result["runs"] >= 40 and result["read"] > 0


def test_gzip_bomb_helper_inflates_to_one_line(tmp_path: Path) -> None:
    path = gzip_bomb(tmp_path / "b.gz", head=b"h\n", line_mib=2, tail=b"t\n")
    assert zlib.decompress(path.read_bytes(), wbits=31) == b"h\n"  # first member only
    assert gzip.decompress(path.read_bytes()) == b"h\n" + b"a" * (2 << 20) + b"\nt\n"


def test_a_file_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "dns.log"
    folder.mkdir()
    for fmt in ("zeek-tsv", "zeek-json", "csv"):
        with pytest.raises(LogFormatError, match=r"dns\.log: cannot be read \(Is a directory\)"):
            READERS[fmt](folder, quarantine=Quarantine(tmp_path / "q"), columns=("ts", "query"))


def test_a_parquet_dictionary_bomb_and_a_huge_value_stay_bounded(tmp_path: Path) -> None:
    rows = 5_000  # one 2 MiB text repeated: 10 GB decoded, 2 KB on disk
    query = pa.DictionaryArray.from_arrays(
        pa.array([0] * rows, pa.int32()), pa.array(["a" * (2 << 20)])
    )
    bomb = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"ts": [1.7e9] * rows, "query": query}), bomb, compression="zstd")
    huge = tmp_path / "huge.parquet"
    pq.write_table(
        pa.table({"ts": [1.7e9], "query": ["b" * (136 << 20)]}), huge, compression="zstd"
    )
    assert bomb.stat().st_size + huge.stat().st_size < 1 << 20
    result = run_limited(
        f"""
        from client.quarantine import Quarantine
        from client.readers import READERS, LogFormatError
        with Quarantine({str(tmp_path / "q")!r}) as quarantine:
            _, stats = READERS["parquet"]({str(bomb)!r}, quarantine=quarantine)
            try:
                READERS["parquet"]({str(huge)!r}, quarantine=quarantine)
                error = ""
            except LogFormatError as caught:
                error = str(caught)
        print(json.dumps({{"stats": stats.__dict__, "error": error}}))
        """
    )
    assert result["stats"]["quarantined"] == {"line-too-long": rows}
    assert result["stats"]["lines_read"] == rows and result["stats"]["records"] == 0
    assert (
        "huge.parquet: row group 0 holds 136 MiB of column 'query' uncompressed" in result["error"]
    )


def test_parquet_rows_decode_in_slices_with_their_row_numbers(tmp_path: Path) -> None:
    from client.readers import parquet

    names = [f"{'x' * (index % 40)}n{index}.example" for index in range(500)]
    names[7] = "y" * 300  # over the (lowered) line cap
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"ts": [1.7e9 + i for i in range(500)], "query": names}), path)
    with (
        mock.patch.object(parquet, "SLICE_BYTES", 1000),
        mock.patch.object(lines, "MAX_LINE_BYTES", 200),
        Quarantine(tmp_path / "q") as quarantine,
    ):
        stream = STREAMS["parquet"](path, quarantine=quarantine, columns=("ts", "query"))
        tables = []
        while True:
            try:
                tables.append(next(stream))
            except StopIteration as stop:
                stats = stop.value
                break
    assert len(tables) > 10  # sliced
    table = pa.concat_tables(tables)
    assert stats.quarantined == {"line-too-long": 1} and stats.records == 499
    assert table["line"].to_pylist() == [row for row in range(1, 501) if row != 8]
    assert table["query"].to_pylist() == names[:7] + names[8:]
