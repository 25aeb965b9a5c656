"""`fedsec-launcher`: every message's ClientApp process started warm, from a forked template.

flwr 1.42's SuperExec starts a fresh `flwr-clientapp` process for every message. Before it does
any work, that process pays Python's start-up and the imports of flwr, torch, numpy, pyarrow
and the rest: about 2-4 CPU seconds a message, most of a small site's round.

The launcher is a long-running process of the data holder that has imported all of that once
(`PRELOAD`) and then waits. For each message, the data holder's `flwr-clientapp` (which is
`fedsec-clientapp`, `clientapp_main` below) connects to the launcher's Unix socket and hands
over its command line, its environment, its working folder and its standard input, output and
error (the file descriptors themselves, so that logs go where they always went). The launcher
forks: the child is the message's ClientApp process, with flwr and torch already imported,
and it runs exactly what the cold process would have run: `deploy.app_guard.main`, which
checks the app against the data holder's approval file and then runs flwr's `run_clientapp`.
The handing process waits and exits with the child's exit code, so flwr's SuperExec sees the
same process lifetime as before.

What keeps it honest:
- The launcher never imports the app's own packages (`APP_PACKAGES`): flwr loads the app
  from the approved bundle (FAB) in each child, as it would cold. flwr's `load_app` takes a
  module already in `sys.modules` as is, so a template that had imported `client.app` would
  run that copy instead of the approved one; `preload` refuses to go on if any is loaded.
- One child per message, each its own process: nothing one message's app does stays for the
  next (the template does not run app code; its children exit).
- The socket is 0600 in a 0700 folder and the launcher checks its peer's user id: only the
  data holder's own user hands over work, as it could start `flwr-clientapp` itself.
- If the handing process dies (the SuperNode stopped, a kill), its connection closes and the
  launcher kills the child's process group: a child never outlives the process flwr started.
  If the launcher itself dies, its running children finish their messages on their own.
- If the launcher is not running or refuses, `clientapp_main` logs one line and runs the
  message cold in its own process: a launcher down costs seconds, never a round.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from deploy.message_times import started_env

ENV_SOCKET = "FEDSEC_LAUNCHER"
"""Path of the launcher's socket, set in the SuperNode's environment (docker-compose.yml)."""
PROGRAM = "fedsec-launcher"
CLIENTAPP = "flwr-clientapp"
WIRE_VERSION = 1
MAX_REQUEST_BYTES = 1 << 20
"""A request is a command line, an environment and a path: a few KiB; more is refused."""
CONNECT_TIMEOUT_S = 5.0
START_TIMEOUT_S = 20.0
"""How long `clientapp_main` waits for the launcher to report the child's pid."""
READ_TIMEOUT_S = 10.0
PYCACHE = "pycache"
"""The children's bytecode cache, beside the socket (`_run_child`)."""
APP_PACKAGES = ("client", "common", "server", "experiments", "fedsec")
"""The app's own packages (the FAB's): never imported by the template (see the docstring)."""
PRELOAD = (
    "numpy",
    "torch",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.csv",
    "pyarrow.json",
    "pyarrow.parquet",
    "httpx",
    "httpcore",
    "pydantic",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "scipy.stats",
    "sklearn.metrics",
    "publicsuffixlist",
    "flwr.app",
    "flwr.clientapp",
    "flwr.supernode.runtime.run_clientapp",
    "deploy.app_guard",
)
"""What a ClientApp process imports that is not the app's own code: flwr, torch and the
libraries the app uses. Anything missing here is still imported by the child, just cold."""

_LENGTH = struct.Struct(">I")


class LaunchError(ValueError):
    """A request on the launcher's socket is not what the protocol says."""


