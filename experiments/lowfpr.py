"""Low-FPR detection on real development names: local-only, FedAvg, SecAgg+, pooled, transfer.

    FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr [--full | --tiny] [--out ROOT]
    python -m experiments.lowfpr --real-dev PATH [--full | --tiny] [--out ROOT]

PATH is a folder of real names: `benign.csv.gz` (`domain,source`) and `dga.csv.gz`
(`domain,family`). The user passes it; nothing in this repository names it, and nothing read
from it is written out: the results hold aggregate figures and public family and list names.

1. **Split** by registered label (the label of the ICANN registered domain, so one DGA label
   under several TLDs stays on one side; names under a dynamic-DNS provider that holds many
   DGA names are grouped by the customer label below it). A pooled held-out test set takes
   20% of every family and up to 60,000 benign names (FPR 1e-4 needs >= 30,000 to be
   resolvable); everything else trains. Each of the sites holds a disjoint subset of the
   families and a random share of the benign training names ("the blind men and the
   elephant"); a small slice of each site's own names is its test day.
2. **Sites** are real fedsec site folders in a temporary directory: three training days and
   one test day of Zeek `dns.log` with the site's names as queries (the generator's renderer
   and writer), `intel/blocklist.csv` with the site's DGA names and family, an empty
   allowlist, `unlisted = "benign"`, share level `rates+volumes`, `holdout_fraction = 0`
   (the names were already held out above) and a `[dqa]` gate loose enough for these logs.
3. **Arms**, one budget (rounds x local steps x batch per site): each site alone
   (`lab.train_local_only`), FedAvg and SecAgg+ (`simulate.run_in_process`: fedsec's
   ServerApp and ClientApp end to end, site HTML off), everything pooled
   (`lab.train_pooled`, the sites' rounds x steps summed), and a transfer arm: the same
   product training on generated sites only (`generator.generate_sites` at demo size),
   with its local steps scaled so it sees as many samples as the federation.
4. **Scored** on the pooled test names with the product's metric functions
   (`common.metrics.roc_auc` and `tpr_at_fpr` with its `resolvable` flag,
   `common.fragility.clopper_pearson_upper` for FP/day at 1e9 benign queries a day), with
   and without the benign source a study of this data found contaminated with real DGA
   names, per benign source, per family, per site (own vs unseen families), and the
   "federated has >= 30% fewer false positives than local-only at equal TPR at every site"
   check, which is undecidable when the local model's false positives are too few for a 30%
   cut to stand out of their Poisson noise.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
import logging
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.config import ConfigError
from experiments import lab
from experiments.lab import Column, Results

NAME = "lowfpr"
TITLE = "Low-FPR detection on real development names (local-only vs FedAvg vs SecAgg+ vs pooled)"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment lowfpr [--full]"
log = logging.getLogger("fedsec.experiments")

REAL_DEV_ENV = "FEDSEC_REAL_DEV"
BENIGN_FILE = "benign.csv.gz"
DGA_FILE = "dga.csv.gz"
SEED = 0
FPRS = (1e-3, 1e-4, 1e-5)
TAGS = {1e-3: "1e-3", 1e-4: "1e-4", 1e-5: "1e-5"}
FAMILY_FPR = 1e-3  # per-family recall and the own/unseen split are read at this FPR
BENIGN_EVENTS_PER_DAY = 1e9  # FP/day and its 95% upper bound are quoted at this volume
TEST_DGA_FRACTION = 0.2  # of every family's names
TEST_BENIGN_SHARE_CAP = 0.35  # at most this share of the benign names is held out for test
PROVIDER_MIN_NAMES = 20  # a registered domain with this many DGA subdomains is a provider
CONTAMINATED_SOURCE = "cloudflare_radar_top100k_2024-10"
"""A resolver-popularity top list holds the DGA look-ups of infected clients: a study of this
data found ~2.6e-3 of its names obviously machine-made, enough to set the FPR 1e-3 and 1e-4
thresholds by themselves. Every figure is also given without it."""
FP_CUT_TARGET = 0.30
MIN_LOCAL_FP_TO_DECIDE = 45
"""The >= 30% FP-cut check is decidable at a site only when the local model's false positives
n satisfy 0.3 n >= 2 sqrt(n) (a 30% cut is two Poisson standard deviations), i.e. n >= 45."""
TARGETS = {"auc": 0.997, "tpr_at_fpr_1e-3": 0.90, "tpr_at_fpr_1e-4": 0.80, "family_recall": 0.5}
BOOTSTRAP_FPR = 1e-4
START_DATE = dt.date(2026, 1, 1)
TRAIN_DAYS = 3
FEDERATED = "secagg"  # what fedsec deploys; the targets are read on it
ARM_LABELS = {
    "fedavg": "FedAvg",
    "secagg": "SecAgg+",
    "pooled": "pooled (upper bound)",
    "transfer": "transfer (generated sites only)",
}
SCOPES = {"all": "all benign test names", "clean": f"without {CONTAMINATED_SOURCE}"}


@dataclass(frozen=True)
class Size:
    sites: int
    rounds: int
    local_steps: int
    batch: int
    test_benign: int
    site_test_fraction: float
    bootstrap: int
    transfer_sites: int
    transfer_days: int
    transfer_scale: float

    @property
    def samples_per_site(self) -> int:
        return self.rounds * self.local_steps * self.batch

    @property
    def transfer_local_steps(self) -> int:
        """Local steps that give the transfer federation the real federation's total samples."""
        return max(1, round(self.local_steps * self.sites / self.transfer_sites))


SIZES = {
    "tiny": Size(
        sites=4,
        rounds=2,
        local_steps=5,
        batch=32,
        test_benign=60_000,
        site_test_fraction=0.2,
        bootstrap=20,
        transfer_sites=3,
        transfer_days=2,
        transfer_scale=0.05,
    ),
    "default": Size(
        sites=4,
        rounds=16,  # the product's defaults (docs/training.md: the budget curve)
        local_steps=180,
        batch=128,
        test_benign=60_000,
        site_test_fraction=0.05,
        bootstrap=200,
        transfer_sites=8,
        transfer_days=4,
        transfer_scale=1.0,
    ),
    # >= 800k samples central-equivalent: where central training stopped improving.
    "full": Size(
        sites=4,
        rounds=40,
        local_steps=40,
        batch=128,
        test_benign=60_000,
        site_test_fraction=0.05,
        bootstrap=500,
        transfer_sites=8,
        transfer_days=4,
        transfer_scale=1.0,
    ),
}


# --- the real names ----------------------------------------------------------------------------


