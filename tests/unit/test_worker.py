"""The warm worker's channel (client/worker.py): the ClientApp side never loses a message, the
worker side refuses what it cannot trust and keeps serving.

The worker here runs stand-in handlers in a thread (no torch, no site); the deployment test
(tests/integration/test_deployment.py) runs the real one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from client import worker
from client.errors import SiteError
from common.config import ConfigError


def _context(work: Path) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config={"site-dir": str(work.parent / "site"), "work-dir": str(work)},
        state=RecordDict({"kept": MetricRecord({"round": 1})}),
        run_config={"mode": "fedavg"},
    )


@pytest.fixture(autouse=True)
def _as_the_coordinator():
    """Messages built here carry a run, as a ServerApp's do (experiments/inprocess.py)."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID


def _message() -> Message:
    msg = Message(
        RecordDict({"config": ConfigRecord({"x": 1})}), dst_node_id=7, message_type="train"
    )
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def _echo(msg: Message, context: Context) -> Message:
    """A stand-in handler: answers with the node's site dir and leaves a record in the state."""
    context.state["left"] = MetricRecord({"by": 1})
    del context.state["kept"]
    seen = ConfigRecord({"site-dir": str(context.node_config["site-dir"])})
    return Message(RecordDict({"seen": seen}), reply_to=msg)


def _failing(msg: Message, context: Context) -> Message:
    raise ConfigError("site.toml: [share] level 'x' is not a level (fix: ...)")


class Running:
    """A worker with stand-in handlers, serving in a thread."""

    def __init__(self, work: Path, handler=_echo) -> None:
        self.worker = worker.Worker(site_dir=work.parent / "own-site", work_dir=work)
        self.worker.handlers = {"train": handler, "evaluate": handler}
        self.worker.publish = False
        self.server = self.worker.bind()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the test closed the socket
            self.worker.serve(self.server)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def work(tmp_path) -> Path:
    path = tmp_path / "a-work-folder-deep-enough-to-pass-the-unix-socket-path-limit" / ("w" * 60)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def running(work):
    served = Running(work)
    yield served
    served.close()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_reply_comes_from_the_worker_and_the_state_as_the_worker_left_it(running, work):
    context = _context(work)
    reply = worker.forward("train", _message(), context)
    assert reply is not None
    # The worker serves its own site, whatever path the ClientApp's node config names.
    assert reply.content["seen"]["site-dir"] == str((work.parent / "own-site").resolve())
    assert reply.metadata.reply_to_message_id == "m1"
    assert set(context.state.keys()) == {"left"}


def test_socket_is_this_users_only(running, work):
    folder = worker.socket_dir(work)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / worker.SOCKET_NAME).stat().st_mode) == 0o600


def test_no_worker_set_up_means_no_forwarding_and_no_log_line(work, caplog):
    assert worker.forward("train", _message(), _context(work)) is None
    assert _warnings(caplog) == []
    simulation = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    assert worker.forward("train", _message(), simulation) is None


