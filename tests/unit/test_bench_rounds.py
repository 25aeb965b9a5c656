"""deploy/bench_rounds.py's readings of a run: the workers' own seconds per message (their log)
and the ServerApp's per-message figures averaged over the rounds after the first."""

from __future__ import annotations

import pytest

from deploy.bench_rounds import HANDLED, SENT, _line_figures, _message_means, _way_out


def test_worker_log_lines_give_seconds_per_handler() -> None:
    logs = [
        "2026-12-04 14:00:01,000 fedsec-worker ready (pid 7) in 3.1s, socket /w\n"
        "2026-12-04 14:00:05,000 fedsec-worker train handled in 0.41s\n"
        "2026-12-04 14:00:07,000 fedsec-worker evaluate handled in 0.20s\n",
        "2026-12-04 14:00:05,100 fedsec-worker train handled in 0.61s\n"
        "2026-12-04 14:00:06,000 fedsec-worker train failed in 0.01s: fedsec-E-SITE\n",
    ]
    got = _line_figures(logs, HANDLED, ("handled",))
    assert got["train"] == {
        "lines": 2,
        "handled_s_mean": pytest.approx(0.51),
        "handled_s_median": pytest.approx(0.51),
        "handled_s_max": 0.61,
    }
    assert got["evaluate"]["lines"] == 1 and set(got) == {"train", "evaluate"}


def test_message_figures_are_averaged_over_the_rounds_after_the_first() -> None:
    rounds = [
        {"round": 1, "messages": {"train": {"round_trip_s_mean": 9.0}}},  # cold: left out
        {"round": 2, "messages": {"train": {"round_trip_s_mean": 2.0, "exchanges": 1}}},
        {"round": 3, "messages": {"train": {"round_trip_s_mean": 3.0, "exchanges": 1}}},
        {"round": 4},  # a round without figures (the simulation's grid) counts for nothing
    ]
    assert _message_means(rounds) == {"train": {"round_trip_s_mean": 2.5, "exchanges": 1.0}}


def test_supernode_lines_give_each_replys_time_at_the_node_and_upload() -> None:
    from deploy.supernode import SENT_LINE

    logs = [
        "INFO :      " + SENT_LINE % ("train", 0.2, 0.3) + "\n"
        "INFO :      " + SENT_LINE % ("evaluate", 0.5, 0.1) + "\n",
        "INFO :      " + SENT_LINE % ("train", 0.4, 0.1) + "\n",
    ]
    got = _line_figures(logs, SENT, ("at_node", "upload"))
    assert got["train"]["lines"] == 2
    assert got["train"]["at_node_s_mean"] == pytest.approx(0.3)
    assert got["train"]["upload_s_mean"] == pytest.approx(0.2)
    assert got["evaluate"]["at_node_s_median"] == 0.5 and got["evaluate"]["upload_s_max"] == 0.1


def test_a_messages_way_out_merges_the_nodes_and_its_clientapps_lines() -> None:
    from deploy.message_times import CLIENTAPP_LINE, RECEIVED_LINE

    clientapp = (0.6, 0.65, 0.7, 0.72, 0.9, 1.4, 1.5)
    logs = [
        "INFO :      " + RECEIVED_LINE % ("train", 0.3, 0.35) + "\n"
        "fedsec-clientapp: " + CLIENTAPP_LINE % ("train", *clientapp) + "\n"
        "INFO :      " + RECEIVED_LINE % ("train", 0.5, 0.55) + "\n",
        "fedsec-clientapp: " + CLIENTAPP_LINE % ("evaluate", *clientapp) + "\n",
    ]
    got = _way_out(logs)
    train = got["train"]
    assert train["at_node_lines"] == 2 and train["process_lines"] == 1
    assert train["at_node_s_median"] == pytest.approx(0.4)
    assert train["stored_s_max"] == pytest.approx(0.55)
    assert [train[f"{step}_s_median"] for step in ("process", "loaded", "handed")] == [
        0.6,
        0.9,
        1.5,
    ]
    assert "at_node_lines" not in got["evaluate"] and got["evaluate"]["replied_s_mean"] == 1.4


def test_the_gap_between_rounds_is_recorded_and_counted_in_the_period(tmp_path) -> None:
    import json
    import time

    from server.rounds import EvaluateOutcome, RoundRecorder, RoundState

    slow_checkpoint = []

    def checkpoint(server_round, arrays) -> None:  # the recording between rounds takes time
        time.sleep(0.05)
        slow_checkpoint.append(server_round)

    recorder = RoundRecorder(tmp_path, config={}, num_rounds=2, on_checkpoint=checkpoint)
    for server_round in (1, 2):
        state = RoundState(server_round)
        state.trained_at = state.started
        state.evaluation = EvaluateOutcome(sites={})
        state.evaluated_at = time.perf_counter()
        recorder.evaluated(state, global_arrays=[])
    rounds = json.loads((tmp_path / "results.json").read_text())["rounds"]
    assert "before" not in rounds[0]["seconds"]  # nothing came before the first round
    assert rounds[1]["seconds"]["before"] >= 0.05  # round 1's checkpoint, before round 2

    from deploy.bench_rounds import _round_means

    means = _round_means(
        [
            {"train": 2.0, "evaluate": 3.0, "total": 5.0, "before": 0.5},
            {"train": 2.0, "evaluate": 2.0, "total": 4.0, "before": 0.3},
        ]
    )
    assert means["total"] == 4.5 and means["period"] == pytest.approx(4.9)
    assert "period" not in _round_means([{"train": 1.0, "evaluate": 1.0, "total": 2.0}])


def test_one_process_table_walks_every_tree_as_its_own_scan_would() -> None:
    import subprocess
    import sys

    from deploy.procs import kill_pids, process_table, process_tree

    # A real parent with a real child: both found from one table, as from a fresh scan.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)",
        ]
    )
    try:
        import time

        deadline = time.monotonic() + 20
        while len(process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        table = process_table()
        assert process_tree(parent.pid, table) == process_tree(parent.pid)
        assert len(process_tree(parent.pid, table)) == 2
        assert process_tree(parent.pid, {}) == []  # a table without it: nothing to walk
    finally:
        kill_pids(process_tree(parent.pid), grace_seconds=1.0)
        parent.wait(timeout=10)