def real_dev_folder(given: str | Path | None = None) -> Path:
    """The folder of real names: `given`, else $FEDSEC_REAL_DEV; ConfigError naming the fix."""
    raw = str(given) if given else os.environ.get(REAL_DEV_ENV, "")
    if not raw.strip():
        raise ConfigError(
            f"lowfpr needs the real development names (fix: {REAL_DEV_ENV}=PATH fedsec "
            "experiment lowfpr, or python -m experiments.lowfpr --real-dev PATH, where PATH "
            f"holds {BENIGN_FILE} and {DGA_FILE})"
        )
    folder = Path(raw).expanduser()
    missing = [name for name in (BENIGN_FILE, DGA_FILE) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{folder}: {' and '.join(missing)} not found (fix: point {REAL_DEV_ENV} or "
            f"--real-dev at the folder that holds {BENIGN_FILE} and {DGA_FILE})"
        )
    return folder


@dataclass(frozen=True)
class Corpus:
    """Every name once: label 1 = DGA, its family ('' for benign) and benign source ('')."""

    names: np.ndarray
    labels: np.ndarray
    families: np.ndarray
    sources: np.ndarray
    dropped_duplicates: int


def _read_rows(path: Path, header: tuple[str, str]) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None or tuple(c.strip().lower() for c in first[:2]) != header:
            raise ConfigError(
                f"{path}: expected a header row {','.join(header)} (fix: pass the real-dev "
                "folder whose CSV files have that header)"
            )
        return [(row[0].strip().lower(), row[1].strip()) for row in reader if len(row) >= 2]


def load_corpus(folder: Path) -> Corpus:
    dga = _read_rows(folder / DGA_FILE, ("domain", "family"))
    benign = _read_rows(folder / BENIGN_FILE, ("domain", "source"))
    seen: set[str] = set()
    rows = []
    for label, entries in ((1, dga), (0, benign)):  # a name in both files stays DGA
        for name, value in entries:
            if not name or name in seen:
                continue
            seen.add(name)
            rows.append((name, label, value if label else "", "" if label else value))
    names, labels, families, sources = zip(*rows, strict=True)
    return Corpus(
        names=np.array(names, dtype=object),
        labels=np.array(labels, dtype=np.int8),
        families=np.array(families, dtype=object),
        sources=np.array(sources, dtype=object),
        dropped_duplicates=len(dga) + len(benign) - len(rows),
    )


# --- the split ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Where every name goes: the pooled test set, or a site (its training days or test day)."""

    corpus: Corpus
    test: np.ndarray  # bool: pooled held-out test name
    site: np.ndarray  # int: the site holding the name, -1 for test names
    site_test: np.ndarray  # bool: on that site's test day (not trained on by fedsec)
    site_families: list[list[str]]
    providers: list[str]


def group_keys(names: np.ndarray, labels: np.ndarray) -> tuple[list[str], list[str]]:
    """(split unit per name, provider domains): registered label, or customer@provider."""
    from client.domains import registered_domain

    registered = [registered_domain(name) for name in names]
    below = Counter(
        rd
        for name, rd, label in zip(names, registered, labels, strict=True)
        if label and rd != name
    )
    providers = sorted(rd for rd, count in below.items() if count >= PROVIDER_MIN_NAMES)
    provider_set = set(providers)
    keys = []
    for name, rd in zip(names, registered, strict=True):
        if rd in provider_set and name != rd:
            keys.append(name[: -len(rd) - 1].split(".")[-1] + "@" + rd)
        else:
            keys.append(rd.split(".")[0])
    return keys, providers


def _fill(keys: list[str], rows: np.ndarray, target: float, assign: dict[str, bool], rng) -> None:
    """Groups of `rows` in random order go to test until `target` names are there."""
    sizes = Counter(keys[i] for i in rows)
    order = sorted(sizes)
    rng.shuffle(order)
    taken = 0
    for key in order:
        if key not in assign:
            assign[key] = taken < target
        taken += sizes[key] if assign[key] else 0


def split_corpus(
    corpus: Corpus, *, n_sites: int, test_benign: int, site_test_fraction: float, seed: int
) -> Split:
    keys, providers = group_keys(corpus.names, corpus.labels)
    rng = np.random.default_rng(seed)
    families = sorted(set(corpus.families[corpus.labels == 1].tolist()))
    if len(families) < n_sites:
        raise ConfigError(
            f"lowfpr: {len(families)} DGA families cannot be dealt to {n_sites} sites "
            "(fix: real-dev data with at least one family per site)"
        )
    assign: dict[str, bool] = {}
    for family in families:
        rows = np.flatnonzero(corpus.families == family)
        _fill(keys, rows, TEST_DGA_FRACTION * rows.size, assign, rng)
    benign_rows = np.flatnonzero(corpus.labels == 0)
    target = min(test_benign, int(TEST_BENIGN_SHARE_CAP * benign_rows.size))
    _fill(keys, benign_rows, target, assign, rng)
    test = np.array([assign[key] for key in keys], dtype=bool)

    order = rng.permutation(len(families))
    site_families = [sorted(families[j] for j in order[i::n_sites]) for i in range(n_sites)]
    owner = {family: i for i, fams in enumerate(site_families) for family in fams}
    site = np.full(len(keys), -1, dtype=np.int64)
    train_dga = np.flatnonzero(~test & (corpus.labels == 1))
    site[train_dga] = [owner[f] for f in corpus.families[train_dga]]
    train_benign = np.flatnonzero(~test & (corpus.labels == 0))
    benign_keys = sorted({keys[i] for i in train_benign})
    draws = dict(zip(benign_keys, rng.integers(0, n_sites, size=len(benign_keys)), strict=True))
    site[train_benign] = [draws[keys[i]] for i in train_benign]
    pairs = sorted({(int(site[i]), keys[i]) for i in np.flatnonzero(site >= 0)})
    on_test_day = dict(zip(pairs, rng.random(len(pairs)) < site_test_fraction, strict=True))
    site_test = np.array(
        [site[i] >= 0 and on_test_day[(int(site[i]), keys[i])] for i in range(len(keys))],
        dtype=bool,
    )
    return Split(corpus, test, site, site_test, site_families, providers)


# --- site folders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SiteShape:
    """What the generator's client and answer renderers read of a site profile."""

    subnet: tuple[int, int]
    internal_domain: str


def _site_toml(site_id: str) -> str:
    import tomli_w

    return tomli_w.dumps(
        {
            "site_id": site_id,
            "logs": {"paths": ["logs/dns.*.log.gz"], "format": "zeek-tsv"},
            "labels": {
                "blocklist": "intel/blocklist.csv",
                "allowlist": "intel/allowlist.txt",
                "unlisted": "benign",
            },
            "deployment": {"benign_events_per_day": BENIGN_EVENTS_PER_DAY, "base_rate": 1e-5},
            "analysts": {"count": 5, "productive_hours_per_day": 5.6, "minutes_per_alert": 20.0},
            "share": {"level": "rates+volumes"},
            # The names were held out by registered label before they became logs.
            "split": {"test_days": 1, "holdout_fraction": 0.0},
            "dqa": {
                "max_malformed_rate": 0.2,
                "max_duplicate_rate": 0.5,
                "max_out_of_order_rate": 0.5,
                "max_missing_days": 1,
                "max_label_conflict_rate": 0.05,
                "min_train_positives": 1,
                "min_train_negatives": 1,
            },
        }
    )


def _write_logs(
    site_dir: Path, index: int, names: np.ndarray, dga: np.ndarray, days: np.ndarray, rng
) -> int:
    """Zeek TSV per day: each name queried once or twice at random times; returns lines."""
    from experiments.generator import traffic, zeek_writer

    shape = _SiteShape(subnet=(10, 40 + index), internal_domain=f"site{index}.internal")
    clients = traffic.make_clients(shape, rng, count=250)
    renderer = traffic.Renderer(shape)
    (site_dir / "logs").mkdir(parents=True)
    lines_written = 0
    for day_index in range(TRAIN_DAYS + 1):
        day = START_DATE + dt.timedelta(days=day_index)
        rows = np.flatnonzero(days == day_index)
        tries = rng.integers(1, 3, size=rows.size)
        picked = np.repeat(rows, tries)
        day_start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        queries = traffic.Queries(
            ts=day_start + rng.random(picked.size) * (traffic.DAY_SECONDS - 1),
            client=rng.choice(len(clients.addresses), size=picked.size, p=clients.weights),
            names=names[picked].tolist(),
            kinds=np.where(dga[picked], "dga", "web").tolist(),
            live=np.zeros(picked.size, dtype=bool),
        )
        lines = renderer.render(queries, clients, rng)
        (site_dir / "logs" / f"dns.{day:%Y-%m-%d}.log.gz").write_bytes(
            zeek_writer.log_bytes(lines, day)
        )
        lines_written += len(lines)
    return lines_written


def write_sites(split: Split, data_dir: Path, *, seed: int) -> list[dict[str, Any]]:
    """One fedsec site folder per site; returns what each holds (counts only)."""
    corpus = split.corpus
    written = []
    for index in range(len(split.site_families)):
        site_id = f"site-{index:02d}"
        site_dir = data_dir / site_id
        rows = np.flatnonzero(split.site == index)
        rng = np.random.default_rng([seed, 31, index])
        days = np.where(
            split.site_test[rows], TRAIN_DAYS, rng.integers(0, TRAIN_DAYS, size=rows.size)
        )
        dga = corpus.labels[rows] == 1
        lines = _write_logs(site_dir, index, corpus.names[rows], dga, days, rng)
        (site_dir / "intel").mkdir()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("domain", "family"))
        writer.writerows(
            sorted(zip(corpus.names[rows][dga], corpus.families[rows][dga], strict=True))
        )
        (site_dir / "intel" / "blocklist.csv").write_text(buffer.getvalue(), encoding="utf-8")
        (site_dir / "intel" / "allowlist.txt").write_text(
            f"# {site_id}: no allowlist (every unlisted name is benign)\n", encoding="utf-8"
        )
        (site_dir / "site.toml").write_text(_site_toml(site_id), encoding="utf-8")
        train_rows = rows[~split.site_test[rows]]
        written.append(
            {
                "site": site_id,
                "families": len(split.site_families[index]),
                "family_names": ",".join(split.site_families[index]),
                "written_train_dga": int((corpus.labels[train_rows] == 1).sum()),
                "written_train_benign": int((corpus.labels[train_rows] == 0).sum()),
                "written_test_day_names": int(split.site_test[rows].sum()),
                "log_lines": lines,
            }
        )
    return written


