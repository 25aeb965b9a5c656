"""docker-compose.yml as local processes on loopback, and the flwr connection file.

The compose file is the one source of truth for how the coordinator, the Fleet proxy and
the data holders are started. `local_services` turns each service into the command line
that runs the same program here, with only three things rewritten:

- addresses: `SERVICE:PORT` (and the service's own `localhost:PORT`, `0.0.0.0`, `--port`,
  nginx `listen PORT`) become `127.0.0.1:LOCAL_PORT`;
- container paths: each service gets a folder standing in for its root file system, in
  which every mount target is a symlink to the host file, named volume or tmpfs folder;
- program names: `flower-*`, `flwr` and `python` resolve to this interpreter's environment;
  a service's own `PATH` keeps its order, with the image's virtualenv (`IMAGE_BIN`) standing
  for this interpreter's and the data holders' guard folder (`GUARD_DIR`, where
  `flwr-clientapp` is `fedsec-clientapp`) made as a folder of links under the service's root.

Mounted files listed under the service's `x-local-render` (the proxy's nginx.conf) are
rewritten the same way. Nothing here starts a process: deploy/procs.py does that, for
tests/integration and deploy/bench_rounds.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from common.files import write_atomic
from deploy.app_guard import APPROVAL_ENV, GUARD_DIR, PROGRAM, SHIMS

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
SUPERNODE_PROGRAMS = ("flower-supernode", "fedsec-supernode")
"""What a data holder's SuperNode service runs (deploy/supernode.py wraps flwr's)."""
LOOPBACK = "127.0.0.1"
FLWR_CONFIG_FILE = "config.toml"
IMAGE_BIN = "/opt/fedsec/bin"
"""The images' virtualenv (Dockerfile): this interpreter's bin folder in a local run."""
IMAGE_LINKS = {GUARD_DIR: dict.fromkeys(SHIMS, PROGRAM)}
"""Folders of program links the client image makes (Dockerfile): folder -> {link: program}."""

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\})")
_ADDRESS = re.compile(r"(?<![\w.-])(?P<host>[A-Za-z0-9][A-Za-z0-9_.-]*):(?P<port>\d{1,5})\b")
_LISTEN = re.compile(r"(?m)^(?P<indent>\s*listen\s+)(?P<port>\d{1,5})\b")
_ANY_ADDRESS = re.compile(r"(?<![\w.])0\.0\.0\.0(?![\w.])")
_PATH = re.compile(r"(?<![\w.:/~$-])/[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+-]+)*/?")
_SELF_HOSTS = ("localhost", LOOPBACK, "0.0.0.0")


class ComposeError(ValueError):
    """The compose file uses something the local runner does not understand."""


@dataclass(frozen=True)
class Mount:
    """One entry of a service's `volumes` or `tmpfs` (short syntax)."""

    kind: str  # bind | volume | tmpfs
    source: str  # host path (bind), volume name (volume), "" (tmpfs)
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Service:
    """What the local runner needs from one compose service."""

    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    mounts: tuple[Mount, ...]
    ports: tuple[int, ...]  # container ports the service listens on
    working_dir: str | None = None
    depends_on: tuple[str, ...] = ()
    healthcheck: tuple[str, ...] | None = None
    render: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalService:
    """A compose service as a local process: argv, environment, folders, rendered files."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    rootfs: Path
    ports: dict[int, int]  # container port -> loopback port
    links: dict[Path, Path]  # rootfs path -> host path it stands for
    writable: tuple[Path, ...]  # named volumes and tmpfs folders to create
    rendered: dict[Path, str] = field(default_factory=dict)  # host path -> rewritten text
    healthcheck: list[str] | None = None
    depends_on: tuple[str, ...] = ()
    programs: dict[Path, Path] = field(default_factory=dict)  # link in rootfs -> program


# ---------------------------------------------------------------------------- compose file


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$` in one string."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        value = env.get(name)
        if value is None or (value == "" and ":-" in match.group(0)):
            return default if default is not None else ""
        return value

    return _VARIABLE.sub(replace, text)


def _interpolate_tree(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolate_tree(item, env) for item in value]
    if isinstance(value, dict):
        return {key: _interpolate_tree(item, env) for key, item in value.items()}
    return value


def _mounts(name: str, spec: dict[str, Any]) -> tuple[Mount, ...]:
    mounts = []
    for entry in spec.get("volumes", []):
        if not isinstance(entry, str):
            raise ComposeError(f"service {name}: use the short volume syntax SOURCE:TARGET[:ro]")
        parts = entry.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ComposeError(f"service {name}: volume {entry!r} is not SOURCE:TARGET[:ro]")
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        mounts.append(Mount(kind, source, target, read_only=parts[-1] == "ro"))
    tmpfs = spec.get("tmpfs", [])
    for target in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        mounts.append(Mount("tmpfs", "", target.split(":")[0]))
    return tuple(mounts)


def _ports(spec: dict[str, Any], command: tuple[str, ...]) -> tuple[int, ...]:
    ports = {int(str(port).split("/")[0]) for port in spec.get("expose", [])}
    ports |= {int(str(port).split(":")[-1].split("/")[0]) for port in spec.get("ports", [])}
    ports |= {
        int(value)
        for flag, value in zip(command, command[1:], strict=False)
        if flag == "--port" and value.isdigit()
    }
    return tuple(sorted(ports))


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _healthcheck(spec: dict[str, Any]) -> tuple[str, ...] | None:
    test = spec.get("healthcheck", {}).get("test")
    if not test:
        return None
    if isinstance(test, str):
        return ("sh", "-c", test)
    if test[0] == "CMD":
        return tuple(str(part) for part in test[1:])
    if test[0] == "CMD-SHELL":
        return ("sh", "-c", " ".join(test[1:]))
    return None


def parse_compose(document: dict[str, Any], *, env: Mapping[str, str]) -> dict[str, Service]:
    """The services of a parsed compose document, variables interpolated from `env`."""
    document = _interpolate_tree(document, env)
    services = {}
    for name, spec in document.get("services", {}).items():
        command = spec.get("command")
        if not isinstance(command, list):
            raise ComposeError(f"service {name}: write `command` as a list (exec form)")
        command = tuple(str(part) for part in command)
        depends = spec.get("depends_on", [])
        services[name] = Service(
            name=name,
            command=command,
            environment=_environment(spec),
            mounts=_mounts(name, spec),
            ports=_ports(spec, command),
            working_dir=spec.get("working_dir"),
            depends_on=tuple(depends if isinstance(depends, list) else depends.keys()),
            healthcheck=_healthcheck(spec),
            render=tuple(spec.get("x-local-render", [])),
        )
    return services


def load_compose(
    path: Path = COMPOSE_FILE,
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Service]:
    """Read a compose file (YAML anchors and `<<` merge keys included)."""
    import yaml  # flwr depends on PyYAML; imported here so the ServerApp never loads it

    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse_compose(document, env=os.environ if env is None else env)


def command_flags(command: tuple[str, ...] | list[str]) -> list[str]:
    """The `--flag` names a command line passes (`--flag=value` counts as `--flag`)."""
    return [part.split("=", 1)[0] for part in command[1:] if part.startswith("--")]


# ------------------------------------------------------------------------- local processes


def default_executable(name: str) -> str:
    """A program of this interpreter's environment (flower-superlink, flwr, ...) or PATH."""
    if name in ("python", "python3"):
        return sys.executable
    sibling = Path(sys.executable).parent / name
    if sibling.is_file():
        return str(sibling)
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin") or name


