"""What every experiment shares: result folders, the four training arms, evaluation, memory.

An experiment is a module with ``NAME``, ``TITLE`` and ``run(size, results) -> dict``; it
runs at ``size`` "tiny" (tests), "default" (minutes on 2 cores) or "full". ``cli_main`` makes
it a command (``python -m experiments.value --full``); ``fedsec experiment NAME`` is the same.
Every arm is evaluated by the same code the clients run (``client.fragility.compute_metrics``),
so a number here means what it means in a site's fragility report.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from common.files import json_ready
from common.run_config import RunSettings

log = logging.getLogger("fedsec.experiments")

RESULTS_ROOT = Path(__file__).resolve().parent / "results"
SIZES = ("tiny", "default", "full")
EXPERIMENTS = {
    "value": "experiments.value",
    "secagg-cost": "experiments.secagg_cost",
    "dropouts": "experiments.dropouts",
    "scale": "experiments.scale",
    "ray": "experiments.ray_cluster",
    "noniid": "experiments.noniid",
    "lowfpr": "experiments.lowfpr",
    "lowfpr-budget": "experiments.lowfpr_budget",
    "lowfpr-momentum": "experiments.lowfpr_momentum",
    "lowfpr-families": "experiments.lowfpr_families",
    "lowfpr-decay": "experiments.lowfpr_decay",
    "lowfpr-combined": "experiments.lowfpr_combined",
    "lowfpr-rate": "experiments.lowfpr_rate",
    "lowfpr-end": "experiments.lowfpr_end",
    "lowfpr-noise": "experiments.lowfpr_noise",
    "lowfpr-share": "experiments.lowfpr_share",
    "lowfpr-rounds": "experiments.lowfpr_rounds",
    "capacity": "experiments.capacity",
    "dp-utility": "experiments.dp_utility",
    "poisoning": "experiments.poisoning",
    "analyst-loop": "experiments.analyst_loop",
}
"""`fedsec experiment NAME` -> the module whose `run(size=..., root=...)` it calls."""
INDEX_FILE = "README.md"
TABLE_FILE = "table.md"


# --- result folders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a markdown table: the row key, its header and how to print the value."""

    key: str
    header: str
    fmt: str = "{:.3f}"

    def render(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        if value is None:
            return ""
        if isinstance(value, float) and math.isnan(value):
            return "n/a"
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self.fmt.format(value)
        return str(value)


@dataclass
class Results:
    """`experiments/results/NAME/`: results.json, CSVs, plots and table.md of one experiment."""

    name: str
    title: str
    root: Path = RESULTS_ROOT
    tables: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / self.name

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, payload: dict[str, Any], filename: str = "results.json") -> Path:
        path = self.path / filename
        path.write_text(json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n")
        return path

    def write_csv(self, rows: Sequence[dict[str, Any]], filename: str) -> Path:
        keys: list[str] = []
        for row in rows:
            keys.extend(key for key in row if key not in keys)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in keys})
        path = self.path / filename
        path.write_text(buffer.getvalue())
        return path

    def add_table(
        self,
        heading: str,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[Column],
        *,
        notes: Sequence[str] = (),
    ) -> str:
        """A markdown table, kept for table.md and returned; write CSVs with `write_csv`."""
        lines = [f"### {heading}", ""]
        lines.append("| " + " | ".join(column.header for column in columns) + " |")
        lines.append("|" + "|".join("---" for _ in columns) + "|")
        for row in rows:
            lines.append("| " + " | ".join(column.render(row) for column in columns) + " |")
        lines.extend(["", *notes, ""] if notes else [""])
        text = "\n".join(lines)
        self.tables.append(text)
        return text

    def plot(self, filename: str, draw: Callable[[Any], None], *, size=(7.0, 4.0)) -> Path:
        """Render ``draw(axes_owner_figure)`` to a PNG with the headless backend."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        figure = plt.figure(figsize=size, dpi=110)
        try:
            draw(figure)
            figure.tight_layout()
            path = self.path / filename
            figure.savefig(path)
        finally:
            plt.close(figure)
        return path

    def write_table_md(
        self, *, size: str, command: str, intro: str = "", plots: Sequence[str] = ()
    ) -> Path:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts = [f"## {self.title}", "", f"Size `{size}`, written {stamp} by `{command}`.", ""]
        if intro:
            parts.extend([intro, ""])
        parts.extend(self.tables)
        parts.extend(f"![{Path(name).stem}]({name})" for name in plots)
        path = self.path / TABLE_FILE
        path.write_text("\n".join(parts).rstrip() + "\n")
        write_index(self.root)
        return path


def write_index(root: Path = RESULTS_ROOT) -> Path:
    """`experiments/results/README.md`: every experiment's table, linked from the README."""
    sections = [
        "# Experiment results",
        "",
        "Generated by the experiment commands (`fedsec experiment NAME`); each folder "
        "holds results.json, CSV files, plots and the table below.",
        "",
    ]
    for table in sorted(root.glob(f"*/{TABLE_FILE}")):
        first = table.read_text().splitlines()[0].lstrip("# ").strip()
        sections.append(f"- [{first}]({table.parent.name}/{TABLE_FILE})")
    path = root / INDEX_FILE
    path.write_text("\n".join(sections) + "\n")
    return path


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list | tuple | dict):
        return json.dumps(json_ready(value))
    return value


