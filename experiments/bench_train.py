"""Training samples per second of the product's model, by torch threads and batch size.

    python -m experiments.bench_train [--steps 200] [--repeat 3]

Times `common.training.train_model` on fedsec's default model (`ModelSpec()`, `TrainConfig()`
except the varied knob) over 20,000 synthetic names (random labels of 6-24 characters under
common TLDs: the model's cost depends on the padded name length, not on what the names say).
The baseline is what a ClientApp does today: one torch thread (`client/app.py` sets it, so
simulated sites packed on a core do not oversubscribe it) and the default batch of 128. Every
variant is timed in the same process, interleaved with the baseline over `--repeat` passes, so
load from other jobs hits them alike: read the ratios, then the samples per second. The
issue-13 target is 20,000 samples/s on 2 cores for the default model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import string
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
TARGET_SAMPLES_PER_S = 20_000
NAMES = 20_000
TLDS = ("com", "net", "org", "de", "ru", "cn", "io", "info", "co.uk")
# (label, torch threads, batch size); the first is the baseline.
VARIANTS = (
    ("default: 1 thread, batch 128", 1, 128),
    ("2 threads, batch 128", 2, 128),
    ("1 thread, batch 512", 1, 512),
    ("2 threads, batch 512", 2, 512),
)


def synthetic_names(count: int, *, seed: int) -> tuple[list[str], np.ndarray]:
    """`count` names and 0/1 labels (half each); lengths and characters drawn at random."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list(string.ascii_lowercase + string.digits))
    names = []
    for length in rng.integers(6, 25, size=count):
        label = "".join(rng.choice(alphabet, size=int(length)))
        names.append(f"{label}.{TLDS[int(rng.integers(len(TLDS)))]}")
    labels = (np.arange(count) % 2).astype(np.int64)
    return names, labels


def samples_per_second(
    domains: np.ndarray, labels: np.ndarray, *, threads: int, batch: int, steps: int
) -> float:
    """Samples per second of one `train_model` call of `steps` steps (after one warm-up step)."""
    import torch

    from common.model import ModelSpec, build_model
    from common.training import TrainConfig, train_model

    torch.set_num_threads(threads)
    model = build_model(ModelSpec(), seed=0)
    generator = np.random.default_rng(0)
    warm = TrainConfig(steps=1, batch_size=batch)
    train_model(model, domains=domains, labels=labels, config=warm, generator=generator)
    config = TrainConfig(steps=steps, batch_size=batch)
    started = time.perf_counter()
    train_model(model, domains=domains, labels=labels, config=config, generator=generator)
    return steps * batch / (time.perf_counter() - started)


def run(*, steps: int, repeat: int, out: Path, names: int = NAMES) -> dict:
    """Time every variant `repeat` times, interleaved; write and return the results."""
    import torch

    from common.model import ModelSpec

    texts, labels = synthetic_names(names, seed=0)
    domains = ModelSpec().encode(texts)
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    for _ in range(repeat):
        for label, threads, batch in VARIANTS:
            rates[label].append(
                samples_per_second(domains, labels, threads=threads, batch=batch, steps=steps)
            )
    load_after = os.getloadavg()[0]
    baseline = statistics.median(rates[VARIANTS[0][0]])
    rows = []
    for label, threads, batch in VARIANTS:
        median = statistics.median(rates[label])
        rows.append(
            {
                "variant": label,
                "torch_threads": threads,
                "batch_size": batch,
                "samples_per_s_median": median,
                "samples_per_s_all": rates[label],
                "over_baseline": median / baseline,
                "meets_target": median >= TARGET_SAMPLES_PER_S,
            }
        )
    payload = {
        "what": "training samples per second of the default model (common.training.train_model)",
        "target_samples_per_s": TARGET_SAMPLES_PER_S,
        "names": names,
        "steps_per_timing": steps,
        "repeats": repeat,
        "rows": rows,
        "best": max(rows, key=lambda row: row["samples_per_s_median"])["variant"],
        "load_1min_before_after": [load_before, load_after],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": "python -m experiments.bench_train",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per timing")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved passes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    payload = run(steps=args.steps, repeat=args.repeat, out=args.out)
    for row in payload["rows"]:
        print(
            f"{row['variant']:30s} {row['samples_per_s_median']:9,.0f} samples/s "
            f"({row['over_baseline']:.2f}x the default; target "
            f"{TARGET_SAMPLES_PER_S:,}: {'met' if row['meets_target'] else 'not met'})"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
