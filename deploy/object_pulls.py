"""Retry an object that is not uploaded yet after 0.05 s, not flwr 1.42's 1 s.

flwr 1.42 sends a message in two steps: the message itself, then each of its objects (one
request each). The receiver can see the message before the last object has landed; it then
pulls each missing object again after a backoff that starts at 1 s and doubles to 10 s
(`flwr.supercore.inflatable.inflatable_utils.pull_objects`, `PULL_INITIAL_BACKOFF`). A reply
uploads in ~0.5 s with three data holders on 2 cores (`deploy/bench_rounds.py`, the
SuperNodes' "sent in" lines), so a prompt receiver waited most of a second for the rest of
it. Here the first retry comes after 0.05 s, doubling to 1 s: an object still missing after
a few retries costs a few more small requests, never a second of idling.

`prompt_object_pulls(module)` points each of `module.pull_objects` and
`module.pull_and_inflate_object_from_tree` (the names a flwr module imported) at flwr's own
function with these two defaults; a caller that passes its own keeps them. Both matter:
the ClientApp pulls its message through `pull_and_inflate_object_from_tree`, which passes
flwr's 1 s and 10 s on to `pull_objects` itself, so new defaults of `pull_objects` alone never
reach it (measured: the ClientApp of a model-bearing message had it ~1 s after starting to
pull it, its node ~0.2 s after that start; deploy/message_times.py's lines).
The data holder's side uses it for the SuperNode (deploy/supernode.py) and for every
ClientApp (deploy/app_guard.py, on flwr's run_clientapp module); the ServerApp does the same
for its grid (server/polling.py).
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType

RETRY_S = 0.05
RETRY_CAP_S = 1.0
PULLS = ("pull_objects", "pull_and_inflate_object_from_tree")
"""flwr 1.42's functions that retry an object not there yet, each with its own defaults."""


def prompt_object_pulls(module: ModuleType) -> None:
    """Retry missing objects after RETRY_S, doubling to RETRY_CAP_S, in each of `PULLS` that
    `module` has (it must have one)."""
    names = [name for name in PULLS if hasattr(module, name)]
    if not names:
        raise RuntimeError(
            f"{module.__name__} has none of {', '.join(PULLS)} (fix: install flwr==1.42.0, or "
            "re-check deploy/object_pulls.py against the new flwr)"
        )
    for name in names:
        pull = getattr(module, name)
        if isinstance(pull, functools.partial):
            continue  # already done
        parameters = inspect.signature(pull).parameters
        if "initial_backoff" not in parameters or "backoff_cap" not in parameters:
            raise RuntimeError(
                f"{module.__name__}.{name} has no initial_backoff / backoff_cap (fix: install "
                "flwr==1.42.0, or re-check deploy/object_pulls.py against the new flwr)"
            )
        setattr(
            module,
            name,
            functools.partial(pull, initial_backoff=RETRY_S, backoff_cap=RETRY_CAP_S),
        )
