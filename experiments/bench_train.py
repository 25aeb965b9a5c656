"""Training samples per second of the product's model: before/after the sparse backward,
by torch threads, batch size, and two sites training at once.

    python -m experiments.bench_train [--steps 200] [--repeat 3]

Times `common.training.train_model` on fedsec's default model (`ModelSpec()`, `TrainConfig()`
except the varied knob) over 20,000 synthetic names (random labels of 6-24 characters under
common TLDs: the model's cost depends on the padded name length, not on what the names say).

The baseline is the trainer as it was before `common.convpool`: autograd through the
convolution modules and `amax` (`conv_max_pool_reference`, the same values), one torch thread
(`client/app.py` sets it, so simulated sites packed on a core do not oversubscribe it) and the
default batch of 128. Every variant is timed in the same run, interleaved with the baseline
over `--repeat` passes, so load from other jobs hits them alike: read the ratios, then the
samples per second. The two-process variant is how the simulation uses 2 cores (two sites
train at once, one thread each): its figure is both processes' samples over the wall time
from the first start to the last finish. The issue-13 target is 20,000 samples/s on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
TARGET_SAMPLES_PER_S = 20_000
NAMES = 20_000
TLDS = ("com", "net", "org", "de", "ru", "cn", "io", "info", "co.uk")


@dataclass(frozen=True)
class Variant:
    label: str
    pooling: str  # "dense" (autograd through the modules, as before) or "sparse" (convpool)
    torch_threads: int
    batch_size: int
    processes: int = 1


VARIANTS = (
    Variant("before: dense backward, 1 thread, batch 128", "dense", 1, 128),
    Variant("default: 1 thread, batch 128", "sparse", 1, 128),
    Variant("2 threads, batch 128", "sparse", 2, 128),
    Variant("2 threads, batch 512", "sparse", 2, 512),
    Variant("2 sites at once, 1 thread each, batch 128", "sparse", 1, 128, processes=2),
    Variant("before: 2 sites at once, dense backward", "dense", 1, 128, processes=2),
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


@contextlib.contextmanager
def _pooling(kind: str):
    """CharCNN's convolution-and-pooling step: the product's (sparse) or the reference."""
    import common.model
    from common.convpool import conv_max_pool, conv_max_pool_reference

    common.model.conv_max_pool = conv_max_pool_reference if kind == "dense" else conv_max_pool
    try:
        yield
    finally:
        common.model.conv_max_pool = conv_max_pool


def _timed_training(
    domains: np.ndarray, labels: np.ndarray, variant: Variant, steps: int
) -> tuple[float, float]:
    """(start, end) on the system-wide monotonic clock of one `train_model` call of `steps`
    steps, after one warm-up step."""
    import torch

    from common.model import ModelSpec, build_model
    from common.training import TrainConfig, train_model

    torch.set_num_threads(variant.torch_threads)
    with _pooling(variant.pooling):
        model = build_model(ModelSpec(), seed=0)
        generator = np.random.default_rng(0)
        warm = TrainConfig(steps=1, batch_size=variant.batch_size)
        train_model(model, domains=domains, labels=labels, config=warm, generator=generator)
        config = TrainConfig(steps=steps, batch_size=variant.batch_size)
        started = time.monotonic()
        train_model(model, domains=domains, labels=labels, config=config, generator=generator)
        return started, time.monotonic()


def _worker(domains, labels, variant, steps, ready, go, results) -> None:
    import torch  # imported before the start signal, so import time is not timed

    del torch
    ready.wait()
    go.wait()
    results.put(_timed_training(domains, labels, variant, steps))


def samples_per_second(
    domains: np.ndarray, labels: np.ndarray, *, variant: Variant, steps: int
) -> float:
    """Samples per second of `variant`: all its processes' samples over first start to last end."""
    if variant.processes == 1:
        started, ended = _timed_training(domains, labels, variant, steps)
        return steps * variant.batch_size / (ended - started)
    context = multiprocessing.get_context("spawn")  # no forked copy of this process's torch
    ready = context.Barrier(variant.processes + 1)
    go = context.Barrier(variant.processes + 1)
    results = context.Queue()
    arguments = (domains, labels, variant, steps, ready, go, results)
    workers = [context.Process(target=_worker, args=arguments) for _ in range(variant.processes)]
    for worker in workers:
        worker.start()
    try:
        ready.wait(timeout=300)
        go.wait(timeout=60)
        spans = [results.get(timeout=600) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
    if any(worker.exitcode != 0 for worker in workers):
        raise RuntimeError(f"a benchmark worker failed: exit codes {[w.exitcode for w in workers]}")
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return variant.processes * steps * variant.batch_size / wall


def run(*, steps: int, repeat: int, out: Path, names: int = NAMES) -> dict:
    """Time every variant `repeat` times, interleaved; write and return the results."""
    import torch

    from common.model import ModelSpec

    texts, labels = synthetic_names(names, seed=0)
    domains = ModelSpec().encode(texts)
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {variant.label: [] for variant in VARIANTS}
    for _ in range(repeat):
        for variant in VARIANTS:
            rates[variant.label].append(
                samples_per_second(domains, labels, variant=variant, steps=steps)
            )
    load_after = os.getloadavg()[0]
    baseline = statistics.median(rates[VARIANTS[0].label])
    rows = []
    for variant in VARIANTS:
        median = statistics.median(rates[variant.label])
        rows.append(
            {
                "variant": variant.label,
                **{key: value for key, value in asdict(variant).items() if key != "label"},
                "samples_per_s_median": median,
                "samples_per_s_all": rates[variant.label],
                "over_baseline": median / baseline,
                "meets_target": median >= TARGET_SAMPLES_PER_S,
            }
        )
    payload = {
        "what": "training samples per second of the default model (common.training.train_model)",
        "baseline": VARIANTS[0].label,
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
            f"{row['variant']:45s} {row['samples_per_s_median']:9,.0f} samples/s "
            f"({row['over_baseline']:.2f}x the baseline; target "
            f"{TARGET_SAMPLES_PER_S:,}: {'met' if row['meets_target'] else 'not met'})"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
