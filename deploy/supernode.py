"""`fedsec-supernode`: flwr's SuperNode, asking for the next message sooner while a run is on.

flwr 1.42's SuperNode (`flwr.supernode.start_client_internal`) asks the SuperLink for a new
message, and when there is none it sleeps 3 s before asking again. Within a run that sleep
is paid at every phase: the coordinator sends the next message a moment after the last
reply, and each node finds it only at its next poll, on average 1.5 s later, and the phase
waits for the slowest node (~2.3 s of 3 for three nodes). A FedAvg round has two phases,
SecAgg+ five. Its waits for a reply from the local ClientApp poll every 0.5 s.

This entry point runs flwr's own `flower-supernode`, command line and all, with two waits
of that one module shortened:
- the idle poll: 0.5 s (`ACTIVE_POLL_S`, or `FEDSEC_ACTIVE_POLL_S`) for `ACTIVE_S` after the
  last message this node received, then flwr's 3 s again. An idle node costs the SuperLink
  what it did; a node in a run asks twice a second (the Fleet proxy allows a node 50
  requests/s). Measured with 3 data holders (experiments/results/deployment-rounds/
  rounds-active-poll-*.json), 0.2, 0.5 and 1 s gave the same round times within the
  machine's noise: the rounds wait on CPU, not on the poll. 0.5 s asks the SuperLink 2.5x
  less often than 0.2 s, which matters for a federation of hundreds of nodes (each poll
  costs the SuperLink ~15 ms of CPU).
- the waits for the ClientApp's reply and for an object's content (local state, no
  network): 0.05 s instead of 0.5 s.
It also logs one line per message it stores (`RECEIVED_LINE`: when its poll brought the
message and when the message's objects were in, deploy/message_times.py) and one per reply
it sends: how long after the ClientApp created it the node
had it in hand (the ClientApp's mods, its hand-over to the node) and how long the upload to
the SuperLink took (the message and its objects, one request each). With the ServerApp's
per-message times (`results.json`, `messages`) that splits a reply's way back into the
data holder's share, the upload and the coordinator's collection (`deploy/bench_rounds.py`).
Everything else (what is pulled, when, retries, authentication) is flwr's. The patch reaches
into that module's names (`time`, `_pull_and_store_message`, `_push_messages`);
`check_flwr` refuses to start on a flwr whose module no longer has them, with the fix,
rather than silently polling slowly.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from deploy.message_times import RECEIVED_LINE
from deploy.object_pulls import prompt_object_pulls

FLWR_VERSION = "1.42.0"
IDLE_POLL_S = 3.0
"""flwr's sleep when a poll brought no message."""
LOCAL_WAIT_S = 0.5
"""flwr's sleep while it waits for the ClientApp's reply or an object's content."""
ACTIVE_POLL_S = 0.5
"""The poll while a run is on, unless the node's environment sets `ENV_ACTIVE_POLL`."""
ENV_ACTIVE_POLL = "FEDSEC_ACTIVE_POLL_S"
ACTIVE_S = 120.0
PROMPT_LOCAL_WAIT_S = 0.05
_MODULE = "flwr.supernode.start_client_internal"


class PromptClock:
    """Stands in for the `time` module inside flwr's SuperNode loop only."""

    def __init__(
        self, *, clock=time.monotonic, sleep=time.sleep, active_poll: float = ACTIVE_POLL_S
    ) -> None:
        self.clock, self._sleep, self.active_poll = clock, sleep, active_poll
        self.last_message: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def received(self) -> None:
        self.last_message = self.clock()

    def active(self) -> bool:
        return self.last_message is not None and self.clock() - self.last_message < ACTIVE_S

    def sleep(self, seconds: float) -> None:
        if seconds == IDLE_POLL_S and self.active():
            seconds = self.active_poll
        elif seconds == LOCAL_WAIT_S:
            seconds = PROMPT_LOCAL_WAIT_S
        self._sleep(seconds)