def _is_within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


@dataclass(frozen=True)
class _Rewriter:
    """Rewrites addresses, ports and container paths in one service's text."""

    service: str
    own_ports: Mapping[int, int]
    all_ports: Mapping[tuple[str, int], int]
    rootfs: Path
    mount_targets: tuple[str, ...]

    def address(self, match: re.Match[str]) -> str:
        host, port = match.group("host"), int(match.group("port"))
        if (host, port) in self.all_ports:
            return f"{LOOPBACK}:{self.all_ports[(host, port)]}"
        if host in _SELF_HOSTS and port in self.own_ports:
            return f"{LOOPBACK}:{self.own_ports[port]}"
        return match.group(0)

    def path(self, match: re.Match[str]) -> str:
        path = match.group(0)
        # A path inside a mount, or a folder that holds mounts (e.g. /site for /site/logs).
        if any(_is_within(path, t) or _is_within(t, path) for t in self.mount_targets):
            return str(self.rootfs) + path
        return path

    def listen(self, match: re.Match[str]) -> str:
        port = int(match.group("port"))
        if port not in self.own_ports:
            return match.group(0)
        return f"{match.group('indent')}{LOOPBACK}:{self.own_ports[port]}"

    def text(self, text: str) -> str:
        text = _ADDRESS.sub(self.address, text)
        text = _LISTEN.sub(self.listen, text)
        text = _ANY_ADDRESS.sub(LOOPBACK, text)
        return _PATH.sub(self.path, text)

    def argv(self, command: tuple[str, ...], executable: Callable[[str], str]) -> list[str]:
        argv = [executable(command[0])]
        for previous, part in zip(command, command[1:], strict=False):
            if previous == "--port" and part.isdigit() and int(part) in self.own_ports:
                argv.append(str(self.own_ports[int(part)]))
            else:
                argv.append(self.text(part))
        return argv


