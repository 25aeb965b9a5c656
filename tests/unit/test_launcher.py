"""The data holder's launcher (deploy/launcher.py): every message's ClientApp forked warm.

Real processes throughout: a `fedsec-launcher` on a socket in tmp_path, and `flwr-clientapp`
(fedsec-clientapp under that name, as on a data holder's PATH) handing it real flwr command
lines. Every process a test starts is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import launcher
from deploy.procs import kill_pids, wait_until

BIN = Path(sys.executable).parent
UNREACHABLE = ["--runtime-api-address", "127.0.0.1:1", "--insecure"]
"""A ClientApp that keeps retrying its SuperNode: a message that runs until it is stopped."""


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    """`flwr-clientapp` as a data holder's PATH has it: a link to fedsec-clientapp."""
    folder = tmp_path / "guard"
    folder.mkdir()
    (folder / "flwr-clientapp").symlink_to(BIN / "fedsec-clientapp")
    return folder / "flwr-clientapp"


class Running:
    def __init__(self, proc: subprocess.Popen, socket_path: Path, log: Path) -> None:
        self.proc, self.socket_path, self.log_path = proc, socket_path, log

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def children(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"message started: ClientApp pid (\d+)", self.log())]


@pytest.fixture
def running(tmp_path: Path):
    """A launcher serving tmp_path/work/launch/launcher.sock; its cwd holds a file `tok`."""
    home = tmp_path / "launcher-cwd"
    home.mkdir()
    (home / "tok").write_text("token-of-the-launchers-folder")
    socket_path = tmp_path / "work" / "launch" / "launcher.sock"
    log = tmp_path / "launcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "fedsec-launcher"), "--socket", str(socket_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    started = Running(proc, socket_path, log)
    try:
        wait_until(lambda: "ready" in started.log(), timeout=120, what="launcher ready")
        yield started
    finally:
        kill_pids([proc.pid, *started.children()], grace_seconds=2.0)


