"""deploy/bench_rounds.py's readings of a run: the workers' own seconds per message (their log)
and the ServerApp's per-message figures averaged over the rounds after the first."""

from __future__ import annotations

import pytest

from deploy.bench_rounds import _handled_seconds, _message_means


def test_worker_log_lines_give_seconds_per_handler() -> None:
    logs = [
        "2026-12-04 14:00:01,000 fedsec-worker ready (pid 7) in 3.1s, socket /w\n"
        "2026-12-04 14:00:05,000 fedsec-worker train handled in 0.41s\n"
        "2026-12-04 14:00:07,000 fedsec-worker evaluate handled in 0.20s\n",
        "2026-12-04 14:00:05,100 fedsec-worker train handled in 0.61s\n"
        "2026-12-04 14:00:06,000 fedsec-worker train failed in 0.01s: fedsec-E-SITE\n",
    ]
    got = _handled_seconds(logs)
    assert got["train"] == {"messages": 2, "mean": pytest.approx(0.51), "max": 0.61}
    assert got["evaluate"]["messages"] == 1 and set(got) == {"train", "evaluate"}


def test_message_figures_are_averaged_over_the_rounds_after_the_first() -> None:
    rounds = [
        {"round": 1, "messages": {"train": {"round_trip_s_mean": 9.0}}},  # cold: left out
        {"round": 2, "messages": {"train": {"round_trip_s_mean": 2.0, "exchanges": 1}}},
        {"round": 3, "messages": {"train": {"round_trip_s_mean": 3.0, "exchanges": 1}}},
        {"round": 4},  # a round without figures (the simulation's grid) counts for nothing
    ]
    assert _message_means(rounds) == {"train": {"round_trip_s_mean": 2.5, "exchanges": 1.0}}


def test_supernode_lines_give_each_replys_time_at_the_node_and_upload() -> None:
    from deploy.bench_rounds import _sent_seconds
    from deploy.supernode import SENT_LINE

    logs = [
        "INFO :      " + SENT_LINE % ("train", 0.2, 0.3) + "\n"
        "INFO :      " + SENT_LINE % ("evaluate", 0.5, 0.1) + "\n",
        "INFO :      " + SENT_LINE % ("train", 0.4, 0.1) + "\n",
    ]
    got = _sent_seconds(logs)
    assert got["train"]["replies"] == 2
    assert got["train"]["at_node_s_mean"] == pytest.approx(0.3)
    assert got["train"]["upload_s_mean"] == pytest.approx(0.2)
    assert got["evaluate"] == {"replies": 1, "at_node_s_mean": 0.5, "upload_s_mean": 0.1}