def _local_path_variable(
    value: str, *, rootfs: Path, executable: Callable[[str], str]
) -> tuple[str, dict[Path, Path]]:
    """A service's PATH for a local run, and the program links its guard folders need."""
    entries, programs = [], {}
    for entry in value.split(os.pathsep):
        if entry.rstrip("/") == IMAGE_BIN:
            entries.append(str(Path(sys.executable).parent))
        elif entry.rstrip("/") in IMAGE_LINKS:
            folder = rootfs / entry.strip("/")
            for link, program in IMAGE_LINKS[entry.rstrip("/")].items():
                found = Path(executable(program))
                if not found.is_file():  # a dangling link would let PATH fall through to flwr's
                    raise ComposeError(
                        f"{program} is not installed here (fix: `pip install -e .` in this "
                        "environment, for its console scripts)"
                    )
                programs[folder / link] = found
            entries.append(str(folder))
        else:
            entries.append(entry)
    return os.pathsep.join(entries), programs


def _bind_source(source: str, project_dir: Path) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else (project_dir / path).resolve()


def node_key_file(service: Service, *, project_dir: Path = COMPOSE_FILE.parent) -> Path:
    """The host file a SuperNode service mounts as its `--auth-supernode-private-key`.

    The data holder makes it (and NAME.pub beside it) with `fedsec node keygen`.
    """
    flag = "--auth-supernode-private-key"
    if flag not in service.command[:-1]:
        raise ComposeError(f"service {service.name}: no {flag} (not an authenticated SuperNode)")
    target = service.command[service.command.index(flag) + 1]
    for mount in service.mounts:
        if mount.kind == "bind" and mount.target == target:
            return _bind_source(mount.source, project_dir)
    raise ComposeError(f"service {service.name}: {target} is not a file mount (fix: mount the key)")


def approval_file(service: Service, *, project_dir: Path = COMPOSE_FILE.parent) -> Path:
    """The host file a SuperNode service mounts as its FEDSEC_APPROVED_APPS.

    The data holder writes it with `fedsec app approve`; fedsec-clientapp reads it.
    """
    target = service.environment.get(APPROVAL_ENV)
    if not target:
        raise ComposeError(f"service {service.name}: no {APPROVAL_ENV} (not a guarded node)")
    for mount in service.mounts:
        if mount.kind == "bind" and mount.target == target:
            return _bind_source(mount.source, project_dir)
    raise ComposeError(
        f"service {service.name}: {target} is not a file mount (fix: mount the data "
        "holder's approval file there, read-only)"
    )


