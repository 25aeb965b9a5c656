"""Replies collected when they arrive, not on flwr's 3-second beat (Deployment Engine).

flwr 1.42's deployment grid (`HttpGrid.send_and_receive`) pushes a phase's messages, then
asks the SuperLink for the replies every 3 s. A phase whose last reply lands just after a
poll waits up to 3 s more, and a FedAvg round has two phases (SecAgg+ five): seconds of
every round were spent asleep. Here the ServerApp polls after 0.05 s, then backs off by half
again each empty poll up to 1 s, and starts short again whenever a reply arrives (the rest
of the phase's replies tend to follow). One pull asks for all outstanding replies at once,
so a long phase costs the SuperLink about one small request a second.

The simulation's in-memory grid is left as it is (experiments/simulate.py polls it its own
way). Everything else about the call (push first, stop at `timeout`, return what arrived)
is flwr's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

FIRST_POLL_S = 0.05
MAX_POLL_S = 1.0
BACKOFF = 1.5


def prompt_send_and_receive(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float | None = None,
    sleep=time.sleep,
    clock=time.monotonic,
) -> list[Message]:
    """Push `messages`, then pull their replies until all came or `timeout` passed."""
    waiting = set(grid.push_messages(messages))
    end = None if timeout is None else clock() + timeout
    replies: list[Message] = []
    interval = FIRST_POLL_S
    while end is None or clock() < end:
        arrived = list(grid.pull_messages(waiting))
        replies.extend(arrived)
        waiting.difference_update(reply.metadata.reply_to_message_id for reply in arrived)
        if not waiting:
            break
        interval = FIRST_POLL_S if arrived else min(MAX_POLL_S, interval * BACKOFF)
        sleep(interval if end is None else max(0.0, min(interval, end - clock())))
    return replies


def prompt_replies(grid: Grid) -> Grid:
    """`grid`, its `send_and_receive` polling promptly if it is the deployment's grid."""
    from flwr.superlink.grid.http_grid import HttpGrid

    if isinstance(grid, HttpGrid):
        grid.send_and_receive = functools.partial(prompt_send_and_receive, grid)
    return grid
