"""Character-level CNN for domain names, its spec, and float-array / bytes codecs."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.features import MAX_DOMAIN_CHARS, MODEL_READS, PAD_ID, VOCAB_SIZE, encode_names

_FORMAT_VERSION = 1
_SPEC_KEY = "__spec_json__"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of CharCNN; everything needed to rebuild an empty model."""

    embedding_dim: int = 32
    filters_per_width: int = 64
    widths: tuple[int, ...] = (2, 3, 4, 5)
    hidden: int = 64
    dropout: float = 0.2
    max_chars: int = MAX_DOMAIN_CHARS
    vocab_size: int = VOCAB_SIZE
    reads: str = "registered-psl"  # what of a name it reads: common.features.model_view

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(width) for width in self.widths))
        for name in ("embedding_dim", "filters_per_width", "hidden", "max_chars", "vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelSpec.{name} must be >= 1, got {getattr(self, name)}")
        if not self.widths or any(not 1 <= width <= self.max_chars for width in self.widths):
            raise ValueError(
                f"ModelSpec.widths must be non-empty, each in [1, max_chars]; got {self.widths}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelSpec.dropout must be in [0, 1), got {self.dropout}")
        if self.reads not in MODEL_READS:
            raise ValueError(
                f"ModelSpec.reads must be one of {list(MODEL_READS)}, got {self.reads!r}"
            )

    def encode(self, names) -> np.ndarray:
        """The names as this model's input: what it reads, as character ids."""
        return encode_names(list(names), reads=self.reads, max_chars=self.max_chars)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        fields = json.loads(text)
        fields.setdefault("reads", "name")  # models saved before `reads` read whole names
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(
                f"unknown ModelSpec fields {sorted(unknown)}; known fields are {sorted(known)}"
            )
        return cls(**fields)


class CharCNN(nn.Module):
    """Embedding -> parallel Conv1d per width + ReLU -> global max pool -> MLP -> one logit.

    Input: int64 ids [batch, max_chars]; output: float32 logits [batch].
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
        domains = _crop_shared_padding(domains, keep=max(self.spec.widths))
        embedded = self.embedding(domains).transpose(1, 2)  # [batch, embedding_dim, chars]
        pooled = [torch.relu(conv(embedded)).amax(dim=2) for conv in self.convs]
        hidden = torch.relu(self.hidden(torch.cat(pooled, dim=1)))
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


def _empty_model(spec: ModelSpec) -> CharCNN:
    # Built on the meta device: construction neither allocates twice nor touches the global RNG.
    with torch.device("meta"):
        model = CharCNN(spec)
    return model.to_empty(device="cpu")


def build_model(spec: ModelSpec = ModelSpec(), *, seed: int) -> CharCNN:
    """A freshly initialised CharCNN; the same spec and seed always give the same weights."""
    model = _empty_model(spec)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        nn.init.normal_(model.embedding.weight, std=1.0, generator=generator)
        model.embedding.weight[PAD_ID].zero_()
        for layer in (*model.convs, model.hidden, model.output):
            # Same scheme as torch's default reset_parameters, but from our generator.
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            fan_in = layer.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return model


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


def model_from_bytes(data: bytes) -> tuple[CharCNN, ModelSpec]:
    """Inverse of model_to_bytes; refuses pickled content."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if _SPEC_KEY not in archive.files:
            raise ValueError("not a fedsec model archive: the spec entry is missing")
        header = json.loads(archive[_SPEC_KEY].tobytes().decode("utf-8"))
        if header.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"unsupported model format_version {header.get('format_version')}, "
                f"expected {_FORMAT_VERSION}"
            )
        spec = ModelSpec.from_json(json.dumps(header["spec"]))
        names = list(_empty_model(spec).state_dict().keys())
        missing = [name for name in names if name not in archive.files]
        if missing:
            raise ValueError(f"model archive lacks arrays {missing} required by {spec}")
        arrays = [archive[name] for name in names]
    return ndarrays_to_model(arrays, spec=spec), spec
