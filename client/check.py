"""`fedsec check`: validate a site's config and logs (DQA) and say exactly what leaves the site.

Exit codes: 0 the site may train; 1 its logs fail the quality gate; 2 the config or a log file
is unusable (the message names the file, the field and the fix).
"""

from __future__ import annotations

import math
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa

from client.domains import normalise_domain_array
from client.dqa import (
    DUPLICATE_KEY,
    DqaReport,
    DqaThresholds,
    QualityGateError,
    QuarantinedLine,
    label_figures,
    quality_gate,
    read_figures,
    split_figures,
)
from client.quarantine import Quarantine
from client.readers import READERS, LogFormatError
from client.site import SITE_FILE, load_intel, load_site_config
from common.config import ConfigError, SiteConfig

CHECK_DIR = Path("work") / "check"
ZEEK_FORMATS = ("zeek-tsv", "zeek-json", "parquet")  # extra columns may simply be absent


class RecordingQuarantine(Quarantine):
    """A quarantine that also remembers (file, line, reason) for the per-day figures."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.lines: list[QuarantinedLine] = []

    def add(self, *, source: Path | str, line_number: int, reason: str, raw: str) -> None:
        super().add(source=source, line_number=line_number, reason=reason, raw=raw)
        self.lines.append((str(source), line_number, reason))


@dataclass(frozen=True)
class Assessment:
    config: SiteConfig
    report: DqaReport
    problems: list[str]
    quarantine_dir: Path


def thresholds_for(config: SiteConfig) -> DqaThresholds:
    """The site's ``[dqa]`` section when the config has one, else the defaults."""
    section = getattr(config, "dqa", None)
    if section is None:
        return DqaThresholds()
    names = {item.name for item in fields(DqaThresholds)}
    return DqaThresholds(**{key: value for key, value in dict(section).items() if key in names})


def read_site_logs(site_dir: Path, config: SiteConfig, quarantine: Quarantine):
    """Every log file through the configured reader: (per-file stats, records with ``file``)."""
    from client.dataset import log_files  # the dataset owns which files are the logs

    mapping = getattr(config.logs, "columns", None)
    fmt = config.logs.format
    extra = [name for name in DUPLICATE_KEY[2:]
             if fmt in ZEEK_FORMATS or name in (mapping or {})]
    stats, tables = [], []
    for path in log_files(site_dir, config):
        table, read = READERS[fmt](path, quarantine=quarantine, columns=("ts", "query", *extra),
                                   mapping=mapping)
        stats.append(read)
        tables.append(table.append_column("file", pa.array([read.path] * table.num_rows,
                                                            pa.string())))
    return stats, pa.concat_tables(tables)


def assess_site(site_dir: Path, *, work_dir: Path | None = None) -> Assessment:
    """Read, label and split the site as training would; compute the DQA report and the gate."""
    from client.dataset import prepare_site

    site_dir = Path(site_dir).resolve()
    config = load_site_config(site_dir)
    work_dir = (work_dir or site_dir / CHECK_DIR).resolve()
    quarantine_dir = work_dir / "quarantine"
    shutil.rmtree(quarantine_dir, ignore_errors=True)
    thresholds = thresholds_for(config)
    with RecordingQuarantine(quarantine_dir) as quarantine:
        stats, records = read_site_logs(site_dir, config, quarantine)
        names, _ = normalise_domain_array(records["query"])
        records = records.append_column("name", names)
        read = read_figures(stats=stats, records=records, quarantined=list(quarantine.lines),
                            gap_seconds=thresholds.gap_seconds,
                            reorder_tolerance_seconds=thresholds.reorder_tolerance_seconds)
    with Quarantine(work_dir / "intel-quarantine") as intel_quarantine:
        intel = load_intel(site_dir, config, quarantine=intel_quarantine)
    labels = label_figures(names.drop_null().unique().to_pylist(), intel.lookup)
    notes, split = [], None
    try:
        data = prepare_site(site_dir, work_dir=work_dir / "prepare")
        split = split_figures(train_labels=data.train.labels,
                              train_registered=data.train.registered.tolist(),
                              test_labels=data.test.labels,
                              test_registered=data.test.registered.tolist())
    except ConfigError as error:
        notes.append(str(error))
    except QualityGateError:
        pass  # should training's own gate run inside prepare_site: the gate is computed below
    report = DqaReport(read=read, labels=labels, split=split, notes=tuple(notes))
    return Assessment(config=config, report=report,
                      problems=[*notes, *quality_gate(report, thresholds)],
                      quarantine_dir=quarantine_dir)


