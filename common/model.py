"""Character-level CNN for domain names, its spec, and float-array / bytes codecs."""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.convpool import conv_max_pool
from common.features import MAX_DOMAIN_CHARS, MODEL_READS, PAD_ID, VOCAB_SIZE, encode_names

_FORMAT_VERSION = 1
_SPEC_KEY = "__spec_json__"

# Bounds on a model that arrives as a file, checked before anything is allocated. Each is far
# above the default model (46,753 parameters, 64 characters, 288 activations per character)
# and far below what would exhaust a site's memory.
DIMENSION_LIMITS: dict[str, tuple[int, int]] = {
    "embedding_dim": (1, 512),
    "filters_per_width": (1, 512),
    "hidden": (1, 2048),
    "max_chars": (1, 256),  # a DNS name has at most 253 characters
    "vocab_size": (VOCAB_SIZE, 1024),  # the encoder emits ids below VOCAB_SIZE
}
MAX_WIDTHS = 8
MAX_PARAMETERS = 4 * 2**20  # 16 MiB of float32 weights; the default model has 46,753
# Floats one name occupies in the widest layer; a 1,024-name scoring batch stays near 0.5 GiB.
MAX_ACTIVATIONS_PER_NAME = 2**17
MAX_MODEL_BYTES = 64 * 2**20  # a model file (np.savez stores arrays uncompressed)
MAX_HEADER_BYTES = 64 * 2**10  # the JSON header with the spec
MAX_MEMBERS = 64  # arrays in the archive (the default model has 13)
MAX_NPY_HEADER = 4096  # one array's .npy header
MAX_DECOMPRESSED_BYTES = 4 * MAX_PARAMETERS + MAX_HEADER_BYTES + MAX_MEMBERS * MAX_NPY_HEADER

_MODEL_FIX = "fix: pass a model.npz written by a fedsec run or `model_to_bytes`"


class ModelFileError(ValueError):
    """A model file is unusable: one line naming the file, what is wrong and the fix."""


