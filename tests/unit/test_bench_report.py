"""experiments/bench_report.py: the same synthetic results rendered both ways, in fresh
processes; the figures are its measurements, so only their shape and the images are checked."""

from __future__ import annotations

from experiments import bench_report
from server.report import build_federation_report


def test_synthetic_results_build_a_report_of_that_many_sites() -> None:
    report = build_federation_report(bench_report.synthetic_results(7, 2))
    assert len(report["last_round"]["sites"]) == 7
    assert report["families"]["families"] == sorted(bench_report.FAMILIES)


def test_both_modes_render_and_only_many_sites_change_the_images() -> None:
    rows = bench_report.measure(sites=[5, 60], rounds=1)
    assert [(row["sites"], row["mode"]) for row in rows] == [
        (5, "every site drawn"),
        (5, "bounded"),
        (60, "every site drawn"),
        (60, "bounded"),
    ]
    widest = {(row["sites"], row["mode"]): row["widest_image_px"] for row in rows}
    assert widest[5, "bounded"] == widest[5, "every site drawn"]
    # 60 bars of 0.55 inch at 96 dpi, against the bounded page's widest (the trends panels).
    assert widest[60, "every site drawn"] > 0.55 * 60 * 96 > widest[60, "bounded"]
    assert all(row["images"] == 5 and row["rss_rise_mib"] >= 0 for row in rows)
