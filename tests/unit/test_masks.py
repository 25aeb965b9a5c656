"""SecAgg+ masks from the whole seed (common/masks.py): the generator and its install in flwr."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from common import masks
from common.masks import (
    PATCHED_MODULES,
    expand_masks,
    flwr_generator,
    pseudo_rand_gen,
    use_cryptographic_masks,
)

SEED = bytes(range(32))
SHAPES = [(41, 32), (64, 32, 2), (64,), (), (0, 3), (1,)]


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([a.reshape(-1) for a in arrays])


# --- the generator -------------------------------------------------------------------------------


def test_flwr_contract_shapes_dtype_and_range():
    out = expand_masks(SEED, num_range=2**32, shapes=SHAPES)
    assert [a.shape for a in out] == SHAPES
    assert all(a.dtype == np.int64 for a in out)
    assert isinstance(out[3], np.ndarray) and out[3].ndim == 0  # () -> a 0-d array, as flwr
    values = _flat(out)
    assert values.min() >= 0 and values.max() <= 2**32 - 1
    assert values.max() >= 2**31  # the whole 32-bit range is drawn, not 31 bits


def test_deterministic_and_one_stream_in_shape_order():
    first = expand_masks(SEED, num_range=2**32, shapes=SHAPES)
    again = expand_masks(bytearray(SEED), num_range=2**32, shapes=SHAPES)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    whole = expand_masks(SEED, num_range=2**32, shapes=[(_flat(first).size,)])[0]
    assert np.array_equal(whole, _flat(first))  # server and client split the stream alike


def test_flwr_signature_wrapper_is_the_same_generator():
    shapes = [(3, 4), (5,)]
    ours = pseudo_rand_gen(SEED, 2**20, shapes)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(ours, expand_masks(SEED, num_range=2**20, shapes=shapes), strict=True)
    )


def test_every_seed_bit_matters():
    base = expand_masks(SEED, num_range=2**32, shapes=[(1000,)])[0]
    for position in (0, 13, 31):
        flipped = bytearray(SEED)
        flipped[position] ^= 0x01
        other = expand_masks(bytes(flipped), num_range=2**32, shapes=[(1000,)])[0]
        assert np.mean(base == other) < 0.01
    longer = expand_masks(SEED + b"\x00", num_range=2**32, shapes=[(1000,)])[0]
    assert np.mean(base == longer) < 0.01


def test_seeds_flwr_cannot_tell_apart_give_different_masks():
    """flwr XOR-folds the seed to 32 bits: swapping two 4-byte words gives it the same mask."""
    swapped = SEED[4:8] + SEED[0:4] + SEED[8:]
    shapes = [(2000,)]
    original = flwr_generator()
    assert np.array_equal(original(SEED, 2**32, shapes)[0], original(swapped, 2**32, shapes)[0])
    ours = expand_masks(SEED, num_range=2**32, shapes=shapes)[0]
    assert np.mean(ours == expand_masks(swapped, num_range=2**32, shapes=shapes)[0]) < 0.01


def test_differs_from_flwr_generator_for_the_same_seed():
    for seed in (SEED, bytes(32), b"\xff" * 44):
        ours = expand_masks(seed, num_range=2**32, shapes=SHAPES)
        theirs = flwr_generator()(seed, 2**32, SHAPES)
        assert [a.shape for a in ours] == [a.shape for a in theirs]
        assert np.mean(_flat(ours) == _flat(theirs)) < 0.01


def _chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


# 15 and 7 degrees of freedom: chi-square values exceeded with probability 1e-6.
CHI2_15_P1E6 = 55.0
CHI2_7_P1E6 = 39.0


def test_uniform_over_the_full_32_bit_range():
    values = expand_masks(SEED, num_range=2**32, shapes=[(2**20,)])[0]
    high = np.bincount(values >> 28, minlength=16)  # top 4 bits
    low = np.bincount(values & 15, minlength=16)  # bottom 4 bits
    assert high.size == low.size == 16
    assert _chi_square(high) < CHI2_15_P1E6, high
    assert _chi_square(low) < CHI2_15_P1E6, low
    assert abs(values.mean() / 2**32 - 0.5) < 0.002


def test_small_power_of_two_range_is_uniform_including_its_top_value():
    """Unlike flwr's randint(0, num_range - 1), every residue is drawn, num_range - 1 included."""
    values = expand_masks(SEED, num_range=8, shapes=[(80_000,)])[0]
    counts = np.bincount(values, minlength=8)
    assert counts.size == 8 and counts.min() > 0
    assert _chi_square(counts) < CHI2_7_P1E6, counts
    theirs = flwr_generator()(SEED, 8, [(80_000,)])[0]
    assert theirs.max() == 6  # flwr's generator never draws the top residue


