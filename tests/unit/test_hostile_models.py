"""Hostile model files (issue 18): one clear error before any large allocation, never a traceback.

A model file reaches a site from the coordinator or an operator's disk, so every field of it is
untrusted: the archive, the JSON header, every spec dimension and every array's declared dtype
and shape. Each probe below crashed or loaded before the checks in `common.model`; the memory
probes run in a child process under RLIMIT_AS, where an allocation of the declared size fails.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.model import (
    ModelFileError,
    ModelSpec,
    build_model,
    load_model_file,
    model_from_bytes,
    model_to_bytes,
)
from tests.conftest import run_fedsec

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1536 * 2**20  # RLIMIT_AS for the probes: torch alone maps about 0.7 GiB
SPEC_MEMBER = "__spec_json__.npy"
SMALL = ModelSpec(embedding_dim=4, filters_per_width=4, widths=(2, 3), hidden=4, max_chars=16)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_declaring(shape: tuple[int, ...], dtype: str, payload: bytes = b"\0" * 64) -> bytes:
    """An .npy member whose header declares `shape` but which holds only `payload`."""
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


def _members(model_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _header_bytes(header: object) -> bytes:
    text = header if isinstance(header, str) else json.dumps(header)
    return _npy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8))


def _with_spec(**overrides: object) -> bytes:
    """The default model's archive with spec fields overridden in its JSON header."""
    members = _members(model_to_bytes(build_model(seed=0)))
    header = json.loads(np.load(io.BytesIO(members[SPEC_MEMBER])).tobytes())
    header["spec"].update(overrides)
    members[SPEC_MEMBER] = _header_bytes(header)
    return _zip(members)


def _with_member(name: str, data: bytes) -> bytes:
    members = _members(model_to_bytes(build_model(seed=0)))
    members[name] = data
    return _zip(members)


