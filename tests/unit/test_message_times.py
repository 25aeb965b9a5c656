"""Where a message's way out goes (deploy/message_times.py, deploy/supernode.timed_pull)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploy import message_times, supernode
from deploy.message_times import CLIENTAPP_LINE, ENV_STARTED, ClientAppTimes, process_started


def _message(kind: str = "train", created: float = 100.0) -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(message_type=kind, created_at=created))


def test_a_process_start_is_read_from_proc_to_the_tick(tmp_path: Path):
    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    # pid (comm with ") " inside) state, then fields 4..: starttime is field 22.
    fields = ["S"] + ["0"] * 18 + [str(5 * tick)] + ["0"] * 10
    stat.write_text("4242 (odd) name) " + " ".join(fields))
    uptime = tmp_path / "uptime"
    uptime.write_text("12.50 3.00\n")
    # Booted 12.5 s before "now" (1000.0), started 5 s after boot.
    assert process_started(stat, uptime, wall=lambda: 1000.0) == pytest.approx(992.5)
    assert process_started(tmp_path / "missing", uptime) is None
    stat.write_text("garbage")
    assert process_started(stat, uptime) is None


def test_a_new_process_knows_when_it_started():
    before = time.time()
    out = subprocess.run(
        [sys.executable, "-c", "from deploy.message_times import process_started as p; print(p())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    started = float(out)
    # The kernel's tick (10 ms) and uptime's 0.01 s: within a few hundredths of the truth.
    assert before - 0.05 <= started <= time.time()


class FakeRunClientApp(SimpleNamespace):
    """The names of flwr's run_clientapp module that ClientAppTimes wraps (and the unpacking
    between them), each moving a fake clock the way the real step would take time."""

    def __init__(self, now: list[float], message: SimpleNamespace) -> None:
        def pull_task_input(client):
            now[0] += 0.03
            return message, "context", "run", "fab"

        def install_from_fab(content, **_):  # not wrapped: the guard's may return early
            now[0] += 0.02
            return "folder"

        def get_load_client_app_fn(**_):
            def load(*_):
                now[0] += 0.2
                return "app"

            return load

        def push_message(client, reply, context):
            now[0] += 0.05
            return "pushed"

        super().__init__(
            pull_task_input=pull_task_input,
            install_from_fab=install_from_fab,
            get_load_client_app_fn=get_load_client_app_fn,
            push_message=push_message,
        )


def _run_like_flwr(module, now: list[float]) -> None:
    """run_clientapp's order of calls, by module attribute (as flwr's code looks them up)."""
    message, context, run, fab = module.pull_task_input("client")
    module.install_from_fab(b"fab", skip_prompt=True)
    load = module.get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
    load("id", "version", "hash")
    now[0] += 0.4  # the app's own work (the worker's)
    module.push_message("client", "reply", context)


def test_each_step_of_a_clientapp_is_logged_in_seconds_after_the_messages_creation():
    now = [100.5]
    lines = []
    times = ClientAppTimes(
        wall=lambda: now[0],
        env={ENV_STARTED: "100.3"},
        log_line=lambda *args: lines.append(args),
    )
    module = FakeRunClientApp(now, _message("evaluate", created=100.0))
    times.install(module)
    _run_like_flwr(module, now)
    ((template, kind, *marks),) = lines
    assert template == CLIENTAPP_LINE and kind == "evaluate"
    expected = [0.3, 0.5, 0.53, 0.55, 0.75, 1.15, 1.2]
    assert marks == pytest.approx(expected)
    text = template % (kind, *marks)
    assert text.startswith("evaluate message, seconds after its creation: ClientApp process")
    assert re.search(r"replied 1\.150, handed over 1\.200$", text)


def test_without_the_handing_processs_start_the_own_process_start_is_used(monkeypatch):
    monkeypatch.setattr(message_times, "process_started", lambda **_: 99.9)
    assert ClientAppTimes(env={}).started == 99.9
    assert ClientAppTimes(env={ENV_STARTED: "not a time"}).started == 99.9
    assert ClientAppTimes(env={ENV_STARTED: "100.25"}).started == 100.25


def test_a_message_that_never_reached_the_app_logs_nothing():
    now = [100.5]
    lines = []
    times = ClientAppTimes(wall=lambda: now[0], env={ENV_STARTED: "100.3"}, log_line=print)
    times.log_line = lambda *args: lines.append(args)
    module = FakeRunClientApp(now, _message())

    def refused(*_, **__):
        raise RuntimeError("refused by the guard")

    times.install(module)
    module.install_from_fab = refused  # the guard's, installed after the times
    module.pull_task_input("client")
    with pytest.raises(RuntimeError):
        module.install_from_fab(b"fab")
    # flwr pushes an error reply for a failed app: no "loaded" mark, so no line.
    module.push_message("client", "error reply", "context")
    assert lines == []


def test_the_node_logs_when_a_message_reached_it_and_when_its_objects_were_in():
    now = [100.2]
    lines = []

    def pull(*, state, receive, pull_object):  # flwr's _pull_and_store_message, timed
        got = receive()
        if got is None:
            return None
        now[0] += 0.15  # its objects, one request each
        return 7  # the run id

    timed = supernode.timed_pull(
        pull, wall=lambda: now[0], log_line=lambda *args: lines.append(args)
    )
    run = timed(state=None, receive=lambda: (_message(created=100.0), "tree"), pull_object=None)
    assert run == 7
    ((kind, reached, stored),) = lines
    assert kind == "train" and reached == pytest.approx(0.2) and stored == pytest.approx(0.35)
    assert message_times.RECEIVED_LINE % lines[0]
    # No message, or one whose objects never came (flwr returns None): no line.
    assert timed(state=None, receive=lambda: None, pull_object=None) is None

    def failing(*, state, receive, pull_object):
        receive()
        return None

    supernode.timed_pull(failing, log_line=lambda *args: lines.append(args))(
        state=None, receive=lambda: (_message(), "tree"), pull_object=None
    )
    assert len(lines) == 1


def test_the_wrapped_names_exist_in_the_installed_flwr():
    from flwr.supernode.runtime import run_clientapp

    for name in ("pull_task_input", "get_load_client_app_fn", "push_message"):
        assert callable(getattr(run_clientapp, name)), name


def test_a_line_that_cannot_be_written_never_fails_the_message():
    now = [100.5]

    def closed(*_):
        raise ValueError("I/O operation on closed file")

    times = ClientAppTimes(wall=lambda: now[0], env={ENV_STARTED: "100.3"}, log_line=closed)
    module = FakeRunClientApp(now, _message())
    times.install(module)
    _run_like_flwr(module, now)  # pushes, and the failed line raises nothing


def test_each_line_reads_back_through_the_pattern_made_from_its_template():
    from deploy.message_times import (
        CLIENTAPP_FIELDS,
        RECEIVED_FIELDS,
        RECEIVED_LINE,
        line_pattern,
    )
    from deploy.supernode import SENT_LINE

    for template, fields in (
        (RECEIVED_LINE, RECEIVED_FIELDS),
        (CLIENTAPP_LINE, CLIENTAPP_FIELDS),
        (SENT_LINE, ("at_node", "upload")),
    ):
        values = [round(-0.004 + 0.25 * index, 3) for index in range(len(fields))]
        line = "INFO :      " + template % ("evaluate", *values) + "\n"
        ((kind, *read),) = line_pattern(template).findall(line)
        assert kind == "evaluate" and [float(value) for value in read] == values
    assert line_pattern(SENT_LINE).findall(RECEIVED_LINE % ("train", 0.1, 0.2)) == []