def _shown(value: object) -> str:
    """A value for an error message, at most 40 characters (a header can hold anything)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's 4,300-digit conversion limit
        return f"a number of {value.bit_length():,} bits" if isinstance(value, int) else "?"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _whole_number(name: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python, and "64" or 64.0 in a header is a damaged or forged file.
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"ModelSpec.{name} must be a whole number, got {_shown(value)}")
    if not low <= int(value) <= high:
        raise ValueError(f"ModelSpec.{name} must be in [{low}, {high}], got {_shown(value)}")
    return int(value)


def spec_parameter_count(spec: ModelSpec) -> int:
    """CharCNN's parameter count for `spec`, computed without building it."""
    convs = sum(
        spec.embedding_dim * spec.filters_per_width * width + spec.filters_per_width
        for width in spec.widths
    )
    hidden = spec.filters_per_width * len(spec.widths) * spec.hidden + spec.hidden
    return spec.vocab_size * spec.embedding_dim + convs + hidden + spec.hidden + 1


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of CharCNN; everything needed to rebuild an empty model.

    Every field is type- and range-checked (DIMENSION_LIMITS, MAX_WIDTHS, MAX_PARAMETERS,
    MAX_ACTIVATIONS_PER_NAME) because a spec also arrives inside model files.
    """

    embedding_dim: int = 32
    filters_per_width: int = 64
    widths: tuple[int, ...] = (2, 3, 4, 5)
    hidden: int = 64
    dropout: float = 0.2
    max_chars: int = MAX_DOMAIN_CHARS
    vocab_size: int = VOCAB_SIZE
    reads: str = "registered-psl"  # what of a name it reads: common.features.model_view

    def __post_init__(self) -> None:
        for name, (low, high) in DIMENSION_LIMITS.items():
            object.__setattr__(self, name, _whole_number(name, getattr(self, name), low, high))
        object.__setattr__(self, "widths", self._checked_widths())
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float | np.floating):
            raise ValueError(f"ModelSpec.dropout must be a number, got {_shown(dropout)}")
        if not 0.0 <= dropout < 1.0:  # compared before float(): 10**400 would overflow
            raise ValueError(f"ModelSpec.dropout must be in [0, 1), got {_shown(dropout)}")
        object.__setattr__(self, "dropout", float(dropout))
        if not isinstance(self.reads, str) or self.reads not in MODEL_READS:
            raise ValueError(
                f"ModelSpec.reads must be one of {list(MODEL_READS)}, got {_shown(self.reads)}"
            )
        self._check_size()

    def _checked_widths(self) -> tuple[int, ...]:
        widths = self.widths
        if not isinstance(widths, list | tuple) or not 1 <= len(widths) <= MAX_WIDTHS:
            raise ValueError(
                f"ModelSpec.widths must be a list of 1 to {MAX_WIDTHS} whole numbers, each in "
                f"[1, max_chars]; got {_shown(widths)}"
            )
        return tuple(_whole_number("widths", width, 1, self.max_chars) for width in widths)

    def _check_size(self) -> None:
        parameters = spec_parameter_count(self)
        if parameters > MAX_PARAMETERS:
            raise ValueError(
                f"ModelSpec has {parameters:,} parameters, above the limit of {MAX_PARAMETERS:,}"
            )
        activations = self.max_chars * (
            self.embedding_dim + self.filters_per_width * len(self.widths)
        )
        if activations > MAX_ACTIVATIONS_PER_NAME:
            raise ValueError(
                f"ModelSpec needs {activations:,} activations per name, above the limit of "
                f"{MAX_ACTIVATIONS_PER_NAME:,} (max_chars x (embedding_dim + "
                "filters_per_width x len(widths)))"
            )

    def encode(self, names) -> np.ndarray:
        """The names as this model's input: what it reads, as character ids."""
        return encode_names(list(names), reads=self.reads, max_chars=self.max_chars)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_fields(json.loads(text))

    @classmethod
    def from_fields(cls, fields: object) -> ModelSpec:
        """A spec from a parsed JSON object; ValueError for anything that is not a valid one."""
        if not isinstance(fields, dict):
            raise ValueError(f"a ModelSpec must be a JSON object, got {type(fields).__name__}")
        fields = {"reads": "name", **fields}  # models saved before `reads` read whole names
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(
                f"unknown ModelSpec fields {sorted(map(_shown, unknown))}; known fields are "
                f"{sorted(known)}"
            )
        return cls(**fields)


