"""Seconds to expand one SecAgg+ mask: flwr 1.42's generator against fedsec's ChaCha20.

    python -m experiments.bench_masks [--repeat 300]

One mask the size of fedsec's model (46,753 values in its 13 arrays), modulo 2^32, from a
32-byte seed (a self mask) and a 44-byte one (a pairwise key as flwr passes it). The two
generators are timed alternately in the same process, so load from other jobs on the shared
machine hits both alike: read the ratio, then the seconds.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_masks.json"
MODULUS_RANGE = 2**32


def _model_shapes() -> list[tuple[int, ...]]:
    from common.model import ModelSpec, build_model, model_to_ndarrays

    return [tuple(a.shape) for a in model_to_ndarrays(build_model(ModelSpec(), seed=0))]


def _time(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    import cryptography
    import numpy as np

    from common.masks import expand_masks, flwr_generator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    shapes = _model_shapes()
    values = sum(int(np.prod(shape)) for shape in shapes)
    old = flwr_generator()

    def new(seed: bytes, num_range: int, dims: list[tuple[int, ...]]):
        return expand_masks(seed, num_range=num_range, shapes=dims)

    generators = {"flwr_mt19937_32bit_seed": old, "fedsec_chacha20": new}
    # flwr's pairwise seed is its Fernet key: a 32-byte HKDF output in urlsafe base64.
    seeds = {
        "self_mask_32_bytes": os.urandom(32),
        "pairwise_key_44_bytes": base64.urlsafe_b64encode(os.urandom(32)),
    }
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in generators}
    for generator in generators.values():  # warm-up: imports, allocator, OpenSSL init
        generator(seeds["self_mask_32_bytes"], MODULUS_RANGE, shapes)
    for index in range(args.repeat):
        seed = list(seeds.values())[index % len(seeds)]
        for name, generator in generators.items():
            times[name].append(_time(generator, seed, MODULUS_RANGE, shapes))
    load_after = os.getloadavg()[0]
    figures = {
        name: {
            "min_s": min(samples),
            "median_s": statistics.median(samples),
            "mean_s": statistics.fmean(samples),
        }
        for name, samples in times.items()
    }
    payload = {
        "what": "seconds to expand one SecAgg+ mask of fedsec's model size, modulo 2^32",
        "values_per_mask": values,
        "arrays_per_mask": len(shapes),
        "repeats_each": args.repeat,
        "seeds": list(seeds),
        "generators": figures,
        "new_over_old_median": figures["fedsec_chacha20"]["median_s"]
        / figures["flwr_mt19937_32bit_seed"]["median_s"],
        "load_1min_before_after": [load_before, load_after],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cryptography": cryptography.__version__,
        "command": "python -m experiments.bench_masks",
    }
    for name, row in figures.items():
        print(
            f"{name:26s} median {row['median_s'] * 1e3:7.3f} ms, min {row['min_s'] * 1e3:7.3f} ms"
        )
    print(f"ChaCha20 / flwr (median): {payload['new_over_old_median']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