# --- command line ------------------------------------------------------------------------------


def cli_main(module_name: str, run: Callable[..., dict[str, Any]], description: str) -> None:
    """`python -m experiments.NAME [--full | --tiny] [--out ROOT]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {module_name}", description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--full",
        action="store_const",
        const="full",
        dest="size",
        help="the large size (can take an hour or more on 2 cores)",
    )
    group.add_argument(
        "--tiny",
        action="store_const",
        const="tiny",
        dest="size",
        help="a smoke-test size (what the tests run)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_ROOT, help="results root (default: experiments/results)"
    )
    args = parser.parse_args()
    setup_logging()
    run(size=args.size or "default", root=args.out)


def setup_logging() -> None:
    from experiments.simulate import quiet_frameworks

    quiet_frameworks()
    for name in ("fedsec",):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # Round-by-round progress of the ServerApp would flood an experiment's log.
    logging.getLogger("fedsec.server").setLevel(logging.WARNING)


# --- memory and time ---------------------------------------------------------------------------


class PeakRss:
    """Peak resident memory of this process and all its descendants (Ray actors included).

    Sampled every ``interval`` seconds on a thread: a peak shorter than that can be missed.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def tree_rss() -> int:
        import psutil

        root = psutil.Process()
        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def __enter__(self) -> PeakRss:
        self.baseline_bytes = self.peak_bytes = self.tree_rss()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self.tree_rss())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.tree_rss())

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def added_mib(self) -> float:
        return (self.peak_bytes - self.baseline_bytes) / 2**20


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    timing: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - started


# --- sites, arms and evaluation ----------------------------------------------------------------


def settings_for(**overrides: Any) -> RunSettings:
    """Run settings with kebab-case overrides (the same keys as `fedsec simulate --set`)."""
    return RunSettings.from_run_config({**RunSettings().to_run_config(), **overrides})


def share_volumes(data_dir: Path) -> None:
    """Set every site's share level to `rates+volumes`, for experiments that compare SecAgg+
    with FedAvg: below it FedAvg's clear weights are rounded and SecAgg+'s travel masked, so
    the two would average with different weights."""
    import re

    for config in Path(data_dir).glob("*/site.toml"):
        text = re.sub(r'level = "[^"]*"', 'level = "rates+volumes"', config.read_text())
        config.write_text(text)


def load_sites(data_dir: Path, work_root: Path) -> list[Any]:
    """Every site folder under `data_dir`, parsed once (work files go under `work_root`)."""
    from client.pipeline import load_site
    from client.site import find_site_dirs

    return [
        load_site(site_dir, work_dir=work_root / site_dir.name)
        for site_dir in find_site_dirs(data_dir)
    ]


def train_local_only(site: Any, settings: RunSettings, work_dir: Path):
    """The site alone: the same steps per round and the same number of rounds as the federation."""
    from client.local import SPEC, LocalOnlyModel

    return LocalOnlyModel(work_dir, spec=SPEC).advance_to(
        settings.num_rounds, site=site, settings=settings
    )