def active_poll_seconds(env: Mapping[str, str] = os.environ) -> float:
    """`ENV_ACTIVE_POLL` from the environment, or `ACTIVE_POLL_S`. Each poll costs the
    SuperLink ~15 ms of CPU (measured with deploy/bench_rounds.py): a federation of many
    nodes, or one whose coordinator shares its cores, polls less often."""
    text = env.get(ENV_ACTIVE_POLL, "").strip()
    if not text:
        return ACTIVE_POLL_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not PROMPT_LOCAL_WAIT_S <= value <= IDLE_POLL_S:
        raise SystemExit(
            f"fedsec-supernode: {ENV_ACTIVE_POLL}={text!r} is not a number of seconds from "
            f"{PROMPT_LOCAL_WAIT_S:g} to {IDLE_POLL_S:g} (fix: set one, or unset it for "
            f"{ACTIVE_POLL_S:g})"
        )
    return value


def check_flwr(module: ModuleType) -> None:
    """Refuse a flwr this patch was not checked against, naming the fix."""
    version = importlib.metadata.version("flwr")
    pull = getattr(module, "_pull_and_store_message", None)
    push = getattr(module, "_push_messages", None)
    if (
        version != FLWR_VERSION
        or getattr(module, "time", None) is not time
        or not callable(pull)
        or not callable(push)
    ):
        raise SystemExit(
            f"fedsec-supernode: checked against flwr {FLWR_VERSION}'s {_MODULE} (its `time`, "
            f"`_pull_and_store_message` and `_push_messages`), found flwr {version} (fix: "
            f"install flwr=={FLWR_VERSION}, or run flwr's own `flower-supernode`)"
        )


def install(module: ModuleType, clock: PromptClock) -> None:
    """Point `module`'s sleeps at `clock` and tell it of every message the node receives."""
    pull = timed_pull(module._pull_and_store_message)

    def pull_and_note(*args: Any, **kwargs: Any) -> Any:
        run_id = pull(*args, **kwargs)
        if run_id is not None:
            clock.received()
        return run_id

    module._pull_and_store_message = pull_and_note
    module._push_messages = timed_push(module._push_messages)
    module.time = clock
    # A message's objects, pulled from the SuperLink: retried promptly (object_pulls.py).
    prompt_object_pulls(module)


SENT_LINE = "reply to a %s message: at the node %.3f s after its creation, sent in %.3f s"
"""The line logged per reply sent (deploy/bench_rounds.py reads it)."""


def _flwr_log_line(template: str):
    from logging import INFO

    from flwr.common.logger import log

    def log_line(*args: Any) -> None:
        log(INFO, template, *args)

    return log_line


def timed_pull(pull, *, wall=time.time, log_line=None):
    """flwr's `_pull_and_store_message`, logging `RECEIVED_LINE` for the message it stores:
    when the poll brought it and when it was stored with its objects, each in seconds after
    its creation (deploy/message_times.py)."""
    log_line = log_line or _flwr_log_line(RECEIVED_LINE)

    def pull_and_time(**kwargs: Any) -> Any:
        receive = kwargs["receive"]
        marks: dict[str, Any] = {}

        def timed_receive() -> Any:
            got = receive()
            if got is not None:
                metadata = got[0].metadata
                marks.update(
                    type=metadata.message_type, created=float(metadata.created_at), at=wall()
                )
            return got

        run_id = pull(**{**kwargs, "receive": timed_receive})
        if marks and run_id is not None:  # stored (a failed pull returns None)
            created = marks["created"]
            log_line(marks["type"], marks["at"] - created, wall() - created)
        return run_id

    return pull_and_time


def timed_push(push, *, wall=time.time, log_line=None):
    """flwr's `_push_messages`, logging `SENT_LINE` for the reply it sends."""
    log_line = log_line or _flwr_log_line(SENT_LINE)

    def push_and_time(**kwargs: Any) -> Any:
        send = kwargs["send"]
        marks: dict[str, Any] = {}

        def timed_send(message, *args: Any) -> Any:
            marks["type"] = message.metadata.message_type
            marks["created"] = float(message.metadata.created_at)
            marks["found"] = wall()
            return send(message, *args)

        result = push(**{**kwargs, "send": timed_send})
        if marks:  # a reply went out (flwr sends one per call)
            log_line(marks["type"], marks["found"] - marks["created"], wall() - marks["found"])
        return result

    return push_and_time


def main() -> None:
    import importlib

    module = importlib.import_module(_MODULE)
    check_flwr(module)
    install(module, PromptClock(active_poll=active_poll_seconds()))
    from flwr.supernode.cli import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