class CharCNN(nn.Module):
    """Embedding -> parallel Conv1d per width + ReLU -> global max pool -> MLP -> one logit.

    Input: integer ids [batch, max_chars] (encode_domains' uint8, widened per batch);
    output: float32 logits [batch].
    Dropout is applied functionally so training can pass an explicit torch.Generator.
    Leading columns that are padding in every row are cropped before the convolutions
    (keeping max(widths) of them), which changes no output: every all-padding window
    yields the same activation, and one such window per width is kept.
    """

    def __init__(self, spec: ModelSpec = ModelSpec()) -> None:
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(
            nn.Conv1d(spec.embedding_dim, spec.filters_per_width, kernel_size=width)
            for width in spec.widths
        )
        self.hidden = nn.Linear(spec.filters_per_width * len(spec.widths), spec.hidden)
        self.output = nn.Linear(spec.hidden, 1)

    def forward(
        self, domains: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        domains = _crop_shared_padding(domains, keep=max(self.spec.widths)).long()
        pooled = conv_max_pool(
            domains,
            self.embedding.weight,
            tuple(conv.weight for conv in self.convs),
            tuple(conv.bias for conv in self.convs),
        )
        hidden = torch.relu(self.hidden(pooled))
        hidden = _dropout(hidden, rate=self.spec.dropout, active=self.training, generator=generator)
        return self.output(hidden).squeeze(1)


def _crop_shared_padding(domains: torch.Tensor, *, keep: int) -> torch.Tensor:
    # Short names are left-padded to max_chars; skipping shared padding is most of the speed-up
    # when predict_scores batches names of similar length.
    has_real_char = (domains != PAD_ID).any(dim=0)
    first_real = (
        int(has_real_char.to(torch.int8).argmax())
        if bool(has_real_char.any())
        else domains.shape[1]
    )
    start = max(0, first_real - keep)
    return domains[:, start:] if start else domains


def _dropout(
    values: torch.Tensor, *, rate: float, active: bool, generator: torch.Generator | None
) -> torch.Tensor:
    if not active or rate == 0.0:
        return values
    keep = torch.rand(values.shape, generator=generator, dtype=values.dtype) >= rate
    return values * keep / (1.0 - rate)


@functools.lru_cache(maxsize=8)
def _template(spec: ModelSpec) -> CharCNN:
    # Built once per spec and process, then copied: a model is needed for every message that
    # carries one. Built on the CPU with the global RNG saved and restored around it (its
    # initial weights are never used: build_model draws them from the run's seed). Not on the
    # meta device: the first initialiser call there imports torch._dynamo, ~1.3-2 CPU s in
    # every fresh process (the ServerApp, each cold ClientApp, each actor), against ~15 ms here.
    with torch.random.fork_rng(devices=[]):
        return CharCNN(spec)


def array_shapes(spec: ModelSpec = ModelSpec()) -> list[tuple[int, ...]]:
    """The shapes of model_to_ndarrays' arrays for `spec`, in order (no weights made)."""
    return [tuple(t.shape) for t in _template(spec).state_dict().values()]


def _empty_model(spec: ModelSpec) -> CharCNN:
    """A CharCNN with uninitialised CPU storage (~2 ms: a copy of the template)."""
    return copy.deepcopy(_template(spec)).to_empty(device="cpu")


def build_model(spec: ModelSpec = ModelSpec(), *, seed: int) -> CharCNN:
    """A freshly initialised CharCNN; the same spec and seed always give the same weights."""
    model = _empty_model(spec)
    generator = torch.Generator().manual_seed(int(seed))
    seed_embedding(model.embedding, generator=generator)
    seed_layers((*model.convs, model.hidden, model.output), generator=generator)
    return model


@torch.no_grad()
def seed_embedding(embedding: nn.Embedding, *, generator: torch.Generator) -> None:
    """Standard-normal character vectors from `generator`, the padding id's at zero."""
    nn.init.normal_(embedding.weight, std=1.0, generator=generator)
    embedding.weight[PAD_ID].zero_()


@torch.no_grad()
def seed_layers(layers, *, generator: torch.Generator) -> None:
    """torch's default scheme for Linear and Conv layers (Kaiming-uniform weights, biases
    uniform in +-1/sqrt(fan-in)), drawn from `generator` in order: the same seed, the same
    weights."""
    for layer in layers:
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(layer.weight[0].numel())
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def model_to_ndarrays(model: CharCNN) -> list[np.ndarray]:
    """Float32 copies of every state_dict entry, in state_dict order."""
    return [
        tensor.detach().cpu().numpy().astype(np.float32, copy=True)
        for tensor in model.state_dict().values()
    ]


def ndarrays_to_model(arrays: Sequence[np.ndarray], *, spec: ModelSpec = ModelSpec()) -> CharCNN:
    """Rebuild a CharCNN from model_to_ndarrays output; count and shapes are checked first."""
    model = _empty_model(spec)
    expected = model.state_dict()
    if len(arrays) != len(expected):
        raise ValueError(
            f"expected {len(expected)} arrays for {spec}, got {len(arrays)}; "
            "pass the arrays from model_to_ndarrays of a model built with the same spec"
        )
    state = {}
    for index, ((name, target), array) in enumerate(zip(expected.items(), arrays, strict=True)):
        array = np.asarray(array)
        if tuple(array.shape) != tuple(target.shape):
            raise ValueError(
                f"array {index} ({name}) has shape {tuple(array.shape)} but {spec} expects "
                f"{tuple(target.shape)}; the weights were made with a different ModelSpec"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"array {index} ({name}) contains NaN or infinite values")
        state[name] = torch.from_numpy(array.astype(np.float32, copy=True))
    model.load_state_dict(state)
    return model


def model_to_bytes(model: CharCNN) -> bytes:
    """Serialise weights and spec as an in-memory .npz (no pickle)."""
    arrays = dict(zip(model.state_dict().keys(), model_to_ndarrays(model), strict=True))
    header = json.dumps(
        {"format_version": _FORMAT_VERSION, "spec": json.loads(model.spec.to_json())}
    )
    buffer = io.BytesIO()
    np.savez(buffer, **{_SPEC_KEY: np.frombuffer(header.encode("utf-8"), dtype=np.uint8)}, **arrays)
    return buffer.getvalue()


def load_model_file(path: Path | str) -> tuple[CharCNN, ModelSpec]:
    """Read and check a model file; ModelFileError naming the file if it is not a usable one.

    The size is checked while reading (at most MAX_MODEL_BYTES + 1 bytes are read), so neither
    a huge file nor a device such as /dev/zero can exhaust memory.
    """
    path = Path(path)
    try:
        if not path.is_file():
            reason = "no such file" if not path.exists() else "not a regular file"
            raise ModelFileError(f"{path}: cannot read the model: {reason} ({_MODEL_FIX})")
        with path.open("rb") as stream:
            data = stream.read(MAX_MODEL_BYTES + 1)
    except OSError as error:
        raise ModelFileError(
            f"{path}: cannot read the model: {error.strerror or type(error).__name__} "
            f"({_MODEL_FIX})"
        ) from None
    return model_from_bytes(data, source=path)


# What a damaged or forged archive raises from zipfile, zlib, numpy's header parser or json.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    OverflowError,
    RecursionError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    SyntaxError,
)


