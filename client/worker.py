"""A warm worker per data holder: torch imported, site read and model code loaded, once.

flwr 1.42 starts a fresh `flwr-clientapp` process for every message, and each one would import
torch and read the site's logs again (seconds per message). The per-message ClientApp stays
light instead: its train and evaluate handlers hand the message and the node's context to this
long-running worker on the same node and return its reply. Everything that guards what leaves
the site (error guard, reply guard, SecAgg+ masking) still runs in the ClientApp process, on
the reply the worker returns; the worker only runs the same handler code, warm.

The channel is a Unix domain socket, WORK/warm/worker.sock: mode 0600 in a 0700 folder, so
only this node's user reaches it, and the worker also checks its peer's user id. Each request
and reply is three length-prefixed frames (header JSON, flwr Message protobuf, flwr Context
protobuf), each capped at MAX_FRAME_BYTES. If the worker is not running, dies mid-message or
times out, `forward` logs one line and returns None: the ClientApp then does the work itself,
cold, so the round still gets its reply. Without a WORK/warm folder (no worker was ever set up,
or simulation) nothing is forwarded and nothing is logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flwr.app import Context, Message

log = logging.getLogger("fedsec.client")

WIRE_VERSION = 1
MAX_FRAME_BYTES = 64 * 2**20
"""Largest frame either side accepts: a model update is ~0.2 MiB, a context a few KiB."""
MAX_HEADER_BYTES = 4096
SOCKET_DIR = "warm"
SOCKET_NAME = "worker.sock"
NAMES_FILE = "names.txt"
"""Beside the socket: every name the site read, for the ClientApp's reply guard, with the
fingerprint of the files they came from (first line). It spares each message's ClientApp a
read of the site's logs; a stale or missing file means it reads them itself."""
HANDLERS = ("train", "evaluate")
ENV_SWITCH = "FEDSEC_WARM"
"""Set to 0 to keep every message in the ClientApp process even where a worker runs."""
ENV_TIMEOUT = "FEDSEC_WARM_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
"""How long a ClientApp waits for the worker's reply before doing the work itself."""
READ_TIMEOUT_S = 30.0
"""How long the worker waits for a whole request once a ClientApp has connected."""
RESTART_DELAY_S = 1.0

_LENGTH = struct.Struct(">I")
_serving = False  # True in the worker process: its handlers must not forward to themselves


class WireError(ValueError):
    """A frame on the worker's socket was cut short, too large or not what the protocol says."""


# ---------------------------------------------------------------------------- framing


def send_frames(sock: socket.socket, frames: list[bytes]) -> None:
    """Each frame as a 4-byte big-endian length and its bytes."""
    for frame in frames:
        if len(frame) > MAX_FRAME_BYTES:
            raise WireError(f"frame of {len(frame)} bytes is over the {MAX_FRAME_BYTES} cap")
        sock.sendall(_LENGTH.pack(len(frame)) + frame)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise WireError(f"connection closed with {left} of {size} bytes still to come")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, *, limit: int = MAX_FRAME_BYTES) -> bytes:
    """One frame; its length is checked against `limit` before anything is allocated."""
    (size,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size))
    if size > limit:
        raise WireError(f"frame of {size} bytes announced, over the {limit} cap")
    return _recv_exact(sock, size)