def site_checks(
    sites: list[Any], split: Split, written: list[dict[str, Any]]
) -> tuple[list[dict], dict[str, int]]:
    """What fedsec made of each folder, and whether it matches the split name for name."""
    corpus = split.corpus
    truth = dict(zip(corpus.names.tolist(), corpus.labels.tolist(), strict=True))
    test_names = set(corpus.names[split.test].tolist())
    checks = {"label_mismatches": 0, "unknown_names": 0, "pooled_test_names_at_sites": 0}
    rows = []
    for site, entry in zip(sites, written, strict=True):
        data = site.data
        for examples in (data.train, data.test):
            for name, label in zip(
                examples.domains.tolist(), examples.labels.tolist(), strict=True
            ):
                if name not in truth:
                    checks["unknown_names"] += 1
                elif truth[name] != label:
                    checks["label_mismatches"] += 1
                checks["pooled_test_names_at_sites"] += name in test_names
        rows.append(
            {
                **entry,
                "train_dga": data.train.positives,
                "train_benign": len(data.train) - data.train.positives,
                "test_day_dga": data.test.positives,
                "test_day_benign": len(data.test) - data.test.positives,
                "quality_gate": "pass" if site.quality.passes else "; ".join(site.quality.problems),
            }
        )
    return rows, checks


# --- training ----------------------------------------------------------------------------------


def federate(
    data_dir: Path,
    out_dir: Path,
    *,
    mode: str,
    shape: Size,
    local_steps: int,
    extra: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, float]]:
    """fedsec's ServerApp and ClientApp over an in-process grid: (final model, timings);
    `extra` adds run-config keys."""
    from common.model import model_from_bytes
    from experiments.simulate import run_in_process

    overrides = {
        "mode": mode,
        "num-rounds": shape.rounds,
        "local-steps": local_steps,
        "batch-size": shape.batch,
        "seed": SEED,
        "site-html": "off",
        **(extra or {}),
    }
    with lab.stopwatch() as watch:
        results = run_in_process(data_dir=data_dir, out_dir=out_dir, overrides=overrides)
    model, _ = model_from_bytes((out_dir / "model.npz").read_bytes())
    rounds = results.get("rounds", [])
    info = {
        "wall_s": watch["seconds"],
        "train_phase_s": float(sum(r["seconds"]["train"] for r in rounds)),
        "evaluate_phase_s": float(sum(r["seconds"]["evaluate"] for r in rounds)),
        "rounds_completed": len(rounds),
        "site_failures": int(
            sum(r["train"].get("failures", 0) + r["aggregate"].get("failures", 0) for r in rounds)
        ),
    }
    return model, info


def train_arms(
    sites: list[Any], data_dir: Path, work: Path, shape: Size, timings: dict[str, Any]
) -> dict[str, Any]:
    """Every arm's model; local-only models keyed `local:site-NN`."""
    settings = lab.settings_for(
        **{
            "num-rounds": shape.rounds,
            "local-steps": shape.local_steps,
            "batch-size": shape.batch,
            "seed": SEED,
        }
    )
    models: dict[str, Any] = {}
    for site in sites:
        with lab.stopwatch() as watch:
            models[f"local:{site.site_id}"] = lab.train_local_only(
                site, settings, work / "local" / site.site_id
            )
        timings[f"local:{site.site_id}"] = {"train_s": watch["seconds"]}
    log.info("local-only: %d sites trained", len(sites))
    with lab.stopwatch() as watch:
        models["pooled"] = lab.train_pooled(sites, settings)
    timings["pooled"] = {"train_s": watch["seconds"]}
    log.info("pooled: trained in %.0f s", watch["seconds"])
    for mode in ("fedavg", "secagg"):
        models[mode], info = federate(
            data_dir, work / mode, mode=mode, shape=shape, local_steps=shape.local_steps
        )
        timings[mode] = {"train_s": info["train_phase_s"], **info}
        log.info("%s: %d rounds in %.0f s", mode, shape.rounds, info["wall_s"])
    return models


def train_transfer(work: Path, shape: Size, timings: dict[str, Any]) -> Any:
    """The product trained only on generated sites (demo size), FedAvg at the same samples."""
    from experiments.generator import generate_sites

    generated = work / "generated"
    with lab.stopwatch() as watch:
        generate_sites(
            out_dir=generated,
            n_sites=shape.transfer_sites,
            n_days=shape.transfer_days,
            seed=SEED,
            scale=shape.transfer_scale,
        )
        lab.share_volumes(generated)
    model, info = federate(
        generated,
        work / "transfer",
        mode="fedavg",
        shape=shape,
        local_steps=shape.transfer_local_steps,
    )
    timings["transfer"] = {"train_s": info["train_phase_s"], "generate_s": watch["seconds"], **info}
    log.info(
        "transfer: generated %d sites, trained in %.0f s", shape.transfer_sites, info["wall_s"]
    )
    return model


# --- evaluation on the pooled test names -------------------------------------------------------


@dataclass(frozen=True)
class TestSet:
    labels: np.ndarray  # bool, True = DGA
    families: np.ndarray
    sources: np.ndarray
    encoded: np.ndarray

    def scope(self, name: str) -> np.ndarray:
        """Rows of a benign scope: every DGA name plus the chosen benign names."""
        if name == "all":
            return np.ones(self.labels.size, dtype=bool)
        if name == "clean":
            return self.labels | (self.sources != CONTAMINATED_SOURCE)
        return self.labels | (self.sources == name)


def test_set(split: Split) -> TestSet:
    from client.local import SPEC

    corpus = split.corpus
    rows = np.flatnonzero(split.test)
    return TestSet(
        labels=corpus.labels[rows] == 1,
        families=corpus.families[rows],
        sources=corpus.sources[rows],
        encoded=SPEC.encode(corpus.names[rows].tolist()),
    )


