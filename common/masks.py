"""SecAgg+ masks expanded from the whole seed with ChaCha20, and the patch that makes flwr use them.

flwr 1.42 expands every SecAgg+ mask (each client's self mask from its 32-byte random seed, each
pairwise mask from the 256-bit ECDH-derived key two clients share) with `pseudo_rand_gen`
(`flwr/common/secure_aggregation/secaggplus_utils.py`), which XOR-folds the seed to 32 bits and
draws from numpy's Mersenne Twister (upstream issue #7522). A mask from a 32-bit seed hides
nothing: anyone holding a masked vector can try all 2^32 seeds. `expand_masks` keys a stream
cipher with the whole seed instead; `use_cryptographic_masks` installs it in flwr, on the
clients (`secaggplus_mod`) and on the server (`SecAggPlusWorkflow`'s unmask stage) alike: the
two sides must expand every seed to the same mask, or unmasking yields garbage.

This module imports no flwr at top level: the generator is plain numpy + `cryptography`, and
the installer imports flwr only when called.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

FLWR_VERSION = "1.42.0"
"""The only flwr the patch was checked against: its generator's name, signature and callers."""
MIN_SEED_BYTES = 16
"""128 bits: flwr's seeds are 32 random bytes and a 44-byte base64 encoding of a 32-byte key."""
MAX_NUM_RANGE = 2**32
"""One 32-bit keystream word per value: a power of two up to this is drawn exactly uniformly."""
KEY_CONTEXT = b"fedsec/secagg+/mask/v1\x00"
"""Prefixed to the seed before hashing: a mask key never equals a key made for another use."""
NONCE = bytes(16)
"""ChaCha20's 16-byte nonce as `cryptography` takes it (32-bit block counter, 96-bit nonce): zero.

A fixed nonce is safe because a key is never used for two different streams: every seed is
fresh each round (new random seeds, new key pairs) and is expanded to one mask per round (the
client's and the server's expansions of it are the same stream, which is the point).
"""

PATCHED_MODULES = (
    "flwr.common.secure_aggregation.secaggplus_utils",  # defines pseudo_rand_gen
    "flwr.client.mod.secure_aggregation.secaggplus_mod",  # client: self and pairwise masks
    "flwr.server.workflow.secure_aggregation.secaggplus_workflow",  # server: the unmask stage
)
"""Every flwr 1.42 module that binds `pseudo_rand_gen` by name (`from ... import` it)."""
GENERATOR_NAME = "pseudo_rand_gen"

_flwr_generator: Callable | None = None


def expand_masks(
    seed: bytes, *, num_range: int, shapes: Sequence[tuple[int, ...]]
) -> list[np.ndarray]:
    """Masks for `shapes` from `seed`: int64 arrays, uniform in [0, num_range - 1], deterministic.

    The contract of flwr's `pseudo_rand_gen(seed, num_range, dimensions_list)`: one int64 array
    per shape (a 0-d array for `()`), drawn in order from one stream, the same arrays for the
    same arguments on every machine.

    Key derivation: key = SHA-256(KEY_CONTEXT || seed), the whole seed in 32 bytes; the stream
    is ChaCha20's keystream under that key with the fixed NONCE (see there why that is safe),
    read as little-endian 32-bit words, one word per value, shapes in order. `num_range` must be
    a power of two up to 2^32: a word masked to its low log2(num_range) bits is then exactly
    uniform (no modulo bias, no rejection needed). flwr's SecAgg+ modulus is a power of two
    (fedsec uses 2^32; flwr's docs ask for 2**n).

    Range: the FULL [0, num_range - 1], where flwr's generator draws `randint(0, num_range - 1)`,
    i.e. [0, num_range - 2], never num_range - 1. Masks are added modulo num_range: a mask
    uniform over all num_range residues makes the masked value uniform whatever the update (a
    one-time pad), a mask missing one residue does not quite. Nothing in flwr needs the top
    value excluded: clients and the server add and subtract masks in int64 (at most ~2^42 with
    1023 sites) and reduce modulo num_range.
    """
    if not isinstance(seed, bytes | bytearray):
        raise TypeError(f"seed must be bytes, got {type(seed).__name__}")
    if len(seed) < MIN_SEED_BYTES:
        raise ValueError(
            f"seed has {len(seed)} bytes; a mask seed needs at least {MIN_SEED_BYTES} "
            f"({8 * MIN_SEED_BYTES} bits)"
        )
    if (
        isinstance(num_range, bool)
        or not isinstance(num_range, int | np.integer)
        or not 2 <= num_range <= MAX_NUM_RANGE
        or num_range & (num_range - 1)
    ):
        raise ValueError(f"num_range must be a power of two in [2, 2^32], got {num_range!r}")
    num_range = int(num_range)
    dims = [tuple(int(d) for d in shape) for shape in shapes]
    if any(d < 0 for shape in dims for d in shape):
        raise ValueError(f"shapes must have non-negative dimensions, got {dims}")
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in dims]
    total = sum(sizes)
    key = hashlib.sha256(KEY_CONTEXT + bytes(seed)).digest()
    encryptor = Cipher(algorithms.ChaCha20(key, NONCE), mode=None).encryptor()
    words = np.frombuffer(encryptor.update(bytes(4 * total)), dtype="<u4")
    values = words.astype(np.int64)
    if num_range < MAX_NUM_RANGE:
        values &= num_range - 1
    masks = []
    offset = 0
    for shape, size in zip(dims, sizes, strict=True):
        masks.append(values[offset : offset + size].reshape(shape))
        offset += size
    return masks