def _line(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {PROGRAM} {text}", flush=True)


@contextlib.contextmanager
def _short_path(path: Path):
    """The socket's path through /proc/self/fd: a Unix socket path is capped at 107 bytes,
    and a work folder can sit deeper than that."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# ----------------------------------------------------------- the handing side (per message)


def without_parent_pid(argv: list[str]) -> list[str]:
    """argv minus `--parent-pid N`: the child's life is tied to the handing process instead
    (the SuperExec's pid may not even exist in the launcher's pid namespace)."""
    out, skip = [], False
    for part in argv:
        if skip:
            skip = False
        elif part == "--parent-pid":
            skip = True
        elif not part.startswith("--parent-pid="):
            out.append(part)
    return out


def _read_reply(sock: socket.socket, buffer: bytearray) -> dict | None:
    """The launcher's next JSON line, or None if the connection closed first."""
    while b"\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buffer.extend(chunk)
        if len(buffer) > 65536:
            raise LaunchError("reply line over 64 KiB")
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def hand_over(socket_path: Path, argv: list[str]) -> int | None:
    """Run this message's ClientApp in a child of the launcher; its exit code, or None when
    the launcher did not start one (the caller then runs the message itself, cold)."""
    request = json.dumps(
        {
            "version": WIRE_VERSION,
            "argv": without_parent_pid(argv),
            "env": {**os.environ, **started_env()},
            "cwd": os.getcwd(),
        }
    ).encode()
    buffer = bytearray()
    started = time.monotonic()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        with _short_path(socket_path) as path:
            sock.connect(path)
        sock.settimeout(START_TIMEOUT_S)
        socket.send_fds(sock, [_LENGTH.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
        first = _read_reply(sock, buffer)
        if first is None or "pid" not in first:
            reason = (first or {}).get("error", "closed the connection")
            raise LaunchError(str(reason)[:200])
    except (OSError, LaunchError, ValueError) as error:
        sock.close()
        detail = error if isinstance(error, LaunchError) else type(error).__name__
        print(
            f"fedsec-clientapp: the launcher at {socket_path} did not start this message "
            f"({detail}, {time.monotonic() - started:.1f}s): it runs cold, in this process",
            file=sys.stderr,
            flush=True,
        )
        return None
    # From here the child runs: wait for its end however long the message takes.
    sock.settimeout(None)
    try:
        last = _read_reply(sock, buffer)
    except (OSError, LaunchError, ValueError):
        last = None
    finally:
        sock.close()
    if last is None or "exit" not in last:
        print(
            f"fedsec-clientapp: the launcher stopped while its child (pid {first['pid']}) ran "
            "this message; the child finishes it on its own",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return int(last["exit"])


def clientapp_main() -> None:
    """`fedsec-clientapp` (also `flwr-clientapp` on a data holder's PATH): hand the message to
    the launcher when one is set up, else check and run it here (deploy/app_guard.py)."""
    path = os.environ.get(ENV_SOCKET)
    if path and Path(sys.argv[0]).name == CLIENTAPP:
        code = hand_over(Path(path), sys.argv)
        if code is not None:
            raise SystemExit(code)
    from deploy.app_guard import main

    main()


# ------------------------------------------------------------------------ the launcher


def _peer_uid(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise LaunchError("request cut short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def check_request(request: object) -> tuple[list[str], dict[str, str], str]:
    """(argv, environment, working folder) of a well-formed request, else LaunchError."""
    if not isinstance(request, dict) or request.get("version") != WIRE_VERSION:
        raise LaunchError(f"not a version {WIRE_VERSION} request")
    argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise LaunchError("argv is not a list of strings")
    if Path(argv[0]).name != CLIENTAPP:
        raise LaunchError(f"only {CLIENTAPP} is started here, not {Path(argv[0]).name[:40]!r}")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise LaunchError("env is not a map of strings")
    if not (isinstance(cwd, str) and os.path.isabs(cwd)):
        raise LaunchError("cwd is not an absolute path")
    return argv, {str(k): v for k, v in env.items()}, cwd


def read_request(sock: socket.socket) -> tuple[list[str], dict[str, str], str, list[int]]:
    """One request: its three standard descriptors come with the length prefix."""
    head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, 8)
    try:
        if len(head) < _LENGTH.size:
            head += _recv_exact(sock, _LENGTH.size - len(head))
        (size,) = _LENGTH.unpack(head)
        if size > MAX_REQUEST_BYTES:
            raise LaunchError(f"request of {size} bytes is over the {MAX_REQUEST_BYTES} cap")
        if len(fds) != 3:
            raise LaunchError(f"{len(fds)} descriptors sent, 3 expected (stdin, stdout, stderr)")
        try:
            request = json.loads(_recv_exact(sock, size))
        except ValueError as error:
            raise LaunchError("request is not JSON") from error
        return (*check_request(request), fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _run_child(
    argv: list[str], env: dict[str, str], cwd: str, fds: list[int], *, pycache: Path
) -> int:
    """In the forked child: become the message's ClientApp process and run it."""
    # Bytecode of the app (and of anything first imported here) goes to the launcher's own
    # cache, so only the first message of an app version compiles its source (~0.2 CPU s a
    # message otherwise: images set PYTHONDONTWRITEBYTECODE, and flwr unpacks the app where
    # no bytecode was ever written). Python checks each file against its source's size and
    # time, and the folder is inside the 0700 one that holds the socket.
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(pycache)
    os.setsid()  # its own process group: the launcher kills the whole group if need be
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv)
    from deploy.app_guard import main

    try:
        main()
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


class Launcher:
    """The template process: preloads, then forks one child per request."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.pycache = self.socket_path.parent / PYCACHE
        self.children: dict[int, tuple[socket.socket, float]] = {}
        self.selector = selectors.DefaultSelector()
        self.server: socket.socket | None = None
        self.wakeup_r, self.wakeup_w = -1, -1

    @staticmethod
    def preload() -> tuple[float, list[str]]:
        """Import PRELOAD; (seconds, the modules that could not be imported)."""
        # No BLAS thread pool to carry over a fork: the children's numeric work is small (the
        # warm worker trains), and torch keeps its own threads.
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        started, missing = time.monotonic(), []
        for module in PRELOAD:
            try:
                __import__(module)
            except ImportError:
                missing.append(module)
        try:  # flwr's own flwr-clientapp entry point and what it imports (SQLAlchemy, ...)
            from deploy.app_guard import flwr_clientapp_entry

            flwr_clientapp_entry()
        except Exception:  # noqa: BLE001 - each child's guard reports it, with the fix
            missing.append("flwr-clientapp entry point")
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(APP_PACKAGES))
        if loaded:
            raise RuntimeError(
                f"the template imported the app's own packages {loaded}: its children would "
                "run those copies instead of the approved app (fix: keep them out of PRELOAD)"
            )
        return time.monotonic() - started, missing

    def bind(self) -> None:
        """The listening socket, 0600 in a 0700 folder; a stale one from a crash is replaced."""
        directory = self.socket_path.parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _short_path(self.socket_path) as path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            old = os.umask(0o177)
            try:
                server.bind(path)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        server.listen(16)
        server.setblocking(False)
        self.server = server
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_w, False)
        os.set_blocking(self.wakeup_r, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd carries it
        self.selector.register(server, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "reap")

    def serve(self) -> None:
        """Until SIGTERM: requests, children's ends and callers that went away, as they come."""
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "reap":
                    self._reap()
                else:
                    self._peer_gone(key.data)

    def _accept(self) -> None:
        assert self.server is not None
        try:
            connection, _ = self.server.accept()
        except BlockingIOError:
            return
        connection.setblocking(True)
        if _peer_uid(connection) != os.getuid():
            _line("refused a connection from another user")
            connection.close()
            return
        connection.settimeout(READ_TIMEOUT_S)
        try:
            argv, env, cwd, fds = read_request(connection)
        except (OSError, LaunchError) as error:
            _line(f"refused a request: {error}")
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps({"error": str(error)}).encode() + b"\n")
            connection.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: nothing of the launcher's own survives into the app
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._drop_launcher_state(connection)
                code = _run_child(argv, env, cwd, fds, pycache=self.pycache)
            except BaseException:  # noqa: BLE001 - the child must never return into the loop
                import traceback

                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        for fd in fds:
            os.close(fd)
        self.children[pid] = (connection, time.monotonic())
        try:
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            self._kill(pid)
        connection.setblocking(False)
        self.selector.register(connection, selectors.EVENT_READ, pid)
        _line(f"message started: ClientApp pid {pid}")

    def _drop_launcher_state(self, connection: socket.socket) -> None:
        """In the child: close the launcher's sockets, pipe and selector. Detached first, so
        that no socket object closes a reused descriptor number later, when collected."""
        sockets = [connection, *(sock for sock, _ in self.children.values())]
        if self.server is not None:
            sockets.append(self.server)
        for sock in sockets:
            with contextlib.suppress(OSError):
                os.close(sock.detach())
        self.children.clear()
        self.selector.close()
        for fd in (self.wakeup_r, self.wakeup_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def _peer_gone(self, pid: int) -> None:
        """The handing process closed its end before its child ended: end the child."""
        connection, _ = self.children[pid]
        try:
            data = connection.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # the protocol has nothing for the peer to send; ignore it
        self.selector.unregister(connection)
        self._kill(pid)
        _line(f"the process that handed over ClientApp pid {pid} is gone: killed it")

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the wake-up bytes; waitpid says who ended
            os.read(self.wakeup_r, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(status)
            connection, started = self.children.pop(pid, (None, time.monotonic()))
            seconds = time.monotonic() - started
            _line(f"message done: ClientApp pid {pid} exit {code} in {seconds:.1f}s")
            if connection is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(connection)
            with contextlib.suppress(OSError):
                connection.setblocking(True)
                connection.sendall(json.dumps({"exit": code}).encode() + b"\n")
            connection.close()

    def close(self) -> None:
        for pid in list(self.children):
            self._kill(pid)
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--socket", type=Path, required=True, help=f"its socket (the SuperNode's {ENV_SOCKET})"
    )
    args = parser.parse_args(argv)
    launcher = Launcher(args.socket)

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    seconds, missing = launcher.preload()
    if missing:
        _line(f"not preloaded (children import them cold): {', '.join(missing)}")
    launcher.bind()
    _line(f"ready (pid {os.getpid()}) in {seconds:.1f}s, socket {args.socket}")
    try:
        launcher.serve()
    finally:
        launcher.close()
        _line(f"stopped (pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