def operating_points(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """AUC and, per target FPR, TPR, k allowed FPs, FPs taken, resolvability and FP/day."""
    from common.fragility import clopper_pearson_upper
    from common.metrics import roc_auc, tpr_at_fpr

    benign = int((~labels).sum())
    out: dict[str, Any] = {
        "auc": roc_auc(scores=scores, labels=labels),
        "n_benign": benign,
        "n_dga": int(labels.sum()),
    }
    for fpr in FPRS:
        tag = TAGS[fpr]
        point = tpr_at_fpr(scores=scores, labels=labels, target_fpr=fpr)
        flagged = int(((scores >= point.threshold) & ~labels).sum()) if benign else 0
        out[f"tpr_at_fpr_{tag}"] = point.tpr
        out[f"resolvable_{tag}"] = point.resolvable
        out[f"k_{tag}"] = int(math.floor(fpr * benign + 1e-9))
        out[f"fp_{tag}"] = flagged
        out[f"threshold_{tag}"] = point.threshold
        out[f"fp_per_day_{tag}"] = flagged / benign * BENIGN_EVENTS_PER_DAY if benign else math.nan
        out[f"fp_per_day_upper95_{tag}"] = (
            clopper_pearson_upper(successes=flagged, trials=benign) * BENIGN_EVENTS_PER_DAY
        )
    return out


def family_recall(
    scores: np.ndarray, labels: np.ndarray, families: np.ndarray, threshold: float
) -> dict[str, float]:
    dga = labels.astype(bool)
    return {
        family: float((scores[dga & (families == family)] >= threshold).mean())
        for family in sorted(set(families[dga].tolist()))
    }


def families_below(recall: dict[str, float]) -> list[str]:
    """The families whose recall misses the target (0.5 at FPR 1e-3), sorted."""
    return sorted(family for family, value in recall.items() if value < TARGETS["family_recall"])


def bootstrap_tpr(
    scores: np.ndarray, labels: np.ndarray, *, fpr: float, reps: int, seed: int
) -> dict[str, float]:
    """TPR at `fpr` over `reps` resamples of the benign and the DGA names (each with
    replacement): the 2.5/97.5 percentiles and the standard deviation."""
    from common.metrics import tpr_at_fpr

    rng = np.random.default_rng(seed)
    benign, dga = np.flatnonzero(~labels), np.flatnonzero(labels)
    if benign.size == 0 or dga.size == 0 or reps < 2:
        return {"low": math.nan, "high": math.nan, "sd": math.nan, "reps": reps}
    values = []
    for _ in range(reps):
        rows = np.concatenate(
            [
                benign[rng.integers(0, benign.size, benign.size)],
                dga[rng.integers(0, dga.size, dga.size)],
            ]
        )
        values.append(tpr_at_fpr(scores=scores[rows], labels=labels[rows], target_fpr=fpr).tpr)
    array = np.asarray(values)
    return {
        "low": float(np.percentile(array, 2.5)),
        "high": float(np.percentile(array, 97.5)),
        "sd": float(array.std()),
        "reps": reps,
    }


def fewest_fp_at_tpr(scores: np.ndarray, labels: np.ndarray, target_tpr: float) -> int:
    """Fewest benign names flagged by a threshold that keeps TPR >= target (0 at TPR 0)."""
    from common.metrics import confusion_at_thresholds, score_thresholds

    confusion = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=score_thresholds(scores)
    )
    meets = np.flatnonzero(confusion.tpr >= target_tpr - 1e-12)
    return int(confusion.fp[meets[-1]]) if meets.size else int((~labels).sum())


def fp_check(
    test: TestSet, scores: dict[str, np.ndarray], split: Split, site_ids: list[str]
) -> list[dict[str, Any]]:
    """Per site: FPs of federated vs local-only at the local model's TPR at FPR 1e-3 and 1e-4."""
    from common.metrics import tpr_at_fpr

    rows = []
    for index, site_id in enumerate(site_ids):
        own = np.isin(test.families, split.site_families[index])
        for dga_scope, dga_rows in (("all families", test.labels), ("own families", own)):
            for scope in SCOPES:
                rows_in = test.scope(scope) & (~test.labels | dga_rows)
                labels = test.labels[rows_in]
                local = scores[f"local:{site_id}"][rows_in]
                for fpr in FPRS[:2]:
                    point = tpr_at_fpr(scores=local, labels=labels, target_fpr=fpr)
                    local_fp = int(((local >= point.threshold) & ~labels).sum())
                    entry: dict[str, Any] = {
                        "site": site_id,
                        "fpr": TAGS[fpr],
                        "dga": dga_scope,
                        "benign": scope,
                        "n_benign": int((~labels).sum()),
                        "k": int(math.floor(fpr * (~labels).sum() + 1e-9)),
                        "local_tpr": point.tpr,
                        "local_fp": local_fp,
                        "decidable": local_fp >= MIN_LOCAL_FP_TO_DECIDE,
                    }
                    for arm in ("fedavg", "secagg", "pooled"):
                        fp = fewest_fp_at_tpr(scores[arm][rows_in], labels, point.tpr)
                        cut = 1.0 - fp / local_fp if local_fp else math.nan
                        entry[f"{arm}_fp"] = fp
                        entry[f"{arm}_fp_cut"] = cut
                    rows.append(entry)
    return rows


def fp_verdict(
    rows: list[dict], *, fpr: str, arm: str = FEDERATED, benign: str = "all"
) -> dict[str, Any]:
    """met / not met / undecidable for the >= 30% cut at every site (all families)."""
    chosen = [
        r for r in rows if r["fpr"] == fpr and r["dga"] == "all families" and r["benign"] == benign
    ]
    cuts = [r[f"{arm}_fp_cut"] for r in chosen]
    failed = [r for r in chosen if r["decidable"] and not r[f"{arm}_fp_cut"] >= FP_CUT_TARGET]
    if failed:
        verdict = "not met"
    elif all(r["decidable"] for r in chosen):
        verdict = "met"
    else:
        verdict = "undecidable"
    finite = [c for c in cuts if math.isfinite(c)]
    return {
        "verdict": verdict,
        "cuts": cuts,
        "smallest_cut": min(finite) if finite else math.nan,
        "local_fp": [r["local_fp"] for r in chosen],
        "k": chosen[0]["k"] if chosen else 0,
    }


def evaluate_arms(
    test: TestSet, models: dict[str, Any], split: Split, site_ids: list[str], shape: Size
) -> dict[str, Any]:
    from common.training import predict_scores

    scores = {
        arm: predict_scores(lab.as_model(m), domains=test.encoded) for arm, m in models.items()
    }
    arm_rows, family_rows, source_rows, site_rows, boot = [], [], [], [], {}
    sources = sorted(set(test.sources[~test.labels].tolist()))
    for arm, arm_scores in scores.items():
        for scope in SCOPES:
            rows_in = test.scope(scope)
            labels, values = test.labels[rows_in], arm_scores[rows_in]
            metrics = operating_points(values, labels)
            recall = family_recall(
                values, labels, test.families[rows_in], metrics["threshold_1e-3"]
            )
            interval = bootstrap_tpr(
                values, labels, fpr=BOOTSTRAP_FPR, reps=shape.bootstrap, seed=SEED
            )
            boot[(arm, scope)] = interval
            below = families_below(recall)
            arm_rows.append(
                {
                    "arm": arm,
                    "benign": scope,
                    **metrics,
                    "tpr_at_fpr_1e-4_boot_low": interval["low"],
                    "tpr_at_fpr_1e-4_boot_high": interval["high"],
                    "tpr_at_fpr_1e-4_boot_sd": interval["sd"],
                    "families_below_0.5": len(below),
                    "families_below_0.5_names": ",".join(below),
                    "min_family_recall": min(recall.values()) if recall else math.nan,
                }
            )
            for family, value in recall.items():
                owner = next(
                    (i for i, fams in enumerate(split.site_families) if family in fams), -1
                )
                family_rows.append(
                    {
                        "arm": arm,
                        "benign": scope,
                        "family": family,
                        "owner_site": site_ids[owner] if owner >= 0 else "",
                        "test_names": int((test.families == family).sum()),
                        "recall_at_fpr_1e-3": value,
                    }
                )
            for index, site_id in enumerate(site_ids):
                own = np.isin(test.families[rows_in], split.site_families[index]) & labels
                unseen = labels & ~own
                threshold = metrics["threshold_1e-3"]
                site_rows.append(
                    {
                        "arm": arm,
                        "benign": scope,
                        "site": site_id,
                        "own_families": len(split.site_families[index]),
                        "own_recall": float((values[own] >= threshold).mean()),
                        "unseen_recall": float((values[unseen] >= threshold).mean()),
                    }
                )
        median_dga = float(np.median(arm_scores[test.labels]))
        for source in sources:
            rows_in = test.scope(source)
            metrics = operating_points(arm_scores[rows_in], test.labels[rows_in])
            benign_scores = arm_scores[~test.labels & (test.sources == source)]
            above = int((benign_scores > median_dga).sum())
            source_rows.append(
                {
                    "arm": arm,
                    "source": source,
                    **metrics,
                    "above_median_dga": above,
                    "above_median_dga_rate": above / max(benign_scores.size, 1),
                }
            )
    return {
        "scores": scores,
        "arms": arm_rows,
        "families": family_rows,
        "sources": source_rows,
        "sites": site_rows,
        "fp_check": fp_check(test, scores, split, site_ids),
    }


