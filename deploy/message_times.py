"""Where a message's way out goes: one line per message from each of the data holder's steps.

The ServerApp measures each reply's round trip and splits it at the reply's creation
(server/polling.py): "out" is everything from the message's creation to the reply's, "back"
the rest. With warm workers the out leg is most of a round, yet the worker's own work is a
few tenths of a second of it. These lines say where the rest goes, every figure in seconds
after the message's creation on the ServerApp (one clock: the coordinator and the data
holders share a machine in `deploy/bench_rounds.py`; across machines the offsets carry the
clocks' difference, the differences between steps of one line do not):

- the SuperNode (`RECEIVED_LINE`, deploy/supernode.py): when its poll brought the message,
  and when the message and its objects were stored for the ClientApp;
- the ClientApp (`CLIENTAPP_LINE`, `ClientAppTimes` installed by deploy/app_guard.py): when
  its process was started (flwr's SuperExec asks the node for work every
  FLWR_SUPEREXEC_TASK_POLL_INTERVAL), when fedsec's guard ran in it (after the hand-over to
  the launcher, or Python's start-up and imports when cold), when it had pulled the message,
  unpacked and loaded the app, made the reply, and handed it to its node.

The lines hold a message type and times, nothing of the site's data; they go to the
SuperNode's own log (stderr), which stays at the site. `deploy/bench_rounds.py` reads them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ENV_STARTED = "FEDSEC_CLIENTAPP_STARTED"
"""Wall-clock time the `flwr-clientapp` process was started, passed by the handing process
to the launcher's child (deploy/launcher.py): the child itself was forked later."""
RECEIVED_LINE = "received a %s message %.3f s after its creation, stored with its objects at %.3f s"
CLIENTAPP_LINE = (
    "%s message, seconds after its creation: ClientApp process started %.3f, guard %.3f, "
    "pulled %.3f, unpacked %.3f, loaded %.3f, replied %.3f, handed over %.3f"
)
MARKS = ("pulled", "unpacked", "loaded", "replied", "handed")
RECEIVED_FIELDS = ("at_node", "stored")
"""The names of `RECEIVED_LINE`'s figures, in order (deploy/bench_rounds.py's keys)."""
CLIENTAPP_FIELDS = ("process", "guard", *MARKS)
"""The names of `CLIENTAPP_LINE`'s figures, in order."""


def line_pattern(template: str) -> re.Pattern:
    """The regular expression that reads back a line logged with `template`: each `%s` (a
    message type) and each `%.3f` (seconds) becomes a group."""
    parts = re.split(r"(%s|%\.3f)", template)
    return re.compile(
        "".join(
            r"(\w+)" if part == "%s" else r"(-?[0-9.]+)" if part == "%.3f" else re.escape(part)
            for part in parts
        )
    )


def process_started(
    stat: Path = Path("/proc/self/stat"),
    uptime: Path = Path("/proc/uptime"),
    *,
    wall: Callable[[], float] = time.time,
) -> float | None:
    """Wall-clock time this process was started (to the kernel's 10 ms tick), None off Linux.

    The kernel counts a process's start in ticks since boot; boot is now minus the uptime
    (0.01 s resolution, unlike /proc/stat's whole-second `btime`)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, `starttime`; fields[0] is field 3
        up = float(uptime.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return wall() - up + ticks / os.sysconf("SC_CLK_TCK")


def started_env() -> dict[str, str]:
    """`ENV_STARTED` for the launcher's child: this process's start, when known."""
    started = process_started()
    return {} if started is None else {ENV_STARTED: f"{started:.3f}"}


class ClientAppTimes:
    """Marks one ClientApp's steps on flwr's run_clientapp module and logs `CLIENTAPP_LINE`."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        env: dict[str, str] | None = None,
        log_line: Callable[..., None] | None = None,
    ) -> None:
        self.wall = wall
        given = (os.environ if env is None else env).get(ENV_STARTED, "")
        try:
            self.started = float(given)
        except ValueError:
            self.started = process_started(wall=wall)
        self.guard = wall()
        self.log_line = log_line or _stderr_line
        self.kind = ""
        self.created: float | None = None
        self.marks: dict[str, float] = {}

    def install(self, module: ModuleType) -> None:
        """Wrap `pull_task_input`, `get_load_client_app_fn` and `push_message` of `module`.
        Called before deploy/app_guard.install_guard, so "pulled" is flwr's pull alone;
        "unpacked" (the app's load begins) takes in the approval check and the unpacking or
        the check of the installed files (the guard's `install_from_fab`)."""
        pull, push = module.pull_task_input, module.push_message
        loader_factory = module.get_load_client_app_fn

        def pull_task_input(client: Any) -> Any:
            pulled = pull(client)
            metadata = pulled[0].metadata
            self.kind, self.created = metadata.message_type, float(metadata.created_at)
            self.marks["pulled"] = self.wall()
            return pulled

        def get_load_client_app_fn(*args: Any, **kwargs: Any) -> Any:
            load = loader_factory(*args, **kwargs)

            def timed_load(*load_args: Any, **load_kwargs: Any) -> Any:
                self.marks["unpacked"] = self.wall()  # checked, and unpacked if need be
                try:
                    return load(*load_args, **load_kwargs)
                finally:
                    self.marks["loaded"] = self.wall()

            return timed_load

        def push_message(client: Any, message: Any, context: Any) -> Any:
            self.marks["replied"] = self.wall()
            try:
                return push(client, message, context)
            finally:
                self.marks["handed"] = self.wall()
                self.report()

        module.pull_task_input = pull_task_input
        module.get_load_client_app_fn = get_load_client_app_fn
        module.push_message = push_message

    def report(self) -> None:
        """Log the line, once every mark is in (a refused or failed message has none)."""
        if self.created is None or self.started is None or set(MARKS) - set(self.marks):
            return
        offsets = [self.started, self.guard, *(self.marks[name] for name in MARKS)]
        # A closed stderr loses the line, never the message.
        with contextlib.suppress(OSError, ValueError):
            self.log_line(CLIENTAPP_LINE, self.kind, *(at - self.created for at in offsets))


def _stderr_line(template: str, *args: Any) -> None:
    print(f"fedsec-clientapp: {template % args}", file=sys.stderr, flush=True)
