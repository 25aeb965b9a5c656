"""Child processes for tests and benchmarks: own session, bounded waits, killed by PID.

Every process is started in a new session with its output in a log file, and is killed by
the kernel if the process that started it dies (PR_SET_PDEATHSIG). `Processes.stop`
(run it in a `finally` or fixture teardown) kills each one with its whole tree: the
members of its process group and every descendant found through /proc, which includes
the SuperExec that flwr starts detached in a session of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if its starter dies without cleaning up."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _read_proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of a live process, or None."""
    raw = _read_proc(pid, "stat")
    if not raw:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def process_table() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, process group)} of every live process: one scan of /proc."""
    return {pid: info for pid in _all_pids() if (info := _stat(pid)) is not None}


def process_tree(root: int, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """`root`, its process group and all their descendants, parents first. A caller that
    walks several trees at once passes one `process_table()` (a sampler every 0.1 s would
    otherwise scan /proc once per tree)."""
    table = process_table() if table is None else table
    found = [root] if root in table else []
    found += [pid for pid, (_, group) in table.items() if group == root and pid != root]
    index = 0
    while index < len(found):
        parent = found[index]
        found += [pid for pid, (ppid, _) in table.items() if ppid == parent and pid not in found]
        index += 1
    return found


def pids_with_env(key: str, value: str) -> list[int]:
    """Processes whose environment holds KEY=VALUE (e.g. a test's own FLWR_HOME)."""
    needle = f"{key}={value}".encode()
    return [
        pid
        for pid in _all_pids()
        if pid != os.getpid() and needle in _read_proc(pid, "environ").split(b"\0")
    ]


def kill_pids(pids: Iterable[int], *, grace_seconds: float = 5.0) -> None:
    """SIGTERM the trees of `pids`, then SIGKILL whatever is still alive after the grace."""
    targets: list[int] = []
    for pid in pids:
        targets += [p for p in process_tree(pid) if p not in targets]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and any(_alive(pid) for pid in targets):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    info = _read_proc(pid, "stat")
    return bool(info) and info[info.rindex(b")") + 2 :][:1] != b"Z"


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    on_timeout: Callable[[], str] = lambda: "",
) -> float:
    """Poll until `check()` is true; returns the seconds it took, raises TimeoutError."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s\n{on_timeout()}")
        time.sleep(interval)
    return time.monotonic() - start


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return (
            f"--- {self.name} (pid {self.pid}, exit {self.popen.poll()}) ---\n"
            + self.log()[-chars:]
        )

    def wait_for_log(self, pattern: str, *, timeout: float) -> float:
        """Wait for a regex in the log; fails at once if the process exits first."""
        regex = re.compile(pattern)

        def seen() -> bool:
            if regex.search(self.log()):
                return True
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited before {pattern!r}\n{self.tail()}")
            return False

        return wait_until(
            seen, timeout=timeout, what=f"{self.name}: {pattern!r}", on_timeout=self.tail
        )

    def wait_exit(self, *, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class Processes:
    """The processes one test, fixture or benchmark started; `stop()` kills them all by PID."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(
        self, name: str, argv: list[str], *, env: Mapping[str, str], cwd: Path | None = None
    ) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, popen, log_path)
        self.started.append(proc)
        return proc

    def get(self, name: str) -> Proc:
        return next(proc for proc in self.started if proc.name == name)

    def stop(self) -> None:
        kill_pids([proc.pid for proc in reversed(self.started)])
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)

    def tails(self) -> str:
        return "\n".join(proc.tail() for proc in self.started)