def test_a_worker_that_is_not_running_costs_one_line_and_the_message_runs_cold(work, caplog):
    # A worker that bound its socket and died: the file stays, nobody listens.
    worker.Worker(site_dir=work, work_dir=work).bind().close()
    assert worker.forward("evaluate", _message(), _context(work)) is None
    lines = _warnings(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "did not answer this evaluate message" in lines[0] and "cold" in lines[0]


def _one_shot_server(work: Path, behaviour) -> threading.Thread:
    folder = worker.socket_dir(work)
    folder.mkdir(mode=0o700)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with worker._short_path(folder) as path:
        server.bind(path)
    server.listen(1)

    def serve() -> None:
        connection, _ = server.accept()
        behaviour(connection)
        connection.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def _dies_mid_reply(connection: socket.socket) -> None:
    worker.recv_frame(connection)
    header = json.dumps({"version": worker.WIRE_VERSION, "ok": True}).encode()
    connection.sendall(struct.pack(">I", len(header)) + header + struct.pack(">I", 1000) + b"x")


def _hangs(connection: socket.socket) -> None:
    time.sleep(2)


@pytest.mark.parametrize("behaviour", [_dies_mid_reply, _hangs], ids=["dies", "hangs"])
def test_a_worker_that_dies_or_hangs_mid_message_costs_one_line(
    work, caplog, monkeypatch, behaviour
):
    monkeypatch.setenv(worker.ENV_TIMEOUT, "0.5")
    thread = _one_shot_server(work, behaviour)
    context = _context(work)
    assert worker.forward("train", _message(), context) is None
    assert len(_warnings(caplog)) == 1
    assert set(context.state.keys()) == {"kept"}  # untouched: the cold path starts from it
    thread.join(5)


def test_a_failing_handler_leaves_as_its_fixed_code_and_is_not_run_twice(work):
    served = Running(work, handler=_failing)
    try:
        with pytest.raises(SiteError) as raised:
            worker.forward("train", _message(), _context(work))
    finally:
        served.close()
    assert raised.value.code == "E1"
    assert "level 'x'" not in str(raised.value)  # the detail stays in the site's log
    assert "level 'x'" in (work / "errors.log").read_text()


def test_switch_keeps_every_message_in_the_clientapp(running, work, monkeypatch):
    monkeypatch.setenv(worker.ENV_SWITCH, "0")
    assert worker.forward("train", _message(), _context(work)) is None


def _raw(work: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        with worker._short_path(worker.socket_dir(work)) as path:
            sock.connect(path)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        try:
            return sock.recv(100)
        except ConnectionResetError:  # closed with our bytes unread: nothing came back
            return b""


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00\x00",
        struct.pack(">I", 2**31) + b"x",  # a header announced at 2 GiB
        struct.pack(">I", 5) + b"hello",  # not JSON
        struct.pack(">I", 2) + b"[]",  # JSON, not a header
        (lambda h: struct.pack(">I", len(h)) + h)(b'{"version": 1, "handler": "shell"}'),
        (lambda h: struct.pack(">I", len(h)) + h + struct.pack(">I", 3) + b"\xff\xff\xff")(
            b'{"version": 1, "handler": "train"}'
        ),
    ],
    ids=["empty", "short", "huge", "not-json", "not-header", "handler", "not-proto"],
)
def test_garbage_is_refused_with_a_line_and_the_worker_keeps_serving(
    running, work, caplog, garbage
):
    assert _raw(work, garbage) == b""
    assert worker.forward("train", _message(), _context(work)) is not None
    assert any("refused a request" in line for line in _warnings(caplog))


PROBE = """
import resource, socket, struct, sys, threading
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (__LIMIT__, __LIMIT__))
from client import worker
work = Path(sys.argv[1])
w = worker.Worker(site_dir=work, work_dir=work)
w.handlers = {"train": lambda m, c: m, "evaluate": lambda m, c: m}
w.publish = False
server = w.bind()
def attack():
    for size in (worker.MAX_FRAME_BYTES + 1, 2**32 - 1):
        with socket.socket(socket.AF_UNIX) as sock:
            with worker._short_path(worker.socket_dir(work)) as path:
                sock.connect(path)
            head = b'{"version": 1, "handler": "train"}'
            frames = struct.pack(">I", len(head)) + head + struct.pack(">I", size)
            sock.sendall(frames + b"x" * 4096)
threading.Thread(target=attack).start()
w.serve(server, max_messages=2)
print("served")
"""


def test_announced_sizes_never_reach_memory(tmp_path):
    """Frames announced over the cap are refused before a byte is allocated for them."""
    limit = 1536 * 2**20  # well under the 4 GiB the second frame announces
    result = subprocess.run(
        [sys.executable, "-c", PROBE.replace("__LIMIT__", str(limit)), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "served"
    assert result.stderr.count("refused a request") == 2, result.stderr


def test_names_file_serves_the_guard_until_the_site_changes(tmp_path, monkeypatch):
    """The worker's names spare the ClientApp a read of the logs only while they are current."""
    from types import SimpleNamespace

    from experiments.generator import generate_sites

    generate_sites(out_dir=tmp_path / "sites", n_sites=1, n_days=3, seed=1, scale=0.01)
    site, work = tmp_path / "sites" / "site-00", tmp_path / "work"
    read = SimpleNamespace(names=frozenset({"evil.example.com", "example.com"}))
    monkeypatch.setattr("client.pipeline.load_site", lambda *args, **kwargs: read)
    context = _context(work)
    context.node_config["site-dir"] = str(site)
    assert worker.warm_names(context) is None  # no worker has written any
    worker.Worker(site_dir=site, work_dir=work).publish_names()
    names = worker.socket_dir(work) / worker.NAMES_FILE
    assert stat.S_IMODE(names.stat().st_mode) == 0o600
    assert worker.warm_names(context) == read.names
    log_file = sorted((site / "logs").rglob("*.*"))[0]
    with log_file.open("a", encoding="utf-8") as stream:
        stream.write("\n")  # the site's logs grew since the worker read them
    assert worker.warm_names(context) is None