# --- targets and payload -----------------------------------------------------------------------


def _row(rows: list[dict], arm: str, scope: str = "all") -> dict[str, Any]:
    return next(r for r in rows if r["arm"] == arm and r["benign"] == scope)


def targets(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Each product target on the deployed arm (SecAgg+): met / not met / undecidable.

    Verdicts are read on all benign test names; the figure without the contaminated list
    stands beside it. A TPR whose FPR the benign count cannot resolve is undecidable.
    """
    rows = evaluation["arms"]
    arms = {"secagg": FEDERATED, "fedavg": "fedavg", "pooled": "pooled"}
    at = {column: _row(rows, arm) for column, arm in arms.items()}
    clean = _row(rows, FEDERATED, "clean")
    out = []

    def add(target: str, goal: str, key: str, verdict: str, fmt: str, note: str = "") -> None:
        entry = {"target": target, "goal": goal, "verdict": verdict, "note": note}
        for column, row in (*at.items(), ("secagg_clean", clean)):
            entry[column] = row[key]
            entry[f"{column}_shown"] = _fmt(row[key], fmt)
        out.append(entry)

    auc_verdict = "met" if at["secagg"]["auc"] >= TARGETS["auc"] else "not met"
    add("AUC", f">= {TARGETS['auc']}", "auc", auc_verdict, "{:.4f}")
    for tag in ("1e-3", "1e-4"):
        key = f"tpr_at_fpr_{tag}"
        fed, goal = at["secagg"], TARGETS[key]
        if not fed[f"resolvable_{tag}"]:
            verdict = "undecidable"
        else:
            verdict = "met" if fed[key] >= goal else "not met"
        note = (
            f"k = {fed[f'k_{tag}']} of {fed['n_benign']:,} benign, "
            f"{'resolvable' if fed[f'resolvable_{tag}'] else 'NOT resolvable'}; without the "
            f"list k = {clean[f'k_{tag}']}, "
            f"{'resolvable' if clean[f'resolvable_{tag}'] else 'NOT resolvable'}"
        )
        if tag == "1e-4":
            note += (
                f"; bootstrap 95% {_fmt(fed['tpr_at_fpr_1e-4_boot_low'])}-"
                f"{_fmt(fed['tpr_at_fpr_1e-4_boot_high'])} (without the list "
                f"{_fmt(clean['tpr_at_fpr_1e-4_boot_low'])}-"
                f"{_fmt(clean['tpr_at_fpr_1e-4_boot_high'])})"
            )
        add(f"TPR at FPR {tag}", f">= {goal}", key, verdict, "{:.3f}", note)
    fed = at["secagg"]
    below = fed["families_below_0.5"]
    add(
        "no family below 0.5 recall at FPR 1e-3",
        "0 families",
        "families_below_0.5",
        ("met" if below == 0 else "not met") if fed["resolvable_1e-3"] else "undecidable",
        "{:d}",
        fed["families_below_0.5_names"],
    )
    for tag in ("1e-3", "1e-4"):
        checks = evaluation["fp_check"]
        result = {
            "secagg": fp_verdict(checks, fpr=tag),
            "fedavg": fp_verdict(checks, fpr=tag, arm="fedavg"),
            "pooled": fp_verdict(checks, fpr=tag, arm="pooled"),
            "secagg_clean": fp_verdict(checks, fpr=tag, benign="clean"),
        }
        cuts = ", ".join(_fmt(c, "{:.0%}") for c in result["secagg"]["cuts"])
        entry = {
            "target": f"federated >= 30% fewer FPs than local-only at equal TPR, every site, "
            f"FPR {tag}",
            "goal": ">= 30% at each site",
            "verdict": result["secagg"]["verdict"],
            "note": f"smallest cut over sites shown; SecAgg+ per site {cuts}; local FPs "
            f"{result['secagg']['local_fp']} (k = {result['secagg']['k']}; decidable when >= "
            f"{MIN_LOCAL_FP_TO_DECIDE}); without the list: "
            f"{result['secagg_clean']['verdict']}, local FPs "
            f"{result['secagg_clean']['local_fp']}",
        }
        for column, verdict in result.items():
            entry[column] = verdict["smallest_cut"]
            entry[f"{column}_shown"] = _fmt(verdict["smallest_cut"], "{:.0%}")
        out.append(entry)
    return out


def build_payload(
    size: str,
    shape: Size,
    split: Split,
    site_rows: list[dict],
    checks: dict[str, int],
    evaluation: dict[str, Any],
    timings: dict[str, Any],
    peak_mib: float,
) -> dict[str, Any]:
    from client.local import SPEC

    corpus = split.corpus
    test_rows = split.test
    benign_test = test_rows & (corpus.labels == 0)
    sources = Counter(corpus.sources[benign_test].tolist())
    per_site = shape.samples_per_site
    samples = {
        **{f"local:{row['site']}": per_site for row in site_rows},
        "fedavg": per_site * shape.sites,
        "secagg": per_site * shape.sites,
        "pooled": per_site * shape.sites,
        "transfer": shape.rounds * shape.transfer_local_steps * shape.batch * shape.transfer_sites,
    }
    for row in evaluation["arms"]:
        row["samples"] = samples[row["arm"]]
        row["train_s"] = timings[row["arm"]]["train_s"]
    return {
        "size": size,
        "config": {
            "sites": shape.sites,
            "rounds": shape.rounds,
            "local_steps": shape.local_steps,
            "batch": shape.batch,
            "samples_per_site": per_site,
            "samples_central_equivalent": per_site * shape.sites,
            "seed": SEED,
            "benign_events_per_day": BENIGN_EVENTS_PER_DAY,
            "contaminated_source": CONTAMINATED_SOURCE,
            "bootstrap_reps": shape.bootstrap,
            "transfer": {
                "sites": shape.transfer_sites,
                "days": shape.transfer_days,
                "scale": shape.transfer_scale,
                "local_steps": shape.transfer_local_steps,
            },
            "model_reads": SPEC.reads,
        },
        "data": {
            "names": int(corpus.names.size),
            "dga": int((corpus.labels == 1).sum()),
            "benign": int((corpus.labels == 0).sum()),
            "families": len(set(corpus.families[corpus.labels == 1].tolist())),
            "dropped_duplicates": corpus.dropped_duplicates,
            "provider_domains": len(split.providers),
            "test_dga": int((test_rows & (corpus.labels == 1)).sum()),
            "test_benign": int(benign_test.sum()),
            "test_benign_by_source": dict(sorted(sources.items())),
            "site_families": {
                row["site"]: fams for row, fams in zip(site_rows, split.site_families, strict=True)
            },
        },
        "sites": site_rows,
        "checks": checks,
        "timings": timings,
        "peak_rss_mib": peak_mib,
        "arms": evaluation["arms"],
        "sources": evaluation["sources"],
        "families": evaluation["families"],
        "site_split": evaluation["sites"],
        "fp_check": evaluation["fp_check"],
        "targets": targets(evaluation),
    }


# --- the run -----------------------------------------------------------------------------------


def run(*, size: str, root: Path = lab.RESULTS_ROOT, real_dev: str | Path | None = None) -> dict:
    """Split the real names, write the sites, train every arm, score, write the results.

    Without a real-dev folder (`real_dev`, else $FEDSEC_REAL_DEV) it stops with one line
    naming the fix, as every fedsec command does.
    """
    return run_real_dev(measure, SIZES, size=size, root=root, real_dev=real_dev)


def measure(folder: Path, *, size: str, root: Path = lab.RESULTS_ROOT) -> dict:
    """`run` once the real-dev folder is known (what tests and other code call)."""
    from client.local import SPEC
    from experiments.value import one_torch_thread

    shape = SIZES[size]
    timings: dict[str, Any] = {}
    with (
        lab.PeakRss() as peak,
        lab.stopwatch() as total,
        one_torch_thread(),
        tempfile.TemporaryDirectory(prefix="fedsec-lowfpr-") as temp,
    ):
        data_dir, work = Path(temp) / "sites", Path(temp) / "work"
        with lab.stopwatch() as watch:
            corpus = load_corpus(folder)
            split = split_corpus(
                corpus,
                n_sites=shape.sites,
                test_benign=shape.test_benign,
                site_test_fraction=shape.site_test_fraction,
                seed=SEED,
            )
            written = write_sites(split, data_dir, seed=SEED)
            sites = lab.load_sites(data_dir, work / "sites")
            for site in sites:  # encode once here, so no arm's training time includes it
                site.encoded(SPEC)
        timings["prepare_s"] = watch["seconds"]
        site_rows, checks = site_checks(sites, split, written)
        log.info(
            "split %d names: %d test (%d benign), %d sites written and parsed in %.0f s",
            corpus.names.size,
            int(split.test.sum()),
            int((split.test & (corpus.labels == 0)).sum()),
            len(sites),
            watch["seconds"],
        )
        for row in site_rows:
            if row["quality_gate"] != "pass":
                raise RuntimeError(f"{row['site']} fails its quality gate: {row['quality_gate']}")
        models = train_arms(sites, data_dir, work, shape, timings)
        models["transfer"] = train_transfer(work, shape, timings)
        with lab.stopwatch() as watch:
            test = test_set(split)
            evaluation = evaluate_arms(test, models, split, [s.site_id for s in sites], shape)
        timings["evaluate_s"] = watch["seconds"]
        log.info(
            "scored %d arms on %d test names in %.0f s",
            len(models),
            test.labels.size,
            watch["seconds"],
        )
    timings["total_s"] = total["seconds"]
    payload = build_payload(
        size, shape, split, site_rows, checks, evaluation, timings, peak.peak_mib
    )
    write_outputs(Results(NAME, TITLE, root), payload, evaluation["scores"], test)
    return payload


# --- outputs -----------------------------------------------------------------------------------


def arm_label(arm: str) -> str:
    if arm.startswith("local:"):
        return f"local only, {arm.removeprefix('local:')}"
    return ARM_LABELS[arm]


def _res(row: dict, tag: str) -> str:
    return "yes" if row[f"resolvable_{tag}"] else "**no**"


def _fmt(value: Any, spec: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return spec.format(value)


def _arm_table_rows(rows: list[dict], scope: str) -> list[dict]:
    out = []
    for row in rows:
        if row["benign"] != scope:
            continue
        out.append(
            {
                **row,
                "label": arm_label(row["arm"]),
                "res_1e-3": _res(row, "1e-3"),
                "res_1e-4": _res(row, "1e-4"),
                "res_1e-5": _res(row, "1e-5"),
                "boot": f"{_fmt(row['tpr_at_fpr_1e-4_boot_low'])}-"
                f"{_fmt(row['tpr_at_fpr_1e-4_boot_high'])}",
            }
        )
    return out


ARM_COLUMNS = (
    Column("label", "arm"),
    Column("auc", "AUC", "{:.4f}"),
    Column("tpr_at_fpr_1e-3", "TPR@1e-3"),
    Column("k_1e-3", "k", "{:d}"),
    Column("res_1e-3", "resolvable"),
    Column("tpr_at_fpr_1e-4", "TPR@1e-4"),
    Column("k_1e-4", "k", "{:d}"),
    Column("res_1e-4", "resolvable"),
    Column("boot", "TPR@1e-4 bootstrap 95%"),
    Column("fp_per_day_upper95_1e-4", "FP/day 95% upper @1e-4", "{:,.0f}"),
    Column("tpr_at_fpr_1e-5", "TPR@1e-5"),
    Column("res_1e-5", "resolvable"),
    Column("families_below_0.5", "families < 0.5", "{:d}"),
    Column("samples", "samples", "{:,d}"),
    Column("train_s", "train s", "{:,.0f}"),
)


def write_outputs(
    results: Results, payload: dict[str, Any], scores: dict[str, np.ndarray], test: TestSet
) -> None:
    results.write_json(payload)
    results.write_csv(payload["arms"], "arms.csv")
    results.write_csv(payload["sources"], "sources.csv")
    results.write_csv(payload["families"], "families.csv")
    results.write_csv(payload["site_split"], "site_split.csv")
    results.write_csv(payload["fp_check"], "fp_check.csv")
    results.write_csv(payload["targets"], "targets.csv")
    results.write_csv(payload["sites"], "sites.csv")
    write_tables(results, payload)
    plots = write_plots(results, payload, scores, test)
    results.write_table_md(
        size=payload["size"], command=COMMAND, intro=intro_text(payload), plots=plots
    )


def intro_text(payload: dict[str, Any]) -> str:
    config, data = payload["config"], payload["data"]
    fed = _row(payload["arms"], FEDERATED)
    clean = _row(payload["arms"], FEDERATED, "clean")
    pooled = _row(payload["arms"], "pooled")
    transfer = _row(payload["arms"], "transfer")
    local = [r for r in payload["arms"] if r["arm"].startswith("local:") and r["benign"] == "all"]
    met = sum(t["verdict"] == "met" for t in payload["targets"])
    by_source = {r["source"]: r for r in payload["sources"] if r["arm"] == FEDERATED}
    listed = by_source.get(CONTAMINATED_SOURCE)
    others = [r for name, r in by_source.items() if name != CONTAMINATED_SOURCE]

    def tail(row: dict) -> str:
        text = (
            f"TPR@1e-3 {row['tpr_at_fpr_1e-3']:.3f} (k = {row['k_1e-3']}, "
            f"{'resolvable' if row['resolvable_1e-3'] else 'NOT resolvable'})"
        )
        if row["resolvable_1e-4"]:  # an unresolvable 1e-4 figure is never a headline
            text += (
                f", TPR@1e-4 {row['tpr_at_fpr_1e-4']:.3f} (k = {row['k_1e-4']}, resolvable; "
                f"bootstrap 95% {row['tpr_at_fpr_1e-4_boot_low']:.3f}-"
                f"{row['tpr_at_fpr_1e-4_boot_high']:.3f})"
            )
        return text

    sentences = [
        f"{data['names']:,} real names ({data['dga']:,} DGA of {data['families']} families, "
        f"{data['benign']:,} benign); pooled held-out test set {data['test_dga']:,} DGA + "
        f"{data['test_benign']:,} benign names, split by registered label. {config['sites']} "
        f"fedsec sites, each holding a disjoint share of the families; {config['rounds']} "
        f"rounds x {config['local_steps']} local steps x batch {config['batch']} "
        f"({config['samples_per_site']:,} samples per site, "
        f"{config['samples_central_equivalent']:,} central-equivalent for the federated and "
        "pooled arms).",
        f"SecAgg+ (deployed): AUC {fed['auc']:.4f}, {tail(fed)}; without {CONTAMINATED_SOURCE} "
        f"({clean['n_benign']:,} benign): AUC {clean['auc']:.4f}, {tail(clean)}.",
        f"Pooled upper bound: AUC {pooled['auc']:.4f}, {tail(pooled)}. Local only: AUC "
        f"{min(r['auc'] for r in local):.4f}-{max(r['auc'] for r in local):.4f}, TPR@1e-3 "
        f"{min(r['tpr_at_fpr_1e-3'] for r in local):.3f}-"
        f"{max(r['tpr_at_fpr_1e-3'] for r in local):.3f}. Trained on generated sites only: "
        f"AUC {transfer['auc']:.4f}, TPR@1e-3 {transfer['tpr_at_fpr_1e-3']:.3f}.",
        (
            f"Benign test names of {CONTAMINATED_SOURCE} scoring above the median DGA test "
            f"name under SecAgg+: {listed['above_median_dga']} of {listed['n_benign']:,} "
            f"({listed['above_median_dga_rate']:.1e}); other sources at most "
            f"{max(r['above_median_dga_rate'] for r in others):.1e}."
            if listed and others
            else ""
        ),
        f"Targets met: {met} of {len(payload['targets'])} (table below). Run time "
        f"{payload['timings']['total_s'] / 60:.0f} min on a shared 2-core machine (one torch "
        "thread; read timings as rough).",
    ]
    return " ".join(sentence for sentence in sentences if sentence)


def write_tables(results: Results, payload: dict[str, Any]) -> None:
    results.add_table(
        "Targets (read on SecAgg+, the deployed arm)",
        payload["targets"],
        [
            Column("target", "target"),
            Column("goal", "goal"),
            Column("secagg_shown", "SecAgg+"),
            Column("verdict", "verdict"),
            Column("secagg_clean_shown", f"SecAgg+ without {CONTAMINATED_SOURCE}"),
            Column("fedavg_shown", "FedAvg"),
            Column("pooled_shown", "pooled"),
            Column("note", "resolvability / detail"),
        ],
        notes=[
            "Verdicts are read on all benign test names. A TPR at a target FPR is resolvable "
            "when the benign test names number at least 3 / FPR (k = floor(FPR x N) false "
            "positives allowed >= 3); an unresolvable one is undecidable, never met. The "
            "FP-cut rows show the smallest cut over the sites (all families); a measured cut "
            "below 30% at a decidable site is 'not met' as measured, not a significance "
            "test. Per-site figures are in the FP table below, the own-family scope in "
            "fp_check.csv."
        ],
    )
    for scope, heading in SCOPES.items():
        results.add_table(
            f"Every arm on the pooled test names, {heading}",
            _arm_table_rows(payload["arms"], scope),
            ARM_COLUMNS,
            notes=[
                "k = false positives the target FPR allows on this benign set; FP/day upper "
                "= one-sided 95% Clopper-Pearson bound on the FPR at the 1e-4 threshold x "
                f"{BENIGN_EVENTS_PER_DAY:.0e} benign queries/day; families < 0.5 = families "
                "with recall below 0.5 at the FPR 1e-3 threshold. Samples = minibatch rows "
                "the arm trained on; train s = wall seconds of training (federated arms: the "
                "train phases of all rounds, SecAgg+ protocol included)."
            ]
            if scope == "all"
            else [],
        )
    fp_rows = [
        {
            **row,
            "local_tpr_s": f"{row['local_tpr']:.3f}",
            "decidable_s": "yes" if row["decidable"] else "**no**",
        }
        for row in payload["fp_check"]
        if row["dga"] == "all families"
    ]
    results.add_table(
        "Federated vs local-only: false positives at the local model's TPR, per site",
        fp_rows,
        [
            Column("site", "site"),
            Column("fpr", "local at FPR"),
            Column("benign", "benign"),
            Column("k", "k", "{:d}"),
            Column("local_tpr_s", "local TPR"),
            Column("local_fp", "local FPs", "{:d}"),
            Column("decidable_s", "decidable"),
            Column("fedavg_fp", "FedAvg FPs", "{:d}"),
            Column("fedavg_fp_cut", "FedAvg cut", "{:.0%}"),
            Column("secagg_fp", "SecAgg+ FPs", "{:d}"),
            Column("secagg_fp_cut", "SecAgg+ cut", "{:.0%}"),
            Column("pooled_fp_cut", "pooled cut", "{:.0%}"),
        ],
        notes=[
            "DGA = every family in the pooled test set; benign `all` or `clean` (without "
            f"{CONTAMINATED_SOURCE}). Local FPs = benign names the site's own model flags at "
            "its FPR target; the federated count is the fewest benign names any threshold "
            "flags while keeping at least the local TPR. Decidable when local FPs >= "
            f"{MIN_LOCAL_FP_TO_DECIDE} (a 30% cut is then two Poisson standard deviations). "
            "The same check on each site's own families only is in fp_check.csv."
        ],
    )
    own = [
        r
        for r in payload["site_split"]
        if r["benign"] == "all" and (r["arm"] in ("secagg", "pooled", "transfer"))
    ]
    local = {
        r["site"]: r
        for r in payload["site_split"]
        if r["benign"] == "all" and r["arm"] == f"local:{r['site']}"
    }
    split_rows = []
    for site, row in local.items():
        entry = {
            "site": site,
            "own_families": row["own_families"],
            "local_own": row["own_recall"],
            "local_unseen": row["unseen_recall"],
        }
        for other in own:
            if other["site"] == site:
                entry[f"{other['arm']}_own"] = other["own_recall"]
                entry[f"{other['arm']}_unseen"] = other["unseen_recall"]
        split_rows.append(entry)
    results.add_table(
        "Own vs unseen families per site: recall at FPR 1e-3 (all benign)",
        split_rows,
        [
            Column("site", "site"),
            Column("own_families", "own families", "{:d}"),
            Column("local_own", "local, own"),
            Column("local_unseen", "local, unseen"),
            Column("secagg_own", "SecAgg+, own"),
            Column("secagg_unseen", "SecAgg+, unseen"),
            Column("pooled_own", "pooled, own"),
            Column("pooled_unseen", "pooled, unseen"),
        ],
        notes=[
            "Each model's own FPR 1e-3 threshold on all benign test names; own = DGA test "
            "names of the families the site holds, unseen = every other family."
        ],
    )
    source_rows = [
        {
            **r,
            "label": arm_label(r["arm"]),
            "res_1e-3": _res(r, "1e-3"),
            "res_1e-4": _res(r, "1e-4"),
        }
        for r in payload["sources"]
        if r["arm"] in (FEDERATED, "pooled")
    ]
    results.add_table(
        "Per benign source (each source alone as the benign side)",
        source_rows,
        [
            Column("label", "arm"),
            Column("source", "benign source"),
            Column("n_benign", "benign names", "{:,d}"),
            Column("above_median_dga", "above median DGA score", "{:d}"),
            Column("above_median_dga_rate", "rate", "{:.1e}"),
            Column("auc", "AUC", "{:.4f}"),
            Column("tpr_at_fpr_1e-3", "TPR@1e-3"),
            Column("k_1e-3", "k", "{:d}"),
            Column("res_1e-3", "resolvable"),
            Column("tpr_at_fpr_1e-4", "TPR@1e-4"),
            Column("k_1e-4", "k", "{:d}"),
            Column("res_1e-4", "resolvable"),
        ],
        notes=[
            "Above median DGA score = the source's benign test names scoring above the median "
            "DGA test name: a list that holds real DGA names shows many. Every arm is in "
            "sources.csv."
        ],
    )
    write_family_table(results, payload)
    write_timing_table(results, payload)
    checks = payload["checks"]
    results.add_table(
        "Checks",
        [
            {
                "what": "site names labelled differently by fedsec than in the data",
                "value": checks["label_mismatches"],
            },
            {"what": "site names not in the data", "value": checks["unknown_names"]},
            {
                "what": "pooled test names found at any site",
                "value": checks["pooled_test_names_at_sites"],
            },
            {
                "what": "federated rounds completed (FedAvg, SecAgg+)",
                "value": f"{payload['timings']['fedavg']['rounds_completed']}, "
                f"{payload['timings']['secagg']['rounds_completed']}",
            },
            {
                "what": "site failures in federated rounds (FedAvg, SecAgg+)",
                "value": f"{payload['timings']['fedavg']['site_failures']}, "
                f"{payload['timings']['secagg']['site_failures']}",
            },
        ],
        [Column("what", "check"), Column("value", "value", "{}")],
    )


def write_family_table(results: Results, payload: dict[str, Any]) -> None:
    cells = [r for r in payload["families"] if r["benign"] == "all"]
    by = {(r["arm"], r["family"]): r for r in cells}
    families = sorted(
        {r["family"] for r in cells}, key=lambda f: by[(FEDERATED, f)]["recall_at_fpr_1e-3"]
    )
    rows = []
    for family in families:
        owner = by[(FEDERATED, family)]["owner_site"]
        rows.append(
            {
                "family": family,
                "owner": owner,
                "test_names": by[(FEDERATED, family)]["test_names"],
                "local_owner": by[(f"local:{owner}", family)]["recall_at_fpr_1e-3"]
                if owner
                else math.nan,
                **{arm: by[(arm, family)]["recall_at_fpr_1e-3"] for arm in ARM_LABELS},
            }
        )
    results.add_table(
        "Recall per family at FPR 1e-3 (all benign), lowest SecAgg+ recall first",
        rows,
        [
            Column("family", "family"),
            Column("owner", "held by"),
            Column("test_names", "test names", "{:,d}"),
            Column("local_owner", "local only (holder)"),
            *(Column(arm, label) for arm, label in ARM_LABELS.items()),
        ],
        notes=[
            "Each model at its own FPR 1e-3 threshold. Local only (holder) = the model of the "
            "one site that trained on the family; the federated and pooled models saw it "
            "through that site; the transfer model never saw any real family."
        ],
    )


def write_timing_table(results: Results, payload: dict[str, Any]) -> None:
    timings = payload["timings"]
    rows = []
    for arm, entry in timings.items():
        if not isinstance(entry, dict):
            continue
        rows.append(
            {
                "arm": arm_label(arm),
                "train_s": entry["train_s"],
                "wall_s": entry.get("wall_s", entry["train_s"]),
                "other": (
                    f"evaluate phases {entry['evaluate_phase_s']:.0f} s"
                    if "evaluate_phase_s" in entry
                    else ""
                )
                + (f", generation {entry['generate_s']:.0f} s" if "generate_s" in entry else ""),
            }
        )
    rows.append(
        {
            "arm": "whole run",
            "train_s": math.nan,
            "wall_s": timings["total_s"],
            "other": f"split + site folders + parsing {timings['prepare_s']:.0f} s, scoring and "
            f"bootstrap {timings['evaluate_s']:.0f} s, peak memory "
            f"{payload['peak_rss_mib']:,.0f} MiB",
        }
    )
    results.add_table(
        "Seconds",
        rows,
        [
            Column("arm", "arm"),
            Column("train_s", "training s", "{:,.0f}"),
            Column("wall_s", "wall s", "{:,.0f}"),
            Column("other", "also"),
        ],
        notes=["One torch thread per arm on a shared 2-core machine: rough figures."],
    )


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from common.metrics import confusion_at_thresholds, score_thresholds

    confusion = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=score_thresholds(scores)
    )
    return confusion.fpr[::-1], confusion.tpr[::-1]


def write_plots(
    results: Results, payload: dict[str, Any], scores: dict[str, np.ndarray], test: TestSet
) -> list[str]:
    def draw_roc(figure: Any) -> None:
        for index, (scope, heading) in enumerate(SCOPES.items()):
            axes = figure.add_subplot(1, len(SCOPES), index + 1)
            rows_in = test.scope(scope)
            labels = test.labels[rows_in]
            benign = int((~labels).sum())
            floor = 0.5 / max(benign, 1)
            for arm, values in scores.items():
                fpr, tpr = roc_points(values[rows_in], labels)
                local = arm.startswith("local:")
                axes.step(
                    np.clip(fpr, floor, None),  # FPR 0 drawn at the left edge
                    tpr,
                    where="post",
                    label="local only (each site)"
                    if arm == "local:site-00"
                    else (None if local else ARM_LABELS[arm]),
                    color="grey" if local else None,
                    linewidth=0.8 if local else 1.6,
                    alpha=0.7 if local else 1.0,
                )
            axes.axvspan(floor, min(3.0 / max(benign, 1), 1.0), color="lightgrey", alpha=0.5)
            axes.text(
                floor * 1.1, 0.02, "not resolvable\n(< 3 benign)", fontsize=7, color="dimgrey"
            )
            axes.scatter(
                [1e-3, 1e-4],
                [TARGETS["tpr_at_fpr_1e-3"], TARGETS["tpr_at_fpr_1e-4"]],
                marker="*",
                s=90,
                color="black",
                zorder=5,
                label="targets",
            )
            for fpr_line in (1e-3, 1e-4):
                axes.axvline(fpr_line, color="black", linestyle=":", linewidth=0.7)
            axes.set_xscale("log")
            axes.set_xlim(floor, 1.0)
            axes.set_ylim(0.0, 1.0)
            axes.set_xlabel(f"FPR ({benign:,} benign test names)")
            axes.set_ylabel("TPR (pooled DGA test names)")
            axes.set_title(heading, fontsize=9)
            axes.grid(alpha=0.3)
        figure.axes[0].legend(fontsize=7, loc="lower right")

    results.plot("roc.png", draw_roc, size=(12.0, 4.8))

    cells = [r for r in payload["families"] if r["benign"] == "all"]
    arms = list(scores)
    families = sorted({r["family"] for r in cells})
    grid = np.full((len(families), len(arms)), np.nan)
    own = np.zeros_like(grid, dtype=bool)
    for r in cells:
        i, j = families.index(r["family"]), arms.index(r["arm"])
        grid[i, j] = r["recall_at_fpr_1e-3"]
        own[i, j] = r["arm"] == f"local:{r['owner_site']}"

    def draw_families(figure: Any) -> None:
        axes = figure.add_subplot(1, 1, 1)
        image = axes.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            text = "" if np.isnan(value) else f"{value:.2f}" + ("*" if own[i, j] else "")
            axes.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=6,
                color="black" if value > 0.6 else "white",
            )
        axes.set_xticks(
            range(len(arms)),
            [arm_label(a).replace("local only, ", "local\n").replace(" (", "\n(") for a in arms],
            fontsize=7,
        )
        axes.set_yticks(range(len(families)), families, fontsize=7)
        axes.set_title(
            "Recall per family at FPR 1e-3 (all benign); * = the site's own family", fontsize=9
        )
        figure.colorbar(image, ax=axes, label="recall")

    results.plot(
        "families.png", draw_families, size=(1.1 * len(arms) + 3, 0.28 * len(families) + 2)
    )
    return ["roc.png", "families.png"]


# --- command line ------------------------------------------------------------------------------


def run_real_dev(
    measure: Callable[..., Any],
    sizes: Mapping[str, Any],
    *,
    size: str,
    root: Path,
    real_dev: str | Path | None,
) -> Any:
    """`fedsec experiment NAME` for an experiment on real names: refuse an unknown size, find
    the real-dev folder (`real_dev`, else $FEDSEC_REAL_DEV) or stop with one line naming the
    fix, then `measure(folder, size=..., root=...)`."""
    if size not in sizes:
        raise ValueError(f"size must be one of {sorted(sizes)}, got {size!r}")
    try:
        folder = real_dev_folder(real_dev)
    except ConfigError as error:
        from fedsec.cli import fail

        fail(str(error))
    return measure(folder, size=size, root=root)


def real_dev_main(
    module: str, description: str | None, measure: Callable[..., Any], argv: list[str] | None
) -> None:
    """The command line of an experiment on real names: `python -m MODULE --real-dev PATH
    [--full | --tiny] [--out ROOT]`, calling `measure(folder, size=..., root=...)`."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_const", const="full", dest="size")
    group.add_argument("--tiny", action="store_const", const="tiny", dest="size")
    parser.add_argument("--out", type=Path, default=lab.RESULTS_ROOT, help="results root")
    parser.add_argument(
        "--real-dev", type=Path, default=None, help=f"folder of real names [${REAL_DEV_ENV}]"
    )
    args = parser.parse_args(argv)
    try:
        folder = real_dev_folder(args.real_dev)
    except ConfigError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    lab.setup_logging()
    measure(folder, size=args.size or "default", root=args.out)


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.lowfpr --real-dev PATH [--full | --tiny] [--out ROOT]`."""
    real_dev_main("experiments.lowfpr", __doc__, measure, argv)


if __name__ == "__main__":
    main()