@pytest.mark.parametrize(
    ("seed", "num_range", "shapes", "error", "match"),
    [
        (b"\x01" * 15, 2**32, [(3,)], ValueError, "at least 16"),
        ("a" * 32, 2**32, [(3,)], TypeError, "must be bytes"),
        (SEED, 2**32 + 1, [(3,)], ValueError, "power of two"),
        (SEED, 2**33, [(3,)], ValueError, "power of two"),
        (SEED, 1000, [(3,)], ValueError, "power of two"),
        (SEED, 1, [(3,)], ValueError, "power of two"),
        (SEED, True, [(3,)], ValueError, "power of two"),
        (SEED, 2**32, [(3, -1)], ValueError, "non-negative"),
    ],
)
def test_rejects_bad_input(seed, num_range, shapes, error, match):
    with pytest.raises(error, match=match):
        expand_masks(seed, num_range=num_range, shapes=shapes)


def test_accepts_the_seeds_flwr_passes():
    """32 random bytes (self mask) and a 44-byte base64 Fernet key (pairwise), numpy shapes."""
    shapes = [np.zeros((2, 3)).shape, (np.int64(4),)]
    for seed in (bytes(32), b"A" * 44):
        out = expand_masks(seed, num_range=np.int64(2**32), shapes=shapes)
        assert [a.shape for a in out] == [(2, 3), (4,)]


# --- the install in flwr -------------------------------------------------------------------------


def _generators() -> list[object]:
    return [importlib.import_module(name).pseudo_rand_gen for name in PATCHED_MODULES]


def test_install_points_every_flwr_namespace_to_the_new_generator(monkeypatch):
    original = flwr_generator()
    for name in PATCHED_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "pseudo_rand_gen", original)
    assert all(generator is original for generator in _generators())
    use_cryptographic_masks()
    assert all(generator is pseudo_rand_gen for generator in _generators())
    assert flwr_generator() is original


def test_installing_twice_is_harmless():
    use_cryptographic_masks()
    use_cryptographic_masks()
    assert all(generator is pseudo_rand_gen for generator in _generators())
    seed = bytes(range(100, 132))
    client = importlib.import_module(PATCHED_MODULES[1]).pseudo_rand_gen(seed, 2**32, [(5,)])
    server = importlib.import_module(PATCHED_MODULES[2]).pseudo_rand_gen(seed, 2**32, [(5,)])
    assert np.array_equal(client[0], server[0])


def test_the_only_flwr_generator_callers_are_patched():
    """A new caller of pseudo_rand_gen in flwr would keep the 32-bit generator: catch it."""
    import flwr

    root = Path(flwr.__file__).parent
    callers = {
        ".".join(("flwr", *path.relative_to(root).with_suffix("").parts))
        for path in root.rglob("*.py")
        if "pseudo_rand_gen" in path.read_text(encoding="utf-8")
    }
    assert callers == set(PATCHED_MODULES)


def test_refuses_another_flwr_version(monkeypatch):
    import flwr

    monkeypatch.setattr(flwr, "__version__", "1.43.0")
    with pytest.raises(RuntimeError, match=r"pinned to flwr 1\.42\.0, but flwr 1\.43\.0"):
        use_cryptographic_masks()


def test_refuses_to_patch_over_an_unknown_generator(monkeypatch):
    original = flwr_generator()
    utils, client, server = (importlib.import_module(name) for name in PATCHED_MODULES)
    monkeypatch.setattr(utils, "pseudo_rand_gen", original)
    monkeypatch.setattr(client, "pseudo_rand_gen", original)
    monkeypatch.setattr(server, "pseudo_rand_gen", lambda *args: None)
    with pytest.raises(RuntimeError, match="unknown generator"):
        use_cryptographic_masks()
    assert utils.pseudo_rand_gen is original and client.pseudo_rand_gen is original


def test_client_and_server_apps_install_it_at_import():
    import client.app
    import server.app

    assert client.app.use_cryptographic_masks is use_cryptographic_masks
    assert server.app.use_cryptographic_masks is use_cryptographic_masks
    assert all(generator is pseudo_rand_gen for generator in _generators())


def test_masks_module_imports_no_flwr():
    import subprocess

    code = (
        "import sys, common.masks as m; "
        "m.expand_masks(bytes(16), num_range=4, shapes=[(2,)]); "
        "print(sorted(n for n in sys.modules if n == 'flwr' or n.startswith('flwr.')))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]"
    assert masks.FLWR_VERSION == "1.42.0"
