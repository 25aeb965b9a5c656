"""Replies collected when they arrive, not on flwr's 3-second beat (Deployment Engine).

flwr 1.42's deployment grid (`HttpGrid.send_and_receive`) pushes a phase's messages, then
asks the SuperLink for the replies every 3 s. A phase whose last reply lands just after a
poll waits up to 3 s more, and a FedAvg round has two phases (SecAgg+ five): seconds of
every round were spent asleep. Here the ServerApp polls after 0.05 s, then backs off by half
again each empty poll, and starts short again whenever a reply arrives (the rest of the
phase's replies tend to follow). For the first `PROMPT_S` of a phase the interval stays at
most `PROMPT_MAX_POLL_S` (0.2 s): that is when a small site's reply lands, and by then the
backoff would have reached 0.8-1 s, up to ~0.5 s of waiting per exchange on average. After
it, up to 1 s. One pull asks for all outstanding replies at once, so a phase costs the
SuperLink five small requests a second at first and one a second after. Measured with
`MessageTimes` (below) and 3 data holders, the replies' way back took 0.8-1.0 s a message
before and 0.7-1.7 s after: the poll was not what that leg waited on. flwr's 1 s retry of a
reply's objects that had not landed yet was (`prompt_object_pulls`, below; the data holders'
side: deploy/object_pulls.py).

The simulation's in-memory grid is left as it is (experiments/simulate.py polls it its own
way). Everything else about the call (push first, stop at `timeout`, return what arrived)
is flwr's.

`MessageTimes` records where each message's seconds went, as the ServerApp sees them: the
push (storing the phase's messages in the SuperLink), the round trip from the end of the push
to the reply's collection, split at the reply's `created_at` (stamped by the ClientApp when
it answers, on the data holder's clock) into "out" (delivery to the node, the ClientApp's
start and its work) and "back" (the reply's way home, the ServerApp's poll included). The
split is as good as the clocks' agreement; the round trip needs no agreement.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

FIRST_POLL_S = 0.05
PROMPT_S = 20.0
PROMPT_MAX_POLL_S = 0.2
MAX_POLL_S = 1.0
BACKOFF = 1.5


@dataclass
class MessageTimes:
    """Seconds of the exchanges since the last `drain`, by message type."""

    pushes: list[tuple[str, float]] = field(default_factory=list)  # (type, seconds)
    replies: list[tuple[str, float, float, float]] = field(default_factory=list)

    def pushed(self, message_type: str, seconds: float) -> None:
        self.pushes.append((message_type, seconds))

    def replied(self, message_type: str, *, pushed: float, created: float, pulled: float) -> None:
        self.replies.append((message_type, pulled - pushed, created - pushed, pulled - created))

    def drain(self, *, as_one: str | None = None) -> dict[str, dict[str, Any]]:
        """Per message type (or all under `as_one`), then forgotten: `exchanges` and the mean
        and max `push_s` per exchange; `replies` and the mean and max `round_trip_s`, `out_s`,
        `back_s` per reply."""
        groups: dict[str, dict[str, list]] = {}
        for message_type, seconds in self.pushes:
            groups.setdefault(as_one or message_type, {"push": [], "replies": []})
            groups[as_one or message_type]["push"].append(seconds)
        for message_type, *seconds in self.replies:
            groups.setdefault(as_one or message_type, {"push": [], "replies": []})
            groups[as_one or message_type]["replies"].append(seconds)
        summary: dict[str, dict[str, Any]] = {}
        for name, group in groups.items():
            entry: dict[str, Any] = {"exchanges": len(group["push"])}
            _mean_max(entry, "push_s", group["push"])
            entry["replies"] = len(group["replies"])
            for index, key in enumerate(("round_trip_s", "out_s", "back_s")):
                _mean_max(entry, key, [row[index] for row in group["replies"]])
            summary[name] = entry
        self.pushes.clear()
        self.replies.clear()
        return summary


def _mean_max(entry: dict[str, Any], key: str, values: list[float]) -> None:
    values = [value for value in values if math.isfinite(value)]
    if values:
        entry[f"{key}_mean"] = sum(values) / len(values)
        entry[f"{key}_max"] = max(values)


def _created_at(reply: Message) -> float:
    try:
        return float(reply.metadata.created_at)
    except (AttributeError, TypeError, ValueError):
        return math.nan


def prompt_send_and_receive(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float | None = None,
    sleep=time.sleep,
    clock=time.monotonic,
    wall=time.time,
    times: MessageTimes | None = None,
) -> list[Message]:
    """Push `messages`, then pull their replies until all came or `timeout` passed; with
    `times`, record each exchange's push and each reply's seconds."""
    messages = list(messages)
    started = wall()
    waiting = set(grid.push_messages(messages))
    pushed = wall()
    if times is not None and messages:
        times.pushed(str(messages[0].metadata.message_type), pushed - started)
    begun = clock()
    end = None if timeout is None else begun + timeout
    replies: list[Message] = []
    interval = FIRST_POLL_S
    while end is None or clock() < end:
        arrived = list(grid.pull_messages(waiting))
        replies.extend(arrived)
        if times is not None and arrived:
            pulled = wall()
            for reply in arrived:
                times.replied(
                    str(reply.metadata.message_type),
                    pushed=pushed,
                    created=_created_at(reply),
                    pulled=pulled,
                )
        waiting.difference_update(reply.metadata.reply_to_message_id for reply in arrived)
        if not waiting:
            break
        cap = PROMPT_MAX_POLL_S if clock() - begun < PROMPT_S else MAX_POLL_S
        interval = FIRST_POLL_S if arrived else min(cap, interval * BACKOFF)
        sleep(interval if end is None else max(0.0, min(interval, end - clock())))
    return replies


def prompt_replies(grid: Grid, *, times: MessageTimes | None = None) -> Grid:
    """`grid`, its `send_and_receive` polling promptly (and recording into `times`) if it is
    the deployment's grid."""
    from flwr.superlink.grid import http_grid

    if isinstance(grid, http_grid.HttpGrid):
        grid.send_and_receive = functools.partial(prompt_send_and_receive, grid, times=times)
        prompt_object_pulls(http_grid)
    return grid


OBJECT_RETRY_S = 0.05
OBJECT_RETRY_CAP_S = 1.0


def prompt_object_pulls(module) -> None:
    """A reply is visible before its last object has landed; flwr 1.42 then pulls a missing
    object again after 1 s, doubling to 10 s. Here after OBJECT_RETRY_S, doubling to
    OBJECT_RETRY_CAP_S (the data holders' side does the same: deploy/object_pulls.py)."""
    if not isinstance(module.pull_objects, functools.partial):
        module.pull_objects = functools.partial(
            module.pull_objects, initial_backoff=OBJECT_RETRY_S, backoff_cap=OBJECT_RETRY_CAP_S
        )