def _hand(shim: Path, sock: Path, *args: str, cwd: Path, timeout: float = 60):
    return subprocess.run(
        [str(shim), *args],
        env={**os.environ, launcher.ENV_SOCKET: str(sock)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_message_runs_in_a_child_with_the_callers_streams_exit_code_and_folder(
    running, shim, tmp_path
):
    caller = tmp_path / "caller"
    caller.mkdir()
    shown = _hand(shim, running.socket_path, "--help", cwd=caller)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: flwr-clientapp")  # the child's output, via our fd
    refused = _hand(shim, running.socket_path, "--no-such-flag", cwd=caller)
    assert refused.returncode == 2 and "flwr-clientapp: error:" in refused.stderr
    # A relative path resolves in the caller's folder, not the launcher's (which has `tok`).
    missing = _hand(shim, running.socket_path, *UNREACHABLE, "--token-file", "tok", cwd=caller)
    assert missing.returncode == 1 and "does not point to a file" in missing.stderr
    assert len(running.children()) == 3  # each ran in the launcher: none fell back cold
    assert "cold" not in shown.stderr + refused.stderr + missing.stderr
    assert running.log().count("message done") == 3


def test_the_template_never_imports_the_apps_own_code():
    """flwr's load_app reuses a module already in sys.modules: an app package imported by
    the template would run instead of the approved bundle's."""
    code = (
        "import sys; from deploy.launcher import Launcher, APP_PACKAGES; Launcher.preload(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(APP_PACKAGES)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "[]"
    tainted = "import common.weights; from deploy.launcher import Launcher; Launcher.preload()"
    refused = subprocess.run(
        [sys.executable, "-c", tainted], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0 and "approved app" in refused.stderr


def test_killing_the_caller_kills_its_message(running, shim, tmp_path):
    """The child's life is the handing process's: a SuperNode that stops leaves no orphan."""
    caller = subprocess.Popen(
        [str(shim), *UNREACHABLE, "--token", "t", "--parent-pid", str(os.getpid())],
        env={**os.environ, launcher.ENV_SOCKET: str(running.socket_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: running.children(), timeout=30, what="the child")
        (child,) = running.children()
        time.sleep(0.5)
        assert Path(f"/proc/{child}").exists()  # still retrying its SuperNode
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(timeout=10)
        wait_until(lambda: "is gone: killed it" in running.log(), timeout=10, what="the kill")
        wait_until(lambda: not Path(f"/proc/{child}").exists(), timeout=10, what="child gone")
    finally:
        kill_pids([caller.pid], grace_seconds=0.0)


def test_a_launcher_that_dies_leaves_its_running_message_to_finish(running, shim, tmp_path):
    """A crash of the launcher loses no message: its children do not depend on it."""
    stderr = tmp_path / "stderr"  # a file: the child writes to it too, and keeps running
    with stderr.open("w") as err:
        caller = subprocess.Popen(
            [str(shim), *UNREACHABLE, "--token", "t"],
            env={**os.environ, launcher.ENV_SOCKET: str(running.socket_path)},
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=tmp_path,
        )
    try:
        wait_until(lambda: running.children(), timeout=30, what="the child")
        (child,) = running.children()
        os.kill(running.proc.pid, signal.SIGKILL)
        assert caller.wait(timeout=30) == 1
        assert "the child finishes it on its own" in stderr.read_text()
        assert Path(f"/proc/{child}").exists()  # still at its message
    finally:
        kill_pids([caller.pid], grace_seconds=0.0)


def test_garbage_on_the_socket_is_refused_and_the_launcher_keeps_serving(running, shim, tmp_path):
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(15)
        sock.connect(str(running.socket_path))
        return sock

    def answer(sock: socket.socket) -> dict:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return json.loads(data) if data else {}

    request = json.dumps({"version": 1, "argv": ["flwr-clientapp"], "env": {}, "cwd": "/"})
    cases = {
        "no descriptors": (struct.pack(">I", len(request)), None, request.encode()),
        "oversized": (struct.pack(">I", launcher.MAX_REQUEST_BYTES + 1), [0, 1, 2], b""),
        "not JSON": (struct.pack(">I", 5), [0, 1, 2], b"{{{{{"),
        "another program": (
            None,
            [0, 1, 2],
            json.dumps({"version": 1, "argv": ["/bin/sh", "-c", "id"], "env": {}, "cwd": "/"}),
        ),
        "relative folder": (
            None,
            [0, 1, 2],
            json.dumps({"version": 1, "argv": ["flwr-clientapp"], "env": {}, "cwd": "x"}),
        ),
    }
    for name, (head, fds, body) in cases.items():
        body = body.encode() if isinstance(body, str) else body
        head = head if head is not None else struct.pack(">I", len(body))
        with connect() as sock:
            if fds is None:
                sock.sendall(head)
            else:
                socket.send_fds(sock, [head], fds)
            # The launcher may refuse on the head alone (no descriptors) and close first.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(body)
            reply = answer(sock)
        assert "error" in reply and "pid" not in reply, name
    with connect() as sock:  # a request cut short
        sock.sendall(b"\x00")
    wait_until(
        lambda: running.log().count("refused a request") == len(cases) + 1,
        timeout=15,
        what="every bad request refused",
    )
    assert running.children() == []  # nothing was started
    served = _hand(shim, running.socket_path, "--help", cwd=tmp_path)
    assert served.returncode == 0 and len(running.children()) == 1


def test_without_a_launcher_the_message_runs_cold_after_one_line(shim, tmp_path):
    absent = tmp_path / "no-launcher" / "launcher.sock"
    absent.parent.mkdir()
    absent.write_text("")  # a stale path that is not a socket
    # A stale path that is no socket, and one that is not there (launcher never started).
    for path in (absent, tmp_path / "never-started" / "launcher.sock"):
        cold = _hand(shim, path, "--help", cwd=tmp_path)
        assert cold.returncode == 0 and cold.stdout.startswith("usage: flwr-clientapp")
        said = [line for line in cold.stderr.splitlines() if "launcher" in line]
        assert len(said) == 1 and "runs cold" in said[0], cold.stderr
    unset = subprocess.run(
        [str(shim), "--help"],
        env={k: v for k, v in os.environ.items() if k != launcher.ENV_SOCKET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unset.returncode == 0 and "launcher" not in unset.stderr  # none set up: silent


def test_the_socket_is_the_data_holders_alone(running):
    assert running.socket_path.stat().st_mode & 0o777 == 0o600
    assert running.socket_path.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_hand_over_work(running):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # only syscalls here, then out
        outcome = b"connected"
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(running.socket_path))
        except OSError:
            outcome = b"refused"
        os.write(write, outcome)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 64) == b"refused"
    os.close(read)
    assert running.children() == []


def test_the_child_is_tied_to_its_caller_not_to_the_supernodes_pid():
    argv = ["flwr-clientapp", "--token", "t", "--parent-pid", "41", "--parent-pid=7", "--x"]
    assert launcher.without_parent_pid(argv) == ["flwr-clientapp", "--token", "t", "--x"]