def train_pooled(sites: Sequence[Any], settings: RunSettings):
    """The upper bound nobody may build: every site's training data in one place.

    It gets the federation's whole compute (rounds x local steps x sites minibatches) on
    the same class-balanced sampler, so it loses nothing to averaging.
    """
    from client.local import SPEC
    from common.model import build_model
    from common.training import TrainConfig, train_model

    domains = np.concatenate([site.encoded(SPEC).train for site in sites])
    labels = np.concatenate([site.data.train.labels for site in sites])
    model = build_model(SPEC, seed=settings.seed)
    config = TrainConfig(
        steps=settings.num_rounds * settings.local_steps * len(sites),
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
    )
    train_model(
        model,
        domains=domains,
        labels=labels,
        config=config,
        generator=np.random.default_rng([settings.seed, 7_001]),
    )
    return model


Engine = Literal["ray", "inprocess"]


def run_federation(
    data_dir: Path,
    out_dir: Path,
    *,
    site_html: str = "off",
    engine: Engine = "ray",
    **overrides: Any,
) -> tuple[dict, list]:
    """One federated run: (its results.json, the final global arrays).

    `engine="ray"` is flwr's Simulation Engine (what the experiments' default and full sizes
    measure); `"inprocess"` runs the same ServerApp and ClientApp over flwr's protobuf wire in
    this process (`experiments.inprocess`), without Ray's start-up: what the tiny sizes of the
    experiments' tests use, so that they check the experiment's logic in seconds while
    tests/integration/test_simulation.py and the ray and scale experiments cover the engine.

    Experiments read what sites report (results.json) and their own evaluation, never the
    sites' HTML pages, whose plots were about half of every simulated round: off unless asked.
    """
    from common.model import model_from_bytes, model_to_ndarrays
    from experiments.simulate import run_in_process, run_simulation

    runner = {"ray": run_simulation, "inprocess": run_in_process}[engine]
    results = runner(
        data_dir=data_dir, out_dir=out_dir, overrides={"site-html": site_html, **overrides}
    )
    model, _ = model_from_bytes((out_dir / "model.npz").read_bytes())
    return results, model_to_ndarrays(model)


def round_seconds(results: dict) -> dict[str, float]:
    """Seconds of round 1 (cold Ray actors) and the mean of later rounds (the figure to use)."""
    totals = [r["seconds"]["total"] for r in results.get("rounds", []) if r.get("seconds")]
    later = totals[1:] or totals
    return {
        "first_round_s": totals[0] if totals else math.nan,
        "mean_round_s": float(np.mean(later)) if later else math.nan,
    }


def as_model(model_or_arrays: Any):
    from client.local import SPEC
    from common.model import ndarrays_to_model

    if isinstance(model_or_arrays, list):
        return ndarrays_to_model(model_or_arrays, spec=SPEC)
    return model_or_arrays


def site_scores(site: Any, model_or_arrays: Any) -> dict[str, np.ndarray]:
    from common.training import predict_scores

    model = as_model(model_or_arrays)

    def scores(encoded: np.ndarray) -> np.ndarray:
        return (
            predict_scores(model, domains=encoded)
            if encoded.shape[0]
            else np.zeros(0, dtype=np.float64)
        )

    return {
        "test": scores(site.encoded(model.spec).test),
        "train": scores(site.encoded(model.spec).train_sample),
        "intel_only": scores(site.encoded(model.spec).intel_only),
    }


def evaluate(site: Any, model_or_arrays: Any) -> dict[str, float]:
    """Every fragility metric of this model at this site, as its fragility report computes it."""
    from client.fragility import compute_metrics

    scores = site_scores(site, model_or_arrays)
    evaluation = compute_metrics(
        site.data,
        intel_only=site.data.intel_only,
        test_scores=scores["test"],
        train_scores=scores["train"],
        intel_only_scores=scores["intel_only"],
        previous_probe=None,
        server_round=0,
    )
    metrics = dict(evaluation.metrics)
    metrics["seen_families"] = ",".join(sorted(site.data.train_families))
    return metrics


HEADLINE = (
    Column("auc", "AUC", "{:.4f}"),
    Column("tpr_at_fpr_1e-4", "TPR@FPR=1e-4"),
    Column("recall_at_budget", "recall at budget"),
    Column("fp_per_day", "FP/day", "{:,.0f}"),
    Column("fp_per_day_upper95", "FP/day (95% upper)", "{:,.0f}"),
    Column("analyst_hours_per_day", "analyst h/day", "{:,.1f}"),
)
"""The fragility metrics every value table shows, in this order."""