def model_from_bytes(
    data: bytes, *, source: str | Path = "model archive"
) -> tuple[CharCNN, ModelSpec]:
    """Inverse of model_to_bytes; refuses pickled content and anything but a fedsec model.

    Everything is checked before it is allocated: the archive's size and directory, the
    header and its spec (ModelSpec's bounds), then every array's dtype and shape from its
    .npy header against the spec, before its data is decompressed. Raises ModelFileError (a
    ValueError), one line starting with `source`.
    """
    try:
        return _model_from_archive(data, source=str(source))
    except ModelFileError:
        raise
    except _ARCHIVE_ERRORS as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ModelFileError(
            f"{source}: not a fedsec model archive ({reason}) ({_MODEL_FIX})"
        ) from None


def _model_from_archive(data: bytes, *, source: str) -> tuple[CharCNN, ModelSpec]:
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"{source}: {len(data) / 2**20:.0f} MiB or more, above the {MAX_MODEL_BYTES // 2**20} "
            f"MiB a model file may have ({_MODEL_FIX})"
        )
    _check_directory(data, source=source)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = _checked_members(archive, source=source)
        spec = _read_spec(archive, members, source=source)
        expected = _state_shapes(spec)
        present = set(members) - {_SPEC_KEY}
        missing, unexpected = sorted(set(expected) - present), sorted(present - set(expected))
        if missing or unexpected:
            raise ModelFileError(
                f"{source}: arrays do not match the spec {spec}: missing {missing[:5]}, "
                f"unexpected {[_shown(name) for name in unexpected[:5]]} ({_MODEL_FIX})"
            )
        arrays = [
            _read_array(archive, members[name], name, shape, np.dtype("<f4"), source=source)
            for name, shape in expected.items()
        ]
    try:
        return ndarrays_to_model(arrays, spec=spec), spec
    except ValueError as error:
        raise ModelFileError(f"{source}: {error} ({_MODEL_FIX})") from None


def _check_directory(data: bytes, *, source: str) -> None:
    """Bound the zip's central directory before zipfile turns every entry into an object."""
    record = b"PK\x05\x06"
    at = len(data) - 22 if data[-22:-18] == record else data.rfind(record, -(2**16 + 22))
    if at < 0 or len(data) - at < 22:
        raise ModelFileError(
            f"{source}: not a fedsec model archive (no zip directory; truncated or not a "
            f".npz) ({_MODEL_FIX})"
        )
    _, _, _, _, entries, directory_size, _, _ = struct.unpack("<4s4H2LH", data[at : at + 22])
    if entries > MAX_MEMBERS or directory_size > MAX_MEMBERS * 1024:
        raise ModelFileError(
            f"{source}: the archive lists {entries} entries in {directory_size} bytes, more "
            f"than a model's {MAX_MEMBERS} ({_MODEL_FIX})"
        )