def share_lines(level: str) -> list[str]:
    """What leaves the premises at this share level, metric by metric."""
    from common.share import SHARE_KEYS, SHARE_PREFIXES

    lines = [f"what leaves this site (share level '{level}'):",
             "  training: the model update (float arrays of the model's weights, masked by "
             "secure aggregation) with its example count and training-loss figures"]
    if level == "none":
        lines.append("  evaluation: only an acknowledgement ({'ack': 1.0}); no metric")
    else:
        keys = sorted(SHARE_KEYS[level])
        prefixes = [f"{prefix}<family>" for prefix in SHARE_PREFIXES[level]]
        lines.append(f"  evaluation: {len(keys) + len(prefixes)} metrics, each rounded to 2 "
                     "significant figures, non-finite values dropped:")
        lines.extend(textwrap.wrap(", ".join([*keys, *prefixes]), width=96,
                                   initial_indent="    ", subsequent_indent="    "))
    lines.append("  never: domain names, registered domains, per-query data, log lines, "
                 "intel lists, quarantine files, the top false positives or the full report")
    return lines


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items())) or "none"


def report_lines(assessment: Assessment) -> list[str]:
    report, config = assessment.report, assessment.config
    lines = [f"site {config.site_id}: config OK ({config.logs.format}, "
             f"{len(report.read.files)} log file(s))", "files:"]
    for item in report.read.files:
        lines.append(f"  {Path(item.path).name}: {item.lines_read} lines, {item.header_lines} "
                     f"header, {item.records} records, quarantined: "
                     f"{_fmt_counts(item.quarantined)}, invalid names {item.invalid_domains}, "
                     f"duplicates {item.duplicates}, out of order {item.out_of_order}"
                     + (", GZIP STREAM TRUNCATED" if item.compressed_stream_truncated else ""))
    lines.append("days (UTC):")
    for day in report.read.days:
        lines.append(f"  {day.day}: {day.records} records, {day.distinct_names} names, "
                     f"quarantined: {_fmt_counts(day.quarantined)}, invalid names "
                     f"{day.invalid_domains}, duplicates {day.duplicates}, out of order "
                     f"{day.out_of_order}, gaps {day.gaps} "
                     f"(longest {day.longest_gap_seconds:.0f} s)")
    lines.append(f"  missing days: {', '.join(report.read.missing_days) or 'none'}")
    if report.labels is not None:
        labels = report.labels
        lines.append(f"labels: {labels.names} names, blocklisted {labels.blocklisted}, "
                     f"allowlisted {labels.allowlisted}, unlisted {labels.unlisted}, conflicts "
                     f"{labels.conflicts} (coverage {labels.coverage:.2%})")
    if report.split is not None:
        split = report.split
        lines.append(f"split: train {split.train_positives} DGA / {split.train_negatives} "
                     f"benign, test {split.test_positives} DGA / {split.test_negatives} benign, "
                     f"leaked test examples {split.leaked_test_examples}")
    lines.append("quality: " + ", ".join(
        f"{name} {value:.4g}" for name, value in report.metrics().items() if not math.isnan(value)))
    lines.append(f"quarantined lines: {assessment.quarantine_dir}")
    return lines


def check_site(site_dir: Path) -> tuple[list[str], int]:
    """The lines `fedsec check` prints and its exit code."""
    try:
        assessment = assess_site(site_dir)
    except (ConfigError, LogFormatError, ValueError) as error:
        return [f"error: {line}" for line in str(error).splitlines()], 2
    lines = report_lines(assessment) + share_lines(assessment.config.share.level)
    if assessment.problems:
        lines.append(f"FAIL: {assessment.config.site_id} will not train:")
        lines.extend(f"  - {problem}" for problem in assessment.problems)
        return lines, 1
    lines.append(f"OK: {assessment.config.site_id} passes its quality gate and may train")
    return lines, 0


def check_command(site_dir: Path) -> int:
    """`fedsec check --site SITE_DIR`: print the check and return its exit code."""
    import sys

    lines, code = check_site(Path(site_dir))
    stream = sys.stderr if code == 2 else sys.stdout
    for line in lines:
        print(f"fedsec: {line}" if code == 2 else line, file=stream)
    if code == 2:
        print(f"fedsec: (the site folder must hold {SITE_FILE} and the logs it names)",
              file=sys.stderr)
    return code


__all__: Sequence[str] = ["Assessment", "assess_site", "check_command", "check_site",
                          "share_lines", "thresholds_for"]
