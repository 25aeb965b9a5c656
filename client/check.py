"""`fedsec check`: validate a site's config and logs (DQA) and say exactly what leaves the site.

Exit codes: 0 the site may train; 1 its logs fail the quality gate; 2 the config or a log file
is unusable (the message names the file, the field and the fix).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from client.pipeline import Assessment, prepare_site
from client.readers import LogFormatError
from client.site import SITE_FILE
from common.config import ConfigError


def share_lines(level: str) -> list[str]:
    """What leaves the premises at this share level, metric by metric."""
    from common.share import FEDERATION_FRACTIONS, MIN_CONTRIBUTORS, SHARE_KEYS, SHARE_PREFIXES

    figures = (
        "no training figure"
        if level in ("none", "aggregate")
        else "training-loss figures (2 significant figures)"
    )
    lines = [
        f"what leaves this site (share level '{level}'):",
        "  training: the model update (float arrays of the model's weights, masked by "
        f"secure aggregation) with its example count and {figures}",
    ]
    if level == "none":
        lines.append("  evaluation: only an acknowledgement ({'ack': 1.0}); no metric")
    elif level == "aggregate":
        fractions = ", ".join(
            f"{rate} > {limit:g}" for rate, limit in FEDERATION_FRACTIONS.values()
        )
        lines.extend(
            [
                "  evaluation: in clear only an acknowledgement ({'ack': 1.0, "
                "'aggregate_only': 1.0}); no metric",
                "  evaluation, masked: the dimensionless rates (2 significant figures) and, "
                f"for {fractions}, whether the site is past that limit, only inside a vector "
                "that secure aggregation masks; the coordinator learns means over at least "
                f"{MIN_CONTRIBUTORS} such sites, never this site's value, and nothing at all "
                "under mode=fedavg",
                "  example count: 1 in clear under secure aggregation (the true count travels "
                "masked); rounded to 2 significant figures under mode=fedavg, where nothing "
                "is masked",
            ]
        )
    else:
        keys = sorted(SHARE_KEYS[level])
        prefixes = [f"{prefix}<family>" for prefix in SHARE_PREFIXES[level]]
        lines.append(
            f"  evaluation: {len(keys) + len(prefixes)} metrics, each rounded to 2 "
            "significant figures, non-finite values dropped:"
        )
        lines.extend(
            textwrap.wrap(
                ", ".join([*keys, *prefixes]),
                width=96,
                initial_indent="    ",
                subsequent_indent="    ",
            )
        )
    lines.append(
        "  never: domain names, registered domains, per-query data, log lines, "
        "intel lists, quarantine files, the top false positives or the full report"
    )
    lines.append(
        "  never: the analysts' verdicts, the names and hosts they judged, or their counts "
        "(dqa_verdicts_* stay in the site's own report at every level)"
    )
    return lines


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items())) or "none"


def report_lines(assessment: Assessment) -> list[str]:
    report, config = assessment.report, assessment.config
    lines = [
        f"site {config.site_id}: config OK ({config.logs.format}, "
        f"{len(report.read.files)} log file(s))",
        "files:",
    ]
    for item in report.read.files:
        quarantined = sum(item.quarantined.values())
        lines.append(
            f"  {Path(item.path).name}: {item.lines_read} lines read = {item.header_lines} "
            f"header + {item.records} records + {quarantined} quarantined "
            f"({_fmt_counts(item.quarantined)}); invalid names {item.invalid_domains}, "
            f"duplicates {item.duplicates}, out of order {item.out_of_order}"
            + (", GZIP STREAM TRUNCATED" if item.compressed_stream_truncated else "")
        )
        lines.extend(_quarantine_line(assessment, item.path))
    for path in report.skipped_paths:
        lines.append(f"  {path}: NOT A FILE, nothing read from it")
    if report.intel:
        lines.append("intel:")
    for intel in report.intel:
        lines.append(
            f"  {intel.kind} {Path(intel.path).name}: {intel.lines_read} lines read = "
            f"{intel.skipped} blank/comment/header + {intel.entries} entries + "
            f"{intel.invalid} quarantined ({_fmt_counts(intel.quarantined)})"
        )
        lines.extend(_quarantine_line(assessment, intel.path))
    lines.append("days (UTC):")
    for day in report.read.days:
        lines.append(
            f"  {day.day}: {day.records} records, {day.distinct_names} names, "
            f"quarantined: {_fmt_counts(day.quarantined)}, invalid names "
            f"{day.invalid_domains}, duplicates {day.duplicates}, out of order "
            f"{day.out_of_order}, gaps {day.gaps} "
            f"(longest {day.longest_gap_seconds:.0f} s)"
        )
    lines.append(f"  missing days: {', '.join(report.read.missing_days) or 'none'}")
    if report.labels is not None:
        labels = report.labels
        lines.append(
            f"labels: {labels.names} names, blocklisted {labels.blocklisted}, "
            f"allowlisted {labels.allowlisted}, unlisted {labels.unlisted}, conflicts "
            f"{labels.conflicts} (coverage {labels.coverage:.2%})"
        )
    lines.extend(verdict_lines(assessment))
    if report.split is not None:
        split = report.split
        lines.append(
            f"split: train {split.train_positives} DGA / {split.train_negatives} "
            f"benign, test {split.test_positives} DGA / {split.test_negatives} benign, "
            f"leaked test examples {split.leaked_test_examples}"
        )
    lines.append(
        "quality: "
        + ", ".join(
            f"{name} {value:.4g}"
            for name, value in report.metrics().items()
            if not math.isnan(value) and name not in report.verdict_metrics()
        )
    )
    lines.append(f"quarantined lines: {assessment.quarantine_dir}")
    return lines


def verdict_lines(assessment: Assessment) -> list[str]:
    """The analysts' verdicts as training reads them; contradictions with the intel are listed
    by name (this screen is the site's own) so the analysts or the intel's owner resolve them."""
    figures = assessment.report.verdicts
    if figures is None:
        return []
    if figures.lines_read == 0:
        return [f"verdicts: none yet ({figures.path} is empty or absent)"]
    lines = [
        f"verdicts {Path(figures.path).name}: {figures.lines_read} lines read, "
        f"{figures.quarantined} quarantined; names by latest verdict: malicious "
        f"{figures.malicious}, benign {figures.benign}, unsure {figures.unsure}",
        f"  contradict the intel: {figures.contradict_intel} (malicious but allowlisted "
        f"{figures.contradict_allowlist}, benign but blocklisted {figures.contradict_blocklist}); "
        f"not in the logs {figures.not_in_logs}; training examples labelled by a verdict "
        f"{figures.trained}, judged names kept out of training {figures.withheld} (queried on a "
        "test day or held out: the test keeps the intel's labels)",
        *_quarantine_line(assessment, figures.path),
    ]
    shown = assessment.verdict_contradictions
    for name, intel in shown.items():
        verdict = "malicious" if intel == "benign" else "benign"
        listed = "allowlisted" if intel == "benign" else "blocklisted"
        lines.append(f"    {name}: judged {verdict}, {listed} (the verdict labels training)")
    if figures.contradict_intel > len(shown):
        lines.append(f"    ... and {figures.contradict_intel - len(shown)} more")
    return lines


def _quarantine_line(assessment: Assessment, path: str) -> list[str]:
    """Where this input's bad lines were written (the file itself, not just the folder)."""
    file = assessment.quarantine_files.get(path)
    return [] if file is None else [f"    quarantined lines in {file}"]


def check_site(site_dir: Path) -> tuple[list[str], int]:
    """The lines `fedsec check` prints and its exit code (one read of the logs, as training)."""
    try:
        assessment = prepare_site(site_dir).quality
    except (ConfigError, LogFormatError, ValueError) as error:
        return [f"error: {line}" for line in str(error).splitlines()], 2
    except OSError as error:  # a file that vanished or cannot be opened: one line, no traceback
        where = error.filename or "a site file"
        return [f"error: {where}: cannot be read ({error.strerror or error})"], 2
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
        print(
            f"fedsec: (the site folder must hold {SITE_FILE} and the logs it names)",
            file=sys.stderr,
        )
    return code


__all__: Sequence[str] = [
    "check_command",
    "check_site",
    "report_lines",
    "share_lines",
    "verdict_lines",
]
