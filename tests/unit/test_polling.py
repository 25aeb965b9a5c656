"""The ServerApp collects replies as they arrive (server/polling.py), not on a 3-second beat."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from server import polling
from server.polling import prompt_replies, prompt_send_and_receive


class FakeGrid:
    """Replies land at fixed times on a fake clock; every pull is recorded."""

    def __init__(self, arrivals: dict[str, float], clock: list[float]) -> None:
        self.arrivals, self.clock, self.pulls = arrivals, clock, []

    def push_messages(self, messages):
        return list(messages)

    def pull_messages(self, message_ids):
        now = self.clock[0]
        self.pulls.append((now, set(message_ids)))
        return [
            SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=m))
            for m in message_ids
            if self.arrivals[m] <= now
        ]


def _run(arrivals: dict[str, float], timeout: float | None = None):
    clock = [0.0]
    grid = FakeGrid(arrivals, clock)

    def sleep(seconds: float) -> None:
        assert seconds >= 0
        clock[0] += seconds

    replies = prompt_send_and_receive(
        grid, list(arrivals), timeout=timeout, sleep=sleep, clock=lambda: clock[0]
    )
    return replies, grid, clock[0]


def test_every_reply_is_collected_soon_after_it_lands():
    arrivals = {"a": 0.3, "b": 2.2, "c": 7.9}
    replies, grid, ended = _run(arrivals)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b", "c"]
    # flwr's own loop would return at 9 s (its next 3-second poll); here within the prompt cap.
    assert ended - max(arrivals.values()) <= polling.PROMPT_MAX_POLL_S
    # Each reply is pulled once: a pull never asks again for one that already came.
    asked = [ids for _, ids in grid.pulls]
    assert all("a" not in ids for ids in asked[asked.index({"b", "c"}) :])


def test_empty_polls_stay_prompt_while_replies_are_due_then_back_off_to_one_a_second():
    _, grid, ended = _run({"slow": 60.0})
    assert ended >= 60.0
    gaps = [(a[0], b[0] - a[0]) for a, b in zip(grid.pulls, grid.pulls[1:], strict=False)]
    assert gaps[0][1] == pytest.approx(polling.FIRST_POLL_S * polling.BACKOFF)
    early = [gap for at, gap in gaps if at + gap <= polling.PROMPT_S]
    late = [gap for at, gap in gaps if at >= polling.PROMPT_S + polling.MAX_POLL_S]
    assert max(early) == pytest.approx(polling.PROMPT_MAX_POLL_S)
    assert late and all(gap == pytest.approx(polling.MAX_POLL_S) for gap in late)
    # ~5 requests a second while small sites' replies are due, ~1 a second after.
    assert (
        len(grid.pulls) < polling.PROMPT_S / polling.PROMPT_MAX_POLL_S + 60 - polling.PROMPT_S + 10
    )


def test_a_timeout_returns_what_arrived_and_stops_on_time():
    replies, _, ended = _run({"a": 0.5, "never": 1e9}, timeout=5.0)
    assert [r.metadata.reply_to_message_id for r in replies] == ["a"]
    assert ended == pytest.approx(5.0)


def test_only_the_deployment_grid_is_changed():
    from flwr.superlink.grid.http_grid import HttpGrid

    other = FakeGrid({}, [0.0])
    assert prompt_replies(other) is other and "send_and_receive" not in vars(other)
    deployed = HttpGrid.__new__(HttpGrid)  # no connection: only the method is swapped
    assert prompt_replies(deployed) is deployed
    assert deployed.send_and_receive.func is prompt_send_and_receive


class TimedGrid(FakeGrid):
    """Each reply is created `answer` s after the push and lands `travel` s later; the push
    itself takes `push` s of the clock."""

    def __init__(self, answers: dict[str, float], *, travel: float, push: float, clock) -> None:
        super().__init__({m: push + a + travel for m, a in answers.items()}, clock)
        self.answers, self.push = answers, push

    def push_messages(self, messages):
        self.clock[0] += self.push
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, message_ids):
        return [
            SimpleNamespace(
                metadata=SimpleNamespace(
                    reply_to_message_id=reply.metadata.reply_to_message_id,
                    message_type="train",
                    created_at=self.push + self.answers[reply.metadata.reply_to_message_id],
                )
            )
            for reply in super().pull_messages(message_ids)
        ]


def _timed_exchange(times: polling.MessageTimes, answers: dict[str, float]) -> None:
    clock = [0.0]
    grid = TimedGrid(answers, travel=0.25, push=0.5, clock=clock)
    asks = [
        SimpleNamespace(metadata=SimpleNamespace(message_id=m, message_type="train"))
        for m in answers
    ]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    prompt_send_and_receive(
        grid, asks, sleep=sleep, clock=lambda: clock[0], wall=lambda: clock[0], times=times
    )


def test_each_replys_seconds_split_at_its_creation_and_drained_once():
    times = polling.MessageTimes()
    _timed_exchange(times, {"a": 1.0, "b": 3.0})
    _timed_exchange(times, {"c": 2.0})
    summary = times.drain()
    train = summary["train"]
    assert train["exchanges"] == 2 and train["replies"] == 3
    assert train["push_s_mean"] == pytest.approx(0.5)
    assert train["out_s_mean"] == pytest.approx(2.0) and train["out_s_max"] == pytest.approx(3.0)
    # Back = travel + the wait for the next poll: at least the travel, at most one poll more.
    assert 0.25 <= train["back_s_mean"] <= 0.25 + polling.PROMPT_MAX_POLL_S
    assert train["round_trip_s_mean"] == pytest.approx(train["out_s_mean"] + train["back_s_mean"])
    assert times.drain() == {}  # each round reports its own messages only
    _timed_exchange(times, {"d": 1.0})
    assert set(times.drain(as_one="evaluation_sum")) == {"evaluation_sum"}


def test_a_reply_without_a_creation_time_still_counts_its_round_trip():
    times = polling.MessageTimes()
    times.pushed("evaluate", 0.1)
    times.replied("evaluate", pushed=10.0, created=float("nan"), pulled=12.0)
    entry = times.drain()["evaluate"]
    assert entry["round_trip_s_mean"] == pytest.approx(2.0)
    assert "out_s_mean" not in entry and "back_s_mean" not in entry