def _checked_members(archive: zipfile.ZipFile, *, source: str) -> dict[str, zipfile.ZipInfo]:
    """Array name -> zip entry, after bounding the sizes the entries declare."""
    infos = archive.infolist()
    names = [info.filename.removesuffix(".npy") for info in infos]
    if len(set(names)) != len(names) or len(infos) > MAX_MEMBERS:
        raise ModelFileError(
            f"{source}: the archive has {len(infos)} entries, some repeated or more than "
            f"{MAX_MEMBERS} ({_MODEL_FIX})"
        )
    declared = sum(info.file_size for info in infos)
    if declared > MAX_DECOMPRESSED_BYTES:
        raise ModelFileError(
            f"{source}: the archive declares {declared:,} bytes uncompressed, more than "
            f"{MAX_DECOMPRESSED_BYTES:,} ({_MODEL_FIX})"
        )
    return dict(zip(names, infos, strict=True))


def _read_spec(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], *, source: str
) -> ModelSpec:
    if _SPEC_KEY not in members:
        raise ModelFileError(
            f"{source}: not a fedsec model archive: the header entry {_SPEC_KEY} is missing "
            f"({_MODEL_FIX})"
        )
    with archive.open(members[_SPEC_KEY]) as stream:
        shape, dtype = _npy_header(stream, _SPEC_KEY, source=source)
        if dtype != np.uint8 or len(shape) != 1 or not 0 < shape[0] <= MAX_HEADER_BYTES:
            raise ModelFileError(
                f"{source}: the model header is {dtype} {shape}, not up to {MAX_HEADER_BYTES} "
                f"bytes of JSON ({_MODEL_FIX})"
            )
        raw = stream.read(shape[0])
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        reason = " ".join(str(error).split())[:120]
        raise ModelFileError(
            f"{source}: the model header is not JSON ({reason}) ({_MODEL_FIX})"
        ) from None
    if not isinstance(header, dict) or not isinstance(header.get("spec"), dict):
        raise ModelFileError(
            f"{source}: the model header is not a JSON object with a `spec` object ({_MODEL_FIX})"
        )
    version = header.get("format_version")
    if isinstance(version, bool) or version != _FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: unsupported model format_version {_shown(version)}, expected "
            f"{_FORMAT_VERSION} (fix: load it with the fedsec version that wrote it)"
        )
    try:
        return ModelSpec.from_fields(header["spec"])
    except (ValueError, TypeError) as error:
        raise ModelFileError(
            f"{source}: the model header's spec is refused: {error} ({_MODEL_FIX})"
        ) from None


def _npy_header(stream, name: str, *, source: str) -> tuple[tuple[int, ...], np.dtype]:
    """An .npy member's (shape, dtype), read from its header alone; C order only."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise ModelFileError(
            f"{source}: array {_shown(name)} has .npy format {version}, not 1.0 or 2.0 "
            f"({_MODEL_FIX})"
        )
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran_order, dtype = read(stream, max_header_size=MAX_NPY_HEADER)
    if fortran_order:
        raise ModelFileError(f"{source}: array {_shown(name)} is in Fortran order ({_MODEL_FIX})")
    return tuple(shape), dtype


def _read_array(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    source: str,
) -> np.ndarray:
    """One array, after its declared dtype and shape match the spec's; exactly its bytes."""
    with archive.open(info) as stream:
        found_shape, found_dtype = _npy_header(stream, name, source=source)
        if found_dtype != dtype or found_shape != shape:
            raise ModelFileError(
                f"{source}: array {name} is {found_dtype} {found_shape}, the spec expects "
                f"{dtype} {shape} ({_MODEL_FIX})"
            )
        size = math.prod(shape) * dtype.itemsize
        raw = stream.read(size)
        if len(raw) != size or stream.read(1):
            raise ModelFileError(
                f"{source}: array {name} holds {len(raw)} bytes of data or more, not the "
                f"{size} its shape needs ({_MODEL_FIX})"
            )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _state_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the model's state_dict. Built on the CPU, not the meta device
    (see `_template`), and not cached: the spec may come from a file, and its weights are
    bounded by MAX_PARAMETERS (16 MiB), freed on return."""
    with torch.random.fork_rng(devices=[]):
        return {name: tuple(tensor.shape) for name, tensor in CharCNN(spec).state_dict().items()}