def _header(sock: socket.socket) -> dict:
    try:
        header = json.loads(recv_frame(sock, limit=MAX_HEADER_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"header is not JSON ({type(error).__name__})") from None
    if not isinstance(header, dict) or header.get("version") != WIRE_VERSION:
        raise WireError(f"header is not a version-{WIRE_VERSION} object")
    return header


def encode(message: Message, context: Context) -> tuple[bytes, bytes]:
    from flwr.common.serde import context_to_proto, message_to_proto

    return (
        message_to_proto(message).SerializeToString(),
        context_to_proto(context).SerializeToString(),
    )


def decode(message_bytes: bytes, context_bytes: bytes) -> tuple[Message, Context]:
    """Message and context from their protobufs; WireError for anything that does not parse."""
    from flwr.common.serde import context_from_proto, message_from_proto
    from flwr.proto.message_pb2 import Context as ProtoContext  # pylint: disable=E0611
    from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611

    try:
        message_proto, context_proto = ProtoMessage(), ProtoContext()
        message_proto.ParseFromString(message_bytes)
        context_proto.ParseFromString(context_bytes)
        return message_from_proto(message_proto), context_from_proto(context_proto)
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad frame
        raise WireError(f"message or context does not parse ({type(error).__name__})") from None


# -------------------------------------------------------------------------- both sides


def socket_dir(work_dir: Path) -> Path:
    return Path(work_dir) / SOCKET_DIR


@contextlib.contextmanager
def _short_path(directory: Path) -> Iterator[str]:
    """The socket's path through /proc/self/fd: a Unix socket path is capped at 107 bytes,
    and a work folder can sit deeper than that."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


# ------------------------------------------------------------------ ClientApp side


def _timeout() -> float:
    try:
        return float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _exchange(directory: Path, frames: list[bytes], *, timeout: float) -> tuple[dict, list[bytes]]:
    """(reply header, message and context frames: none when the handler failed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, _short_path(directory) as path:
        sock.settimeout(timeout)
        sock.connect(path)
        send_frames(sock, frames)
        sock.shutdown(socket.SHUT_WR)
        header = _header(sock)
        if not header.get("ok"):
            return header, []
        return header, [recv_frame(sock), recv_frame(sock)]


def forward(handler: str, msg: Message, context: Context) -> Message | None:
    """The worker's reply to `msg` (the context updated as the worker left it), or None: no
    worker set up here, or it did not answer (one line logged), and the caller does the work."""
    work = context.node_config.get("work-dir")
    if _serving or os.environ.get(ENV_SWITCH) == "0" or not work:
        return None
    directory = socket_dir(Path(str(work)))
    if not directory.is_dir():
        return None
    header = {"version": WIRE_VERSION, "handler": handler}
    started = time.monotonic()
    try:
        answer, frames = _exchange(
            directory, [json.dumps(header).encode(), *encode(msg, context)], timeout=_timeout()
        )
        if not answer.get("ok"):
            _raise_site_error(str(answer.get("code", "E9")))
        reply, returned = decode(*frames)
    except (OSError, WireError) as error:
        log.warning(
            "fedsec warm worker did not answer this %s message (%.1fs, %s): "
            "it runs in the ClientApp process, cold",
            handler,
            time.monotonic() - started,
            type(error).__name__,
        )
        return None
    _replace_state(context, returned)
    return reply


def _raise_site_error(code: str) -> None:
    """The worker's handler failed: the same fixed code, its detail is in WORK/errors.log."""
    from client.errors import SiteError
    from common.protocol import SITE_ERRORS

    raise SiteError(code if code in SITE_ERRORS else "E9")


def _replace_state(context: Context, returned: Context) -> None:
    """The node's state as the worker left it (e.g. the figures kept for SecAgg+)."""
    for key in list(context.state.keys()):
        del context.state[key]
    for key, record in returned.state.items():
        context.state[key] = record


def site_fingerprint(site_dir: Path) -> list:
    """(path within the site, size, mtime) of its config, logs and intel: equal on both sides
    of the socket whatever folder each mounts the site at."""
    from client.pipeline import _fingerprint

    site_dir = Path(site_dir).resolve()
    found = []
    for path, size, mtime in _fingerprint(site_dir):
        try:
            inside = str(Path(path).relative_to(site_dir))
        except ValueError:  # a file outside the site folder (an absolute intel path)
            inside = path
        found.append([inside, size, mtime])
    return found


def warm_names(context: Context) -> frozenset[str] | None:
    """The names the worker read for this node's site, or None: no worker set up, no file yet,
    or the site's files changed since (then the caller reads the site itself)."""
    work, site = context.node_config.get("work-dir"), context.node_config.get("site-dir")
    if os.environ.get(ENV_SWITCH) == "0" or not work or not site:
        return None
    path = socket_dir(Path(str(work))) / NAMES_FILE
    try:
        with path.open(encoding="utf-8") as stream:
            stamp = json.loads(stream.readline())
            if stamp != site_fingerprint(Path(str(site))) or not stamp:
                return None
            return frozenset(line.rstrip("\n") for line in stream)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------- worker side


def _handlers() -> dict[str, Callable[[Message, Context], Message]]:
    """The ClientApp's own handlers (client/app.py), run here where torch is already loaded."""
    from client import app

    return {"train": app._fit, "evaluate": app.evaluate}


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, as the kernel saw it connect."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", raw)
    return pid, uid


class Worker:
    """Serves one site: one message at a time, one log line per event."""

    def __init__(self, *, site_dir: Path, work_dir: Path) -> None:
        self.site_dir = Path(site_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.handlers: dict[str, Callable[[Message, Context], Message]] = {}
        self.published: object | None = None
        self.publish = True  # False: stand-in handlers without a site (tests)

    def prepare(self) -> float:
        """Import torch and the handlers, read the site; the seconds it took."""
        global _serving
        _serving = True
        started = time.monotonic()
        import torch

        from client.pipeline import load_site

        torch.set_num_threads(1)
        self.handlers = _handlers()
        site = load_site(self.site_dir, work_dir=self.work_dir)
        from client.local import SPEC
        from common.model import array_shapes

        array_shapes(SPEC)  # the model's layout (a meta model, ~2 s the first time)
        if site.data is not None:  # the model's inputs too (else the first message encodes)
            site.encoded(SPEC)
        return time.monotonic() - started

    def publish_names(self) -> None:
        """Write the site's names for the ClientApp's guard, when the site was (re)read."""
        from client.pipeline import load_site

        site = load_site(self.site_dir, work_dir=self.work_dir)
        if site is self.published:
            return
        directory = socket_dir(self.work_dir)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        stamp = json.dumps(site_fingerprint(self.site_dir))
        temporary = directory / f".{NAMES_FILE}.{os.getpid()}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(stamp + "\n")
            stream.writelines(name + "\n" for name in sorted(site.names))
        os.replace(temporary, directory / NAMES_FILE)
        self.published = site

    def bind(self) -> socket.socket:
        """The listening socket, 0600 in a 0700 folder; a stale one from a crash is replaced."""
        directory = socket_dir(self.work_dir)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _short_path(directory) as path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            old = os.umask(0o177)
            try:
                server.bind(path)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        server.listen(4)
        return server

    def serve(self, server: socket.socket, *, max_messages: int | None = None) -> None:
        handled = 0
        while max_messages is None or handled < max_messages:
            connection, _ = server.accept()
            with connection:
                self.handle(connection)
            handled += 1

    def handle(self, connection: socket.socket) -> None:
        """One request: refused with a log line if it is not from this user or not well formed."""
        _, uid = _peer(connection)
        if uid != os.getuid():
            log.warning("refused a connection from another user")
            return
        connection.settimeout(READ_TIMEOUT_S)
        try:
            header = _header(connection)
            handler = header.get("handler")
            if handler not in HANDLERS:
                raise WireError(f"unknown handler {str(handler)[:40]!r}")
            msg, context = decode(recv_frame(connection), recv_frame(connection))
        except (OSError, WireError) as error:
            log.warning("refused a request: %s", error)
            return
        frames = self.run(handler, msg, context)
        self._publish_quietly()
        connection.settimeout(_timeout())
        try:
            send_frames(connection, frames)
        except OSError as error:
            log.warning("could not send the %s reply: %s", handler, type(error).__name__)

    def _publish_quietly(self) -> None:
        if not self.publish:
            return
        try:
            self.publish_names()
        except Exception as error:  # noqa: BLE001 - the ClientApp then reads the site itself
            log.warning("could not write the names file: %s", type(error).__name__)

    def run(self, handler: str, msg: Message, context: Context) -> list[bytes]:
        """The handler's reply frames; a failure becomes its fixed code, detail in errors.log."""
        from client.errors import error_code, write_error_log

        # This worker's own site, whatever paths the ClientApp's node config names.
        context.node_config["site-dir"] = str(self.site_dir)
        context.node_config["work-dir"] = str(self.work_dir)
        started = time.monotonic()
        try:
            reply = self.handlers[handler](msg, context)
        except Exception as error:  # noqa: BLE001 - every failure leaves as a code
            code = error_code(error)
            write_error_log(self.work_dir, code=code, message=msg, error=error)
            log.info("%s failed in %.2fs: fedsec-%s", handler, time.monotonic() - started, code)
            return [json.dumps({"version": WIRE_VERSION, "ok": False, "code": code}).encode()]
        log.info("%s handled in %.2fs", handler, time.monotonic() - started)
        header = json.dumps({"version": WIRE_VERSION, "ok": True}).encode()
        return [header, *encode(reply, context)]


def _log_lines() -> None:
    logger = logging.getLogger("fedsec")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s fedsec-worker %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _exit_once(*_: object) -> None:
    """SIGTERM: exit; a second one (service and supervisor both stopping it) is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def serve_site(site_dir: Path, work_dir: Path) -> None:
    """The worker process: prepare, bind, serve until SIGTERM."""
    _log_lines()
    signal.signal(signal.SIGTERM, _exit_once)
    worker = Worker(site_dir=site_dir, work_dir=work_dir)
    seconds = worker.prepare()
    server = worker.bind()
    worker.publish_names()
    log.info("ready (pid %d) in %.1fs, socket %s", os.getpid(), seconds, socket_dir(work_dir))
    try:
        worker.serve(server)
    finally:
        server.close()
        log.info("stopped (pid %d)", os.getpid())


def _die_with_parent() -> None:
    """In the worker before exec: the kernel ends it if its supervisor dies (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def supervise(site_dir: Path, work_dir: Path) -> int:
    """Run the worker as a child and start it again whenever it exits (a crash, a kill)."""
    _log_lines()
    child: subprocess.Popen | None = None

    def stop(*_: object) -> None:
        if child is not None and child.poll() is None:
            child.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    argv = [sys.executable, "-m", "client.worker", "--site-dir", str(site_dir)]
    argv += ["--work-dir", str(work_dir), "--once"]
    while True:
        child = subprocess.Popen(argv, preexec_fn=_die_with_parent)
        code = child.wait()
        log.warning("worker (pid %d) exited with code %s; starting it again", child.pid, code)
        time.sleep(RESTART_DELAY_S)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m client.worker", description=__doc__)
    parser.add_argument("--site-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--once", action="store_true", help="serve without a supervisor")
    args = parser.parse_args(argv)
    if args.once:
        serve_site(args.site_dir, args.work_dir)
        return 0
    return supervise(args.site_dir, args.work_dir)


if __name__ == "__main__":
    # Through the importable module: its `_serving` flag is the one client/app.py's handlers
    # see (run as __main__, this file would be a second copy and the worker would forward
    # every message to itself).
    from client.worker import main as _main

    sys.exit(_main())