def _header_bomb(size: int = 128 * 2**20) -> bytes:
    """A valid archive whose JSON header is padded with `size` spaces: ~0.7 MiB deflated."""
    members = _members(_good())
    text = json.dumps({"format_version": 1, "spec": {}}).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members.items():
            if name != SPEC_MEMBER:
                archive.writestr(name, data)
        with archive.open(SPEC_MEMBER, "w") as stream:
            header = {"descr": "|u1", "fortran_order": False, "shape": (len(text) + size,)}
            np.lib.format.write_array_header_1_0(stream, header)
            stream.write(text)
            chunk = b" " * 2**20
            for _ in range(size // len(chunk)):
                stream.write(chunk)
    return buffer.getvalue()


def _good() -> bytes:
    return model_to_bytes(build_model(seed=0))


# name -> (archive builder, text the one-line error must contain)
PROBES = {
    "truncated-zip": (lambda: _good()[: len(_good()) // 2], "not a fedsec model archive"),
    "empty-file": (lambda: b"", "not a fedsec model archive"),
    "not-a-zip": (lambda: b"PK\x03\x04" + b"\xff" * 300, "not a fedsec model archive"),
    "bad-json-header": (
        lambda: _with_member(SPEC_MEMBER, _header_bytes("{not json")),
        "header",
    ),
    "header-not-an-object": (lambda: _with_member(SPEC_MEMBER, _header_bytes("[1, 2]")), "header"),
    "deep-json-header": (lambda: _with_member(SPEC_MEMBER, _header_bytes("[" * 50_000)), "header"),
    "string-dimension": (lambda: _with_spec(hidden="64"), "hidden"),
    "bool-dimension": (lambda: _with_spec(embedding_dim=True), "embedding_dim"),
    "float-dimension": (lambda: _with_spec(max_chars=64.0), "max_chars"),
    "vocab-size-10**13": (lambda: _with_spec(vocab_size=10**13), "vocab_size"),
    "max-chars-10**7": (lambda: _with_spec(max_chars=10**7), "max_chars"),
    "widths-not-a-list": (lambda: _with_spec(widths="2345"), "widths"),
    "too-many-parameters": (
        lambda: _with_spec(embedding_dim=512, filters_per_width=512, hidden=2048),
        "parameters",
    ),
    "nan-dropout": (lambda: _with_spec(dropout=float("nan")), "dropout"),
    "huge-spec-member": (
        lambda: _with_member(SPEC_MEMBER, _npy_declaring((2**31,), "|u1")),
        "header",
    ),
    "decompression-bomb": (_header_bomb, "uncompressed"),
    "array-declares-4-GiB": (
        lambda: _with_member("embedding.weight.npy", _npy_declaring((2**30,), "<f4")),
        "embedding.weight",
    ),
    "array-wrong-dtype": (
        lambda: _with_member("hidden.bias.npy", _npy(np.zeros(64, dtype=np.float64))),
        "hidden.bias",
    ),
    "object-array": (
        lambda: _with_member("hidden.bias.npy", _npy_declaring((64,), "|O")),
        "hidden.bias",
    ),
    "array-short-data": (
        lambda: _with_member("hidden.bias.npy", _npy(np.zeros(64, np.float32))[:-40]),
        "hidden.bias",
    ),
    "nan-weight": (
        lambda: _with_member("hidden.bias.npy", _npy(np.full(64, np.nan, np.float32))),
        "NaN",
    ),
    "unexpected-member": (
        lambda: _with_member("extra.npy", _npy(np.zeros(3, np.float32))),
        "extra",
    ),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_hostile_archive_is_one_clear_error(probe: str) -> None:
    build, expected = PROBES[probe]
    with pytest.raises(ModelFileError) as caught:
        model_from_bytes(build(), source="bad.npz")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("bad.npz: ")
    assert expected in message
    assert "(fix: " in message


def test_a_good_archive_still_loads_and_errors_are_value_errors() -> None:
    model, spec = model_from_bytes(model_to_bytes(build_model(SMALL, seed=1)))
    assert spec == SMALL
    assert issubclass(ModelFileError, ValueError)  # the commands print ValueError as one line


def test_load_model_file_checks_the_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    with path.open("wb") as stream:
        stream.truncate(300 * 2**20)  # sparse: no disk or memory used
    with pytest.raises(ModelFileError, match=r"big\.npz: .*MiB.*\(fix: "):
        load_model_file(path)
    with pytest.raises(ModelFileError, match=r"missing\.npz: cannot read"):
        load_model_file(tmp_path / "missing.npz")


_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
sys.path.insert(0, {root!r})
from common.model import ModelFileError, model_from_bytes
for path in sys.argv[1:]:
    try:
        model_from_bytes(open(path, "rb").read(), source=path)
    except ModelFileError as error:
        print("refused", path)
    else:
        print("loaded", path)
"""


def test_memory_probes_are_refused_under_a_memory_limit(tmp_path: Path) -> None:
    names = [
        "max-chars-10**7",
        "vocab-size-10**13",
        "array-declares-4-GiB",
        "huge-spec-member",
        "decompression-bomb",
    ]
    paths = []
    for name in names:
        paths.append(tmp_path / f"{len(paths)}.npz")
        paths[-1].write_bytes(PROBES[name][0]())
    script = _CHILD.format(limit=MEMORY_LIMIT, root=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split().count("refused") == len(names), result.stdout


@pytest.mark.parametrize("probe", ["truncated-zip", "max-chars-10**7"])
def test_score_with_a_hostile_model_prints_one_line(probe: str, tmp_path: Path) -> None:
    model = tmp_path / "bad.npz"
    model.write_bytes(PROBES[probe][0]())
    logs = tmp_path / "dns.log"
    logs.write_text("")
    out = tmp_path / "alerts.jsonl"
    result = run_fedsec(
        ["score", "--model", str(model), "--logs", str(logs), "--out", str(out)],
        tmp_path=tmp_path,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("fedsec: error: "), result.stderr
    assert PROBES[probe][1] in errors[0] and "(fix: " in errors[0]
    assert not out.exists()


# --- fuzz: mutated archives and hostile headers ----------------------------------------------

_SMALL_ARCHIVE = model_to_bytes(build_model(SMALL, seed=2))
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_SPEC_FIELDS = st.sampled_from(
    ["embedding_dim", "filters_per_width", "widths", "hidden", "dropout", "max_chars",
     "vocab_size", "reads", "format_version"]
)  # fmt: skip


def _assert_loads_or_refuses(data: bytes) -> None:
    try:
        model_from_bytes(data, source="fuzz.npz")
    except ModelFileError as error:
        assert "\n" not in str(error) and str(error).startswith("fuzz.npz: ")


_FUZZ = settings(
    max_examples=int(os.environ.get("FEDSEC_FUZZ_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)


@_FUZZ
@given(cut=st.integers(min_value=0, max_value=len(_SMALL_ARCHIVE)), flips=st.data())
def test_fuzz_mutated_archives_load_or_refuse(cut: int, flips: st.DataObject) -> None:
    data = bytearray(_SMALL_ARCHIVE[:cut] if cut % 3 == 0 else _SMALL_ARCHIVE)
    positions = flips.draw(st.lists(st.integers(0, max(len(data) - 1, 0)), max_size=6))
    for position in positions:
        if data:
            data[position] ^= flips.draw(st.integers(1, 255))
    _assert_loads_or_refuses(bytes(data))


@_FUZZ
@given(field=_SPEC_FIELDS, value=_JSON_VALUES)
def test_fuzz_spec_fields_load_or_refuse(field: str, value: object) -> None:
    members = _members(_SMALL_ARCHIVE)
    header = json.loads(np.load(io.BytesIO(members[SPEC_MEMBER])).tobytes())
    target = header if field == "format_version" else header["spec"]
    target[field] = value
    members[SPEC_MEMBER] = _header_bytes(header)
    _assert_loads_or_refuses(_zip(members))


@_FUZZ
@given(
    member=st.sampled_from(sorted(_members(_SMALL_ARCHIVE))),
    shape=st.lists(st.integers(0, 2**40), max_size=3).map(tuple),
    dtype=st.sampled_from(["<f4", "<f8", ">f4", "|u1", "|O", "<i8", "|b1", "<U4"]),
)
def test_fuzz_member_headers_load_or_refuse(member: str, shape: tuple, dtype: str) -> None:
    _assert_loads_or_refuses(
        _zip({**_members(_SMALL_ARCHIVE), member: _npy_declaring(shape, dtype)})
    )


@pytest.mark.slow
def test_fuzz_runs_under_a_memory_limit() -> None:
    """The fuzz tests above, again in a child whose address space is capped."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-k", "test_fuzz_ and not limit",
                              {str(Path(__file__))!r}]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "FEDSEC_FUZZ_EXAMPLES": "30"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
