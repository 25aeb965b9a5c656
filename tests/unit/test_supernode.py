"""fedsec-supernode (deploy/supernode.py): flwr's SuperNode with its waits shortened in a run."""

from __future__ import annotations

import importlib
import importlib.util
import time
from types import SimpleNamespace

import pytest

from deploy import supernode
from deploy.supernode import PromptClock, check_flwr, install


class FakeTime:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _pull_objects(object_ids, pull_object_fn, *, initial_backoff=1.0, backoff_cap=10.0):
    return {"backoff": (initial_backoff, backoff_cap)}


def _node(messages: list):
    """A stand-in for flwr's module: its loop sleeps 3 s after a poll that brought nothing."""

    def pull_and_store(*, receive):  # flwr calls it with keywords only
        receive()
        return messages.pop(0)

    module = SimpleNamespace(
        time=time,
        _pull_and_store_message=pull_and_store,
        _push_messages=lambda **_: None,
        pull_objects=_pull_objects,
    )

    def loop(polls: int) -> None:
        for _ in range(polls):
            if module._pull_and_store_message(receive=lambda: None) is None:
                module.time.sleep(3)

    return module, loop


def test_an_idle_node_polls_as_flwr_does_and_a_node_in_a_run_within_half_a_second():
    fake = FakeTime()
    clock = PromptClock(clock=fake.clock, sleep=fake.sleep)
    module, loop = _node([None, None, 7, None, None])
    install(module, clock)
    loop(5)
    # Before any message: flwr's 3 s; after run 7's message: ACTIVE_POLL_S.
    assert fake.slept == [3, 3, supernode.ACTIVE_POLL_S, supernode.ACTIVE_POLL_S]
    # Objects not there yet are pulled again promptly (deploy/object_pulls.py).
    assert module.pull_objects([], None)["backoff"] == (0.05, 1.0)
    fake.now += supernode.ACTIVE_S  # a run long over: back to flwr's pace
    module._pull_and_store_message = lambda: None
    module.time.sleep(3)
    assert fake.slept[-1] == 3


def test_the_active_poll_comes_from_the_environment_and_a_bad_value_is_one_line():
    assert supernode.active_poll_seconds({}) == supernode.ACTIVE_POLL_S
    assert supernode.active_poll_seconds({supernode.ENV_ACTIVE_POLL: " 0.5 "}) == 0.5
    fake = FakeTime()
    clock = PromptClock(clock=fake.clock, sleep=fake.sleep, active_poll=0.5)
    module, loop = _node([7, None])
    install(module, clock)
    loop(2)
    assert fake.slept == [0.5]
    for bad in ("fast", "0", "4", "nan"):
        with pytest.raises(SystemExit) as refused:
            supernode.active_poll_seconds({supernode.ENV_ACTIVE_POLL: bad})
        (line,) = str(refused.value).splitlines()
        assert supernode.ENV_ACTIVE_POLL in line and "fix:" in line


def test_waits_for_the_local_clientapp_are_shortened_and_other_sleeps_kept():
    fake = FakeTime()
    clock = PromptClock(clock=fake.clock, sleep=fake.sleep)
    clock.sleep(0.5)
    clock.sleep(1.7)
    assert fake.slept == [supernode.PROMPT_LOCAL_WAIT_S, 1.7]
    assert clock.monotonic is time.monotonic  # everything else is the time module's


def test_the_patched_names_exist_in_the_installed_flwr():
    """If flwr renames them, the SuperNode must refuse to start, not quietly poll slowly."""
    module = importlib.import_module("flwr.supernode.start_client_internal")
    check_flwr(module)
    assert "time.sleep(3)" in importlib.util.find_spec(module.__name__).loader.get_source(
        module.__name__
    )
    renamed = SimpleNamespace(time=time)  # no _pull_and_store_message
    with pytest.raises(SystemExit, match="fedsec-supernode: checked against flwr"):
        check_flwr(renamed)
    no_push = SimpleNamespace(time=time, _pull_and_store_message=module._pull_and_store_message)
    with pytest.raises(SystemExit, match="_push_messages"):
        check_flwr(no_push)


def test_each_sent_reply_logs_when_the_node_had_it_and_how_long_its_upload_took():
    now = [100.0]
    lines = []

    def push(*, state, object_store, send, push_object):  # flwr's, as far as timing goes
        now[0] += 0.4  # the wait for the ClientApp's reply
        message = SimpleNamespace(metadata=SimpleNamespace(message_type="train", created_at=99.9))
        send(message, "tree", 0.1)
        now[0] += 0.25  # the reply's objects, one request each
        return "pushed"

    sent = []
    timed = supernode.timed_push(
        push, wall=lambda: now[0], log_line=lambda *args: lines.append(args)
    )
    result = timed(
        state=None, object_store=None, send=lambda *args: sent.append(args), push_object=None
    )
    assert result == "pushed" and len(sent) == 1  # flwr's own send, with its arguments
    ((kind, at_node, upload),) = lines
    assert kind == "train"
    assert at_node == pytest.approx(100.4 - 99.9) and upload == pytest.approx(0.25)
    assert supernode.SENT_LINE % lines[0]  # the format takes exactly these three


def test_a_push_that_sent_nothing_logs_nothing():
    lines = []
    timed = supernode.timed_push(lambda **_: None, log_line=lambda *args: lines.append(args))
    timed(state=None, object_store=None, send=None, push_object=None)
    assert lines == []
