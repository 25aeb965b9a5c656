"""Tests for common.model: deterministic init, array and bytes round trips, clear shape errors."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.features import encode_domains
from common.model import (
    CharCNN,
    ModelSpec,
    _template,
    build_model,
    model_from_bytes,
    model_to_bytes,
    model_to_ndarrays,
    ndarrays_to_model,
    parameter_count,
)
from common.training import predict_scores

SMALL = ModelSpec(embedding_dim=8, filters_per_width=8, widths=(2, 3), hidden=8, max_chars=16)
DOMAINS = encode_domains(
    ["example.com", "xkqjzvwpt.net", "a.b", "", "mail.google.com"] * 4, max_chars=16
)


def _parameter_count_by_hand(spec: ModelSpec) -> int:
    embedding = spec.vocab_size * spec.embedding_dim
    convs = sum(
        spec.embedding_dim * spec.filters_per_width * width + spec.filters_per_width
        for width in spec.widths
    )
    hidden = spec.filters_per_width * len(spec.widths) * spec.hidden + spec.hidden
    return embedding + convs + hidden + spec.hidden + 1


def test_default_parameter_count_matches_hand_count() -> None:
    model = build_model(seed=0)
    assert parameter_count(model) == _parameter_count_by_hand(ModelSpec()) == 46_753


def test_forward_shape_and_padding_row_is_zero() -> None:
    model = build_model(SMALL, seed=0).eval()
    logits = model(torch.from_numpy(DOMAINS))
    assert logits.shape == (len(DOMAINS),)
    assert torch.all(model.embedding.weight[0] == 0)


def test_build_model_is_deterministic_and_seed_sensitive() -> None:
    first, second = (
        model_to_ndarrays(build_model(SMALL, seed=7)),
        model_to_ndarrays(build_model(SMALL, seed=7)),
    )
    other = model_to_ndarrays(build_model(SMALL, seed=8))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_build_model_leaves_global_torch_rng_alone() -> None:
    _template.cache_clear()  # the first build of a spec makes its template too
    state = torch.random.get_rng_state()
    build_model(SMALL, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())


def test_a_fresh_process_builds_loads_and_scores_without_importing_torch_dynamo() -> None:
    # torch._dynamo costs a fresh process 1.3-2 CPU s; a ServerApp or an evaluation never
    # needs it (only torch.optim's first parameter group imports it, for training).
    code = (
        "import sys\n"
        "from common.model import ModelSpec, build_model, model_to_ndarrays, ndarrays_to_model\n"
        "from common.training import predict_scores\n"
        "from common.features import encode_domains\n"
        "from common.model import model_from_bytes, model_to_bytes\n"
        "model = ndarrays_to_model(model_to_ndarrays(build_model(ModelSpec(), seed=0)))\n"
        "model, _ = model_from_bytes(model_to_bytes(model))\n"
        "predict_scores(model, domains=encode_domains(['a.com'], max_chars=64))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False", done.stderr


def test_ndarrays_are_float32_copies_in_state_dict_order() -> None:
    model = build_model(SMALL, seed=1)
    arrays = model_to_ndarrays(model)
    assert [a.shape for a in arrays] == [tuple(t.shape) for t in model.state_dict().values()]
    assert all(a.dtype == np.float32 for a in arrays)
    arrays[0][...] = 123.0
    assert not torch.any(model.embedding.weight == 123.0)


def test_ndarray_round_trip_gives_identical_predictions() -> None:
    model = build_model(SMALL, seed=2)
    restored = ndarrays_to_model(model_to_ndarrays(model), spec=SMALL)
    assert isinstance(restored, CharCNN)
    np.testing.assert_array_equal(
        predict_scores(model, domains=DOMAINS), predict_scores(restored, domains=DOMAINS)
    )


def test_bytes_round_trip_restores_spec_and_predictions() -> None:
    model = build_model(SMALL, seed=4)
    restored, spec = model_from_bytes(model_to_bytes(model))
    assert spec == SMALL
    np.testing.assert_array_equal(
        predict_scores(model, domains=DOMAINS), predict_scores(restored, domains=DOMAINS)
    )


def test_bytes_are_plain_npz_without_pickle() -> None:
    with np.load(
        io.BytesIO(model_to_bytes(build_model(SMALL, seed=0))), allow_pickle=False
    ) as archive:
        assert all(archive[name].dtype != object for name in archive.files)


def test_wrong_array_count_names_the_expectation() -> None:
    arrays = model_to_ndarrays(build_model(SMALL, seed=0))
    with pytest.raises(ValueError, match=r"expected 9 arrays .* got 8"):
        ndarrays_to_model(arrays[:-1], spec=SMALL)


def test_wrong_shape_names_the_array_and_both_shapes() -> None:
    arrays = model_to_ndarrays(build_model(SMALL, seed=0))
    arrays[1] = np.zeros((8, 8, 5), dtype=np.float32)
    with pytest.raises(
        ValueError,
        match=r"array 1 \(convs\.0\.weight\) has shape \(8, 8, 5\) .* expects \(8, 8, 2\)",
    ):
        ndarrays_to_model(arrays, spec=SMALL)


def test_non_finite_weights_are_rejected() -> None:
    arrays = model_to_ndarrays(build_model(SMALL, seed=0))
    arrays[-1] = np.array([np.nan], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        ndarrays_to_model(arrays, spec=SMALL)


def test_cropping_shared_padding_does_not_change_outputs() -> None:
    model = build_model(SMALL, seed=5).eval()
    short = torch.from_numpy(encode_domains(["ab.cd", "xy.z"], max_chars=16))
    # Reference without cropping: a long name in the batch forces the full width.
    long_row = torch.from_numpy(encode_domains(["q" * 16], max_chars=16))
    with torch.no_grad():
        cropped = model(short)
        uncropped = model(torch.cat([short, long_row]))[:2]
    torch.testing.assert_close(cropped, uncropped)


def test_spec_validation_and_json() -> None:
    assert ModelSpec.from_json(SMALL.to_json()) == SMALL
    with pytest.raises(ValueError, match="dropout"):
        ModelSpec(dropout=1.0)
    with pytest.raises(ValueError, match="widths"):
        ModelSpec(widths=())
    with pytest.raises(ValueError, match="unknown ModelSpec fields"):
        ModelSpec.from_json('{"colour": 1}')
    assert dataclasses.replace(SMALL, widths=[2, 3]).widths == (2, 3)


def test_a_model_saved_before_reads_existed_keeps_reading_whole_names():
    import json as json_module

    from common.model import ModelSpec

    legacy = json_module.loads(ModelSpec().to_json())
    legacy.pop("reads")
    assert ModelSpec.from_json(json_module.dumps(legacy)).reads == "name"
    assert ModelSpec().reads == "registered-psl"
    assert ModelSpec.from_json(ModelSpec().to_json()) == ModelSpec()