def local_service(
    service: Service,
    *,
    root: Path,
    ports: Mapping[tuple[str, int], int],
    project_dir: Path = COMPOSE_FILE.parent,
    executable: Callable[[str], str] = default_executable,
) -> LocalService:
    """One compose service as a local process under `root` (nothing is created yet)."""
    rootfs = root / "rootfs" / service.name
    own_ports = {port: ports[(service.name, port)] for port in service.ports}
    targets = tuple(m.target for m in service.mounts)
    rewriter = _Rewriter(service.name, own_ports, ports, rootfs, targets)
    links: dict[Path, Path] = {}
    writable: list[Path] = []
    rendered: dict[Path, str] = {}
    for mount in service.mounts:
        inside = rootfs / mount.target.lstrip("/")
        if mount.kind == "tmpfs":
            writable.append(inside)
            continue
        if mount.kind == "volume":
            host = root / "volumes" / mount.source
            writable.append(host)
        else:
            host = _bind_source(mount.source, project_dir)
        if mount.target in service.render:
            text = rewriter.text(host.read_text(encoding="utf-8"))
            host = root / "rendered" / service.name / Path(mount.target).name
            rendered[host] = text
        links[inside] = host
    cwd = rootfs / (service.working_dir or "/").lstrip("/")
    health = service.healthcheck
    env = {key: rewriter.text(value) for key, value in service.environment.items()}
    programs: dict[Path, Path] = {}
    if "PATH" in service.environment:
        env["PATH"], programs = _local_path_variable(
            service.environment["PATH"], rootfs=rootfs, executable=executable
        )
    return LocalService(
        name=service.name,
        argv=rewriter.argv(service.command, executable),
        env=env,
        cwd=cwd,
        rootfs=rootfs,
        ports=own_ports,
        links=links,
        writable=tuple(writable),
        rendered=rendered,
        healthcheck=rewriter.argv(health, executable) if health else None,
        depends_on=service.depends_on,
        programs=programs,
    )


def local_services(
    services: Mapping[str, Service],
    *,
    root: Path,
    ports: Mapping[tuple[str, int], int],
    project_dir: Path = COMPOSE_FILE.parent,
    executable: Callable[[str], str] = default_executable,
) -> dict[str, LocalService]:
    """Every service as a local process; `ports` maps (service, container port) to a port."""
    missing = [(s.name, p) for s in services.values() for p in s.ports if (s.name, p) not in ports]
    if missing:
        raise ComposeError(f"no local port for {missing} (fix: pass one per service port)")
    return {
        name: local_service(
            service, root=root, ports=ports, project_dir=project_dir, executable=executable
        )
        for name, service in services.items()
    }


def interpreter_path_env(base: Mapping[str, str]) -> dict[str, str]:
    """`base` with this interpreter's programs first on PATH.

    flwr starts `flower-superlink`, `flower-superexec` and `flwr-clientapp` by name, as the
    image's PATH would find them; an unactivated virtualenv is not on PATH.
    """
    bin_dir = str(Path(sys.executable).parent)
    path = [bin_dir, *(p for p in base.get("PATH", os.defpath).split(os.pathsep) if p != bin_dir)]
    return {**base, "PATH": os.pathsep.join(path)}