def pseudo_rand_gen(
    seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """`expand_masks` under flwr's name and positional signature: what flwr calls once installed."""
    return expand_masks(seed, num_range=num_range, shapes=dimensions_list)


def use_cryptographic_masks() -> None:
    """Make flwr's SecAgg+ expand masks with `expand_masks`, on whichever side calls it.

    Replaces `pseudo_rand_gen` in every module of PATCHED_MODULES (each bound it by name at
    import, so patching the defining module alone would change nothing). Both the ClientApp
    and the ServerApp call it at import: a node or coordinator without it would expand the same
    seeds to different masks and the round would unmask to garbage, not leak. Idempotent.
    Raises RuntimeError on any flwr but FLWR_VERSION, or when a module's generator is neither
    flwr's nor this one (the patch would be unsound there).
    """
    global _flwr_generator
    import flwr

    version = getattr(flwr, "__version__", "unknown")
    if version != FLWR_VERSION:
        raise RuntimeError(
            f"fedsec's SecAgg+ mask generator patch is pinned to flwr {FLWR_VERSION}, but flwr "
            f"{version} is installed (fix: install flwr=={FLWR_VERSION}, or check that flwr "
            f"{version} still binds {GENERATOR_NAME} in {', '.join(PATCHED_MODULES)} and update "
            "common/masks.py)"
        )
    modules = [importlib.import_module(name) for name in PATCHED_MODULES]
    for module in modules:
        current = getattr(module, GENERATOR_NAME, None)
        if current is pseudo_rand_gen:
            continue
        if not _is_flwr_generator(current):
            raise RuntimeError(
                f"{module.__name__}.{GENERATOR_NAME} is {current!r}, neither flwr's generator "
                "nor fedsec's: refusing to patch SecAgg+ masks over an unknown generator"
            )
        _flwr_generator = current
    for module in modules:
        setattr(module, GENERATOR_NAME, pseudo_rand_gen)


def flwr_generator() -> Callable:
    """flwr's own `pseudo_rand_gen`, installed or not (for comparisons and benchmarks)."""
    if _flwr_generator is not None:
        return _flwr_generator
    module = importlib.import_module(PATCHED_MODULES[0])
    generator = getattr(module, GENERATOR_NAME)
    if not _is_flwr_generator(generator):
        raise RuntimeError(f"{PATCHED_MODULES[0]}.{GENERATOR_NAME} is not flwr's generator")
    return generator


def _is_flwr_generator(function: object) -> bool:
    return (
        callable(function)
        and getattr(function, "__module__", None) == PATCHED_MODULES[0]
        and getattr(function, "__name__", None) == GENERATOR_NAME
    )