def process_env(local: LocalService, base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus the service's environment.

    A service that sets PATH (the data holders: guard folder first) keeps that order, its
    image folders rewritten (`local_service`); any other gets this interpreter's programs
    first on PATH.
    """
    if "PATH" in local.env:
        return {**base, **local.env}
    return interpreter_path_env({**base, **local.env})


def materialise(local: LocalService) -> None:
    """Create the service's stand-in root: writable folders, rendered files, mount symlinks."""
    for path in local.writable:
        path.mkdir(parents=True, exist_ok=True)
        if path.is_relative_to(local.rootfs):
            path.chmod(0o1777)  # a tmpfs is world-writable with the sticky bit, as in Docker
    for path, text in local.rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for inside, host in {**local.links, **local.programs}.items():
        inside.parent.mkdir(parents=True, exist_ok=True)
        if inside.is_symlink():
            inside.unlink()
        inside.symlink_to(host)
    local.cwd.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------- flwr connections (CLI)


def connection_entry(
    *, address: str, root_certificates: Path | None = None, insecure: bool = False
) -> dict[str, Any]:
    """A `[superlink.NAME]` table for a SuperLink with TLS (or, for tests only, without)."""
    if insecure == (root_certificates is not None):
        raise ValueError("give exactly one of root_certificates (TLS) or insecure=True")
    entry: dict[str, Any] = {"address": address}
    if root_certificates is not None:
        entry["root-certificates"] = str(root_certificates.resolve())
    else:
        entry["insecure"] = True
    return entry


def simulation_entry(*, num_supernodes: int) -> dict[str, Any]:
    """A `[superlink.NAME]` table for flwr's local simulation SuperLink."""
    return {"address": ":local:", "options": {"num-supernodes": num_supernodes}}


def write_connection(
    flwr_home: Path, name: str, entry: Mapping[str, Any], *, default: bool = False
) -> Path:
    """Add or replace one connection in `$FLWR_HOME/config.toml`, keeping the others."""
    path = flwr_home / FLWR_CONFIG_FILE
    config: dict[str, Any] = tomllib.loads(path.read_text()) if path.is_file() else {}
    superlink = config.setdefault("superlink", {})
    superlink[name] = dict(entry)
    if default or "default" not in superlink:
        superlink["default"] = name
    write_atomic(path, tomli_w.dumps(config))
    return path


def _flwr_env(flwr_home: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home.resolve())
    return env


def connection_command(
    name: str,
    *,
    address: str,
    root_certificates: Path,
    flwr_home: Path | None,
    default: bool = True,
) -> int:
    """`fedsec connection`: the model team's connection to the SuperLink's Control API."""
    if not root_certificates.is_file():
        print(
            f"fedsec: error: {root_certificates}: no such file (fix: pass the ca.crt "
            "written by `fedsec certs`)",
            file=sys.stderr,
        )
        return 2
    home = Path(_flwr_env(flwr_home).get("FLWR_HOME") or Path.home() / ".flwr")
    path = write_connection(
        home,
        name,
        connection_entry(address=address, root_certificates=root_certificates),
        default=default,
    )
    print(f"wrote connection {name!r} ({address}) to {path}; use: flwr run . {name}")
    return 0


def node_register_command(
    public_key: Path,
    *,
    connection: str,
    flwr_home: Path | None,
    expected_fingerprint: str | None = None,
) -> int:
    """`fedsec node register`: register a data holder's public key with the SuperLink.

    Prints the key's SHA-256 fingerprint first, for the model team to compare with the one
    `fedsec node keygen` printed on the data holder's host; given `expected_fingerprint`
    (the one the data holder read out), refuses a key that does not match. Runs
    `flwr supernode register` (a Control API call: run it from the coordinator's side) in a
    scratch folder, so flwr never migrates or rewrites a project's pyproject.toml.
    """
    from deploy.node_keys import public_key_fingerprint

    try:
        key_fingerprint = public_key_fingerprint(public_key)
    except ValueError as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    if expected_fingerprint is not None and expected_fingerprint.strip() != key_fingerprint:
        print(
            f"fedsec: error: {public_key}: fingerprint {key_fingerprint} is not the "
            f"{expected_fingerprint.strip()} you were given, so the file is not the data "
            "holder's key (fix: get NAME.pub again and compare before registering)",
            file=sys.stderr,
        )
        return 2
    print(
        f"registering {public_key}, fingerprint {key_fingerprint} (it must match the one "
        "the data holder's `fedsec node keygen` printed)",
        flush=True,
    )
    command = [
        default_executable("flwr"),
        "supernode",
        "register",
        str(public_key.resolve()),
        connection,
    ]
    with tempfile.TemporaryDirectory(prefix="fedsec-register-") as scratch:
        result = subprocess.run(
            command, cwd=scratch, env=_flwr_env(flwr_home), timeout=120, check=False
        )
    return result.returncode


def data_holders(services: Mapping[str, Service]) -> list[str]:
    """The data holders' SuperNode services, by name."""
    return sorted(n for n, s in services.items() if s.command[0] in SUPERNODE_PROGRAMS)
