"""The Deployment Engine exactly as docker-compose.yml describes it, run as local processes.

There is no Docker engine here. deploy/compose.py reads docker-compose.yml and turns each
service's own command into a local process (container paths, addresses and ports rewritten
for loopback), so the compose file and this test cannot drift apart: a real TLS SuperLink
with node authentication, the nginx Fleet proxy, three SuperNodes each with its own site
folder and key, and the model team's `flwr run` over a connection file fedsec writes.

Keys are made as in a real deployment: `fedsec certs` makes the CA and the server
certificate only; each data holder's node key comes from `fedsec node keygen`, in the
folder its compose service mounts, and only the public key is registered. Each data holder
approves the app by its hash (`fedsec app approve`) in the approval file its service mounts;
tests/integration/test_app_approval.py checks the refusals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy import launcher
from deploy.compose import (
    COMPOSE_FILE,
    LocalService,
    Mount,
    Service,
    approval_file,
    command_flags,
    connection_entry,
    data_holders,
    default_executable,
    load_compose,
    local_service,
    local_services,
    materialise,
    node_key_file,
    node_register_command,
    process_env,
    write_connection,
)
from deploy.procs import (
    Processes,
    free_ports,
    kill_pids,
    port_open,
    process_tree,
    wait_until,
)
from tests.conftest import ROOT, TEST_ENV, run_fedsec

SITES = ("site-00", "site-01", "site-02")
CONNECTION = "fedsec-deploy"
START_SECONDS = 90  # per process; SuperLink healthy in ~4 s, SuperNodes active ~5 s later
RUN_SECONDS = 420  # one SecAgg+ round with 3 nodes: ~60-100 s on 2 shared cores
# The app as `flwr run .` ships it: what pyproject's fab-include selects, plus its metadata.
APP_FILES = ("pyproject.toml", "LICENSE", "README.md")
APP_PACKAGES = ("common", "client", "server")


def _compose_env(root: Path) -> dict[str, str]:
    return {"FEDSEC_PKI": str(root / "pki"), "FEDSEC_SITES": str(root / "sites")}


def _data_holders(services: dict[str, Service]) -> list[str]:
    return data_holders(services)


def _workers(services: dict[str, Service]) -> list[str]:
    """Each data holder's warm worker (client/worker.py): `fedsec worker` services."""
    return sorted(name for name, s in services.items() if s.command[:2] == ("fedsec", "worker"))


def _launchers(services: dict[str, Service]) -> list[str]:
    """Each data holder's launcher (deploy/launcher.py): `fedsec-launcher` services."""
    return sorted(name for name, s in services.items() if s.command[0] == "fedsec-launcher")


def _require(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        message = f"{program} is not installed (CI installs it: see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


# ----------------------------------------------------------------- the compose file itself


def _compose_cli() -> list[str] | None:
    beside_python = str(Path(sys.executable).parent / "docker-compose")  # the test extra's CLI
    for command in (["docker", "compose"], ["docker-compose"], [beside_python]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return command
    return None


def test_compose_file_is_valid(tmp_path):
    compose = _compose_cli()
    if compose is None:
        message = "no Docker Compose CLI to validate docker-compose.yml (see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, **_compose_env(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_builds_existing_dockerfile_stages_without_secrets_in_context():
    import yaml

    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile))
    targets = {spec["build"]["target"] for spec in compose["services"].values() if "build" in spec}
    assert targets == {"coordinator", "client"} <= stages
    for source in re.findall(r"(?m)^COPY\s+(?!--)(.+)\s+\S+$", dockerfile):
        for name in source.split():
            assert (ROOT / name).exists(), name
    assert re.search(r"(?m)^USER fedsec$", dockerfile)
    # The build context is an allow-list: keys and site data can never be sent to a builder.
    # Of deploy/, only the data holder's app guard goes in (two named Python files).
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**") + 1 :]
    assert [line for line in ignore if line.startswith("!deploy")] == [
        "!deploy/__init__.py",
        "!deploy/app_guard.py",
    ]


def _help_flags(program: str, *subcommand: str) -> set[str]:
    result = subprocess.run(
        [default_executable(program), *subcommand, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **TEST_ENV},
    )
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout))


def test_every_flag_in_the_compose_file_exists_in_the_installed_programs():
    services = load_compose(env={})
    checked = 0
    for service in services.values():
        program = service.command[0]
        if program == "nginx":
            continue  # checked below: nginx has single-dash options only
        flags = command_flags(service.command)
        subcommand = service.command[1:2] if program == "fedsec" else ()
        unknown = set(flags) - _help_flags(program, *subcommand)
        assert not unknown, f"{service.name}: {program} has no {sorted(unknown)}"
        checked += len(flags)
    assert checked > 15
    proxy = services["fleet-proxy"].command
    assert proxy[0] == "nginx" and {"-c", "-g"} <= set(proxy[1:])


def test_compose_keeps_tls_node_auth_and_read_only_site_data():
    services = load_compose(env={})
    superlink = services["superlink"].command
    assert "--enable-supernode-auth" in superlink
    assert {"--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--database"} <= set(superlink)
    assert all("--insecure" not in s.command for s in services.values())
    holders = _data_holders(services)
    assert holders == list(SITES)
    # The start order the federation fixture below follows.
    assert services["fleet-proxy"].depends_on == ("superlink",)
    assert all(services[name].depends_on == ("fleet-proxy",) for name in holders)
    keys = set()
    for name in holders:
        command = services[name].command
        # Data holders reach the proxy only, never the SuperLink's shared port.
        assert command[command.index("--superlink") + 1].startswith("fleet-proxy:")
        mounts = {m.target: m for m in services[name].mounts}
        for target in ("/site/site.toml", "/site/logs", "/site/intel", "/keys/node.key"):
            assert mounts[target].read_only, (name, target)
            assert f"/{name}" in mounts[target].source, (name, target)
        keys.add(mounts["/keys/node.key"].source)
    assert len(keys) == len(holders)  # one key per data holder


def test_every_data_holder_has_a_warm_worker_on_its_own_site_and_work_folder():
    """The worker sees what its SuperNode sees (site read-only, the same work volume, where
    the socket lives) and nothing else: no network, no key, no certificate."""
    services = load_compose(env={})
    workers = _workers(services)
    assert workers == [f"{site}-worker" for site in SITES]
    for site, name in zip(SITES, workers, strict=True):
        node = {m.target: m for m in services[site].mounts}
        mounts = {m.target: m for m in services[name].mounts}
        assert mounts["/work"] == node["/work"], name
        assert {t for t, m in mounts.items() if m.kind != "tmpfs" and not m.read_only} == {"/work"}
        assert set(mounts) - {"/work", "/tmp"} == {"/site/site.toml", "/site/logs", "/site/intel"}
        assert all(mounts[t] == node[t] for t in ("/site/site.toml", "/site/logs", "/site/intel"))
        command = services[name].command
        assert command[command.index("--site-dir") + 1] == "/site"
        assert command[command.index("--work-dir") + 1] == "/work"
    spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert all(spec[name].get("network_mode") == "none" for name in workers)


def test_every_data_holder_has_a_launcher_in_its_network_without_its_key():
    """The launcher's children are the node's ClientApps: they reach its ClientAppIo port on
    localhost (the SuperNode's network) and read what a ClientApp reads (site, approval
    file, work volume where the socket lives), read-only but the work volume; not the key."""
    services = load_compose(env={})
    launchers = _launchers(services)
    assert launchers == [f"{site}-launcher" for site in SITES]
    spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for site, name in zip(SITES, launchers, strict=True):
        assert spec[name]["network_mode"] == f"service:{site}"
        node = {m.target: m for m in services[site].mounts}
        mounts = {m.target: m for m in services[name].mounts}
        assert "/keys/node.key" not in mounts and "/certs/ca.crt" not in mounts
        shared = set(mounts) - {"/tmp", services[name].environment["FLWR_HOME"]}
        assert all(mounts[t] == node[t] for t in shared), name
        assert {t for t, m in mounts.items() if m.kind == "volume"} == {"/work"}
        assert all(m.read_only for m in mounts.values() if m.kind == "bind"), name
        # The SuperNode hands its messages to this socket, in the volume both mount.
        command = services[name].command
        socket_path = command[command.index("--socket") + 1]
        assert services[site].environment["FEDSEC_LAUNCHER"] == socket_path
        assert socket_path.startswith("/work/")


def test_node_keys_come_from_the_data_holders_folders_not_the_coordinators(tmp_path):
    """The coordinator's PKI folder holds no node key; each SuperNode mounts its own."""
    env = {"FEDSEC_PKI": str(tmp_path / "coordinator"), "FEDSEC_SITES": str(tmp_path / "holders")}
    services = load_compose(env=env)
    for name in _data_holders(services):
        key = node_key_file(services[name])
        assert key == tmp_path / "holders" / name / "node" / f"{name}.key"
        from_pki = [m.target for m in services[name].mounts if env["FEDSEC_PKI"] in m.source]
        assert from_pki == ["/certs/ca.crt"], name  # the public CA certificate, nothing else
    for name in set(services) - set(_data_holders(services)):
        assert not any(m.target.startswith("/keys") for m in services[name].mounts), name


def test_local_commands_are_the_compose_commands(tmp_path):
    """Only paths, addresses and ports differ; every flag is the same, in the same place."""
    services = load_compose(env=_compose_env(tmp_path))
    need = [(s.name, p) for s in services.values() for p in s.ports]
    ports = dict(zip(need, range(20000, 20000 + len(need)), strict=True))
    local = local_services(services, root=tmp_path / "local", ports=ports)
    for name, service in services.items():
        argv = local[name].argv
        assert Path(argv[0]).name == service.command[0]
        assert len(argv) == len(service.command)
        for theirs, ours in zip(service.command[1:], argv[1:], strict=True):
            if theirs != ours:
                assert str(tmp_path) in ours or "127.0.0.1" in ours or ours.isdigit(), (
                    name,
                    theirs,
                    ours,
                )
    assert (
        local["site-00"].argv[local["site-00"].argv.index("--superlink") + 1]
        == f"127.0.0.1:{ports[('fleet-proxy', 8443)]}"
    )


# ------------------------------------------------------------ operator commands (quick)


def test_certs_command_writes_a_pki_that_flwr_and_tls_accept(tmp_path, capsys):
    from cryptography import x509

    from deploy.certs import PkiPaths, certs_command, server_hosts

    out = tmp_path / "pki"
    assert certs_command(out, hosts=["coordinator.example.org", "10.0.0.5"]) == 0
    paths = PkiPaths(out)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert server_hosts(paths.server_cert) == [
        "superlink",
        "fleet-proxy",
        "localhost",
        "coordinator.example.org",
        "127.0.0.1",
        "10.0.0.5",
    ]
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    context.load_cert_chain(paths.server_cert, paths.server_key)  # key matches certificate
    for secret in (paths.ca_key, paths.server_key):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    # Run again: nothing that exists is replaced.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert certs_command(out, hosts=[]) == 0
    assert all(path.read_bytes() == data for path, data in before.items())
    assert "fedsec node keygen" in capsys.readouterr().out
    assert certs_command(tmp_path / "bad", hosts=["not a host"]) == 2
    assert "not a host" in capsys.readouterr().err


def test_certs_writes_no_private_key_but_the_cas_and_the_servers(tmp_path):
    from deploy.certs import PkiPaths, certs_command

    out = tmp_path / "pki"
    assert certs_command(out, hosts=["coordinator.example.org"]) == 0
    paths = PkiPaths(out)
    files = {p for p in out.rglob("*") if not p.is_dir()}
    assert files == {paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key}
    secrets = {p for p in files if b"PRIVATE KEY" in p.read_bytes()}
    assert secrets == {paths.ca_key, paths.server_key}


def test_certs_node_flag_fails_with_one_line_naming_keygen(tmp_path):
    out = tmp_path / "pki"
    result = run_fedsec(["certs", "--out", str(out), "--node", "site-00"], tmp_path=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("fedsec: error: --node")
    assert "fedsec node keygen" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()  # nothing written, not even the CA


def test_certs_warns_about_node_keys_an_older_version_left(tmp_path, capsys):
    from deploy.certs import certs_command

    out = tmp_path / "pki"
    (out / "nodes").mkdir(parents=True)
    (out / "nodes" / "site-00.key").write_text("old")
    assert certs_command(out, hosts=[]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "fedsec node keygen" in err


def _fingerprint_in(text: str) -> str:
    found = re.findall(r"SHA256:[A-Za-z0-9+/]{43}\b", text)
    assert len(set(found)) == 1, text
    return found[0]


def test_node_keygen_makes_keys_flwr_loads_and_never_overwrites(tmp_path, capsys):
    import argparse

    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes
    from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication

    from deploy.node_keys import keygen_command

    out = tmp_path / "site-00" / "node"
    old_umask = os.umask(0)  # the mode must not depend on the caller's umask
    try:
        assert keygen_command(out, name="site-00") == 0
    finally:
        os.umask(old_umask)
    private, public = out / "site-00.key", out / "site-00.pub"
    assert sorted(p.name for p in out.iterdir()) == ["site-00.key", "site-00.pub"]
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    printed = capsys.readouterr().out
    key_fingerprint = _fingerprint_in(printed)
    last = printed.splitlines()[-1]
    assert str(public) in last and str(private) in last and "never leaves" in last
    # What flower-supernode loads for --auth-supernode-private-key ...
    args = argparse.Namespace(
        auth_supernode_private_key=str(private), auth_supernode_public_key=None
    )
    key, _ = _try_setup_client_authentication(args)
    assert key.curve.name == "secp384r1"
    # ... is the pair of what `flwr supernode register` loads.
    assert try_load_public_key(public) == public_key_to_bytes(key.public_key())
    # The fingerprint is OpenSSH's own, so either side can check it with ssh-keygen.
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen:
        listed = subprocess.run(
            [ssh_keygen, "-l", "-f", str(public)], capture_output=True, text=True, check=True
        )
        assert _fingerprint_in(listed.stdout) == key_fingerprint
    # Never overwritten: a second run, or a run finding only one of the two files, refuses.
    before = {p: p.read_bytes() for p in (private, public)}
    assert keygen_command(out, name="site-00") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(private) in err and "fix:" in err
    assert {p: p.read_bytes() for p in (private, public)} == before
    private.rename(tmp_path / "moved.key")
    assert keygen_command(out, name="site-00") == 2
    assert not private.exists() and public.read_bytes() == before[public]
    assert keygen_command(out, name="../site-01") == 2
    assert "node name" in capsys.readouterr().err


def test_node_register_refuses_a_private_key_or_a_non_key_before_calling_flwr(tmp_path, capsys):
    from deploy.node_keys import keygen_command

    assert keygen_command(tmp_path, name="site-00") == 0
    capsys.readouterr()
    for wrong, says in [
        (tmp_path / "site-00.key", "is a private key"),
        (ROOT / "LICENSE", "not an OpenSSH public key"),
        (tmp_path / "missing.pub", "cannot read it"),
    ]:
        code = node_register_command(wrong, connection="nowhere", flwr_home=tmp_path / ".flwr")
        assert code == 2, wrong
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and "fix:" in err, err
    # A key whose fingerprint is not the one the data holder read out.
    other = "SHA256:" + "A" * 43
    code = node_register_command(
        tmp_path / "site-00.pub",
        connection="nowhere",
        flwr_home=tmp_path / ".flwr",
        expected_fingerprint=other,
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and other in err and "fix:" in err, err
    assert not (tmp_path / ".flwr").exists()  # flwr was never started


def test_node_keygen_command_line(tmp_path):
    out = tmp_path / "node"
    args = ["node", "keygen", "--out", str(out), "--name", "site-07"]
    first = run_fedsec(args, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (out / "site-07.key").stat().st_mode & 0o777 == 0o600
    assert "fingerprint: SHA256:" in first.stdout
    again = run_fedsec(args, tmp_path=tmp_path)
    assert again.returncode == 2
    assert again.stderr.startswith("fedsec: error:") and again.stderr.count("\n") == 1


def test_connection_file_is_read_by_flwr(tmp_path, monkeypatch):
    from flwr.cli.flower_config import read_superlink_connection

    from deploy.compose import simulation_entry

    ca = tmp_path / "ca.crt"
    ca.write_text("-")
    home = tmp_path / ".flwr"
    write_connection(home, "sim", simulation_entry(num_supernodes=3))
    write_connection(
        home,
        CONNECTION,
        connection_entry(address="127.0.0.1:8000", root_certificates=ca),
        default=True,
    )
    monkeypatch.setenv("FLWR_HOME", str(home))
    deployed = read_superlink_connection(None)  # the default
    assert (deployed.name, deployed.address) == (CONNECTION, "127.0.0.1:8000")
    assert deployed.root_certificates == str(ca.resolve()) and not deployed.insecure
    simulated = read_superlink_connection("sim")
    assert simulated.address == ":local:" and simulated.options.num_supernodes == 3


# ------------------------------------------------------------------ the running federation


@dataclass
class Federation:
    root: Path
    services: dict[str, Service]
    local: dict[str, LocalService]
    ports: dict[tuple[str, int], int]
    processes: Processes
    model_team_home: Path
    env: dict[str, str]
    # The app every data holder approved by its hash (a copy made once: the repository may
    # change while the tests run), and that hash.
    app: Path
    app_hash: str
    # Per data holder: the fingerprint `fedsec node keygen` printed on its side, and the
    # one `fedsec node register` printed on the model team's.
    keygen_fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    registered_fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.root / "pki" / "ca.crt"

    def start(self, local: LocalService):
        materialise(local)
        return self.processes.start(
            local.name, local.argv, env=process_env(local, self.env), cwd=local.cwd
        )

    def variant(self, name: str, service: Service) -> LocalService:
        """Another data holder built from a compose service (own runtime port and FLWR_HOME)."""
        service = dataclasses.replace(service, name=name)
        ports = {**self.ports, **{(name, p): free_ports(1)[0] for p in service.ports}}
        return local_service(service, root=self.root, ports=ports)


def _approved_app(federation: Federation, target: Path) -> Path:
    """A copy of the app every data holder approved (flwr run may touch the folder)."""
    shutil.copytree(federation.app, target)
    return target


def _copy_app(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in APP_FILES:
        shutil.copy2(ROOT / name, target / name)
    for package in APP_PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return target


def _healthy(local: LocalService) -> bool:
    assert local.healthcheck is not None
    return (
        subprocess.run(local.healthcheck, capture_output=True, timeout=10, check=False).returncode
        == 0
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Iterator[Federation]:
    from deploy.app_approval import app_hash, approve
    from deploy.certs import write_pki
    from deploy.node_keys import keygen_command
    from experiments.generator import generate_sites

    _require("nginx")
    root = tmp_path_factory.mktemp("deployment")
    generate_sites(out_dir=root / "sites", n_sites=len(SITES), n_days=3, seed=1, scale=0.1)
    # The coordinator: CA and server certificate only.
    write_pki(root / "pki", hosts=["superlink", "fleet-proxy", "localhost", "127.0.0.1"])
    services = load_compose(env=_compose_env(root))
    # Each data holder, on its side: its own key, where its compose service mounts it.
    keygen_fingerprints = {}
    for site in SITES:
        key = node_key_file(services[site])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert keygen_command(key.parent, name=key.stem) == 0
        keygen_fingerprints[site] = _fingerprint_in(printed.getvalue())
    # A data holder that made a key but whose .pub the model team never registered.
    with contextlib.redirect_stdout(io.StringIO()):
        assert keygen_command(root / "intruder" / "node", name="intruder") == 0
    # The model team's app and its hash; each data holder approves that hash for its node.
    app = _copy_app(root / "app")
    digest = app_hash(app)
    for site in SITES:
        approve(approval_file(services[site]), hashes=[digest])
    need = [(s.name, p) for s in services.values() for p in s.ports]
    ports = dict(zip(need, free_ports(len(need)), strict=True))
    local = local_services(services, root=root, ports=ports)
    env = {**os.environ, **TEST_ENV}
    processes = Processes(root / "logs")
    federation = Federation(
        root,
        services,
        local,
        ports,
        processes,
        root / "model-team" / ".flwr",
        env,
        app,
        digest,
        keygen_fingerprints=keygen_fingerprints,
    )
    try:
        superlink = federation.start(local["superlink"])
        wait_until(
            lambda: superlink.popen.poll() is not None or _healthy(local["superlink"]),
            timeout=START_SECONDS,
            what="SuperLink health",
            on_timeout=superlink.tail,
        )
        assert superlink.popen.poll() is None, superlink.tail()
        proxy = federation.start(local["fleet-proxy"])
        wait_until(
            lambda: port_open(ports[("fleet-proxy", 8443)]),
            timeout=START_SECONDS,
            what="Fleet proxy",
            on_timeout=proxy.tail,
        )
        # The model team, on the coordinator's side: connection file, then node registration.
        write_connection(
            federation.model_team_home,
            CONNECTION,
            connection_entry(
                address=f"127.0.0.1:{ports[('superlink', 8000)]}", root_certificates=federation.ca
            ),
            default=True,
        )
        for site in SITES:
            public = node_key_file(services[site]).with_suffix(".pub")
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = node_register_command(
                    public,
                    connection=CONNECTION,
                    flwr_home=federation.model_team_home,
                    expected_fingerprint=keygen_fingerprints[site],
                )
            assert code == 0, printed.getvalue()
            federation.registered_fingerprints[site] = _fingerprint_in(printed.getvalue())
        # Each data holder's warm worker first: it loads torch and the site while nodes start.
        workers = [federation.start(local[name]) for name in _workers(services)]
        launchers = [federation.start(local[name]) for name in _launchers(services)]
        nodes = [federation.start(local[site]) for site in SITES]
        for node in nodes:
            node.wait_for_log(r"SuperNode ID", timeout=START_SECONDS)
        for worker in workers:
            worker.wait_for_log(r"fedsec-worker ready", timeout=START_SECONDS)
        for started in launchers:
            started.wait_for_log(r"fedsec-launcher ready", timeout=START_SECONDS)
        yield federation
    finally:
        processes.stop()


def _flwr_run(federation: Federation, app: Path, run_config: str) -> subprocess.CompletedProcess:
    command = [
        default_executable("flwr"),
        "run",
        str(app),
        CONNECTION,
        "--stream",
        "--run-config",
        run_config,
    ]
    env = {**federation.env, "FLWR_HOME": str(federation.model_team_home)}
    try:
        return subprocess.run(
            command,
            env=env,
            cwd=app.parent,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"flwr run took over {RUN_SECONDS}s\n{federation.processes.tails()}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_keygen_keys_are_the_ones_registered_and_mounted(federation):
    assert federation.registered_fingerprints == federation.keygen_fingerprints
    assert len(set(federation.keygen_fingerprints.values())) == len(SITES)
    assert not (federation.root / "pki" / "nodes").exists()  # the coordinator holds none
    for site in SITES:
        local = federation.local[site]
        key = node_key_file(federation.services[site])
        assert local.links[local.rootfs / "keys" / "node.key"] == key
        assert key.is_relative_to(federation.root / "sites" / site)


@pytest.mark.slow
def test_secagg_round_over_tls_through_the_proxy(federation, tmp_path):
    pyproject = _sha256(ROOT / "pyproject.toml")
    app = _approved_app(federation, tmp_path / "app")
    out = tmp_path / "run"
    result = _flwr_run(
        federation,
        app,
        f"mode='secagg' num-rounds=1 min-nodes={len(SITES)} local-steps=2 site-html='off' "
        f"out-dir='{out}'",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    (entry,) = results["rounds"]
    assert entry["train"]["status"] == "aggregated"
    assert entry["train"]["results"] == len(SITES)
    assert sorted(entry["sites"]) == list(SITES)
    for metrics in entry["sites"].values():
        assert 0.0 <= metrics["auc"] <= 1.0
    # Where the round's seconds went, message by message (server/polling.py): SecAgg+'s
    # four train exchanges and the evaluation, each reply's round trip split at its creation.
    messages = entry["messages"]
    assert messages["train"]["exchanges"] >= 4 and messages["evaluate"]["exchanges"] == 1
    for phase in ("train", "evaluate"):
        times = messages[phase]
        assert times["replies"] >= len(SITES)
        assert 0.0 < times["out_s_mean"] < times["round_trip_s_mean"] <= entry["seconds"]["total"]
        assert times["round_trip_s_mean"] == pytest.approx(
            times["out_s_mean"] + times["back_s_mean"]
        )
    # Each data holder's SuperNode logged its replies' time at the node and upload, and
    # when each message reached it; its ClientApps logged their steps (message_times.py).
    for site in SITES:
        node_log = federation.processes.get(site).log()
        for kind in ("train", "evaluate"):
            assert re.search(
                rf"reply to a {kind} message: at the node [0-9.]+ s after its creation, "
                r"sent in [0-9.]+ s",
                node_log,
            ), site
            assert re.search(
                rf"received a {kind} message [0-9.]+ s after its creation, stored with its "
                r"objects at [0-9.]+ s",
                node_log,
            ), site
            steps = re.search(
                rf"{kind} message, seconds after its creation: ClientApp process started "
                r"(-?[0-9.]+), guard (-?[0-9.]+), pulled ([0-9.]+), unpacked ([0-9.]+), "
                r"loaded ([0-9.]+), replied ([0-9.]+), handed over ([0-9.]+)",
                node_log,
            )
            assert steps, site
            marks = [float(value) for value in steps.groups()]
            assert marks == sorted(marks) and 0.0 < marks[0] < marks[-1] < 60.0, (site, marks)
    # The SuperNodes' traffic really went through the proxy.
    access = federation.processes.get("fleet-proxy").log()
    assert re.search(r'"POST /v1/fleet/push-messages HTTP/1\.1" 200', access)
    assert _sha256(ROOT / "pyproject.toml") == pyproject  # flwr run rewrote nothing of ours
    # Every data holder's fedsec-clientapp (flwr-clientapp on its PATH) checked the app first.
    for site in SITES:
        assert (
            f"approved app sha256:{federation.app_hash}" in federation.processes.get(site).log()
        ), site
    # ... each message in a child of the data holder's launcher, never cold: its streams
    # (the line above is in the SuperNode's log) and environment (FEDSEC_APP_LOG) were the
    # SuperNode's.
    for site in SITES:
        launched = federation.processes.get(f"{site}-launcher").log()
        assert launched.count("message started") >= 2, site  # train and evaluate
        assert "runs cold" not in federation.processes.get(site).log(), site
        decisions = federation.root / "volumes" / f"{site}-work" / "app-approvals.log"
        assert f"approved app sha256:{federation.app_hash}" in decisions.read_text(), site
        # The children compiled the installed app once, into the launcher's bytecode cache.
        cache = federation.root / "volumes" / f"{site}-work" / "launch" / launcher.PYCACHE
        compiled = {path.name for path in cache.rglob("*.pyc")}
        assert {"app.cpython-311.pyc", "worker.cpython-311.pyc"} <= compiled, site


def _https_status(port: int, ca: Path, method: str, raw_path: str) -> int:
    """Status of one request sent byte for byte (no client-side path normalisation)."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            f"{method} {raw_path} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/protobuf\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        status_line = tls.recv(1024).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


@pytest.mark.slow
def test_proxy_refuses_control_and_runtime_api_and_passes_fleet(federation):
    proxy = federation.ports[("fleet-proxy", 8443)]
    superlink = federation.ports[("superlink", 8000)]
    ca = federation.ca
    # The teeth: straight to the SuperLink, the Control API answers anyone.
    assert _https_status(superlink, ca, "POST", "/v1/control/list-runs") == 200
    for method, path in [
        ("POST", "/v1/control/list-runs"),
        ("POST", "/v1/control/start-run"),
        ("POST", "/v1/control/register-node"),
        ("POST", "/v1/runtime/get-nodes"),
        ("GET", "/health"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/fleet/../control/list-runs"),
        ("POST", "/v1/fleet/%2e%2e/control/list-runs"),
        ("POST", "/v1/fleet/..%2Fcontrol%2Flist-runs"),
        ("POST", "/v1/fleet/get-run?x=/v1/control/list-runs"),
        ("GET", "/v1/fleet/get-run"),
    ]:
        assert _https_status(proxy, ca, method, path) == 403, (method, path)
    # A Fleet call passes the proxy and is answered by the SuperLink's node authentication.
    assert _https_status(proxy, ca, "POST", "/v1/fleet/get-run") == 401


def _data_holder_without(
    federation: Federation, name: str, *, key: Path | None = None, ca: bool = True
) -> LocalService:
    base = federation.services[SITES[0]]
    # Its own named volumes (work folder, FLWR_HOME), as another data holder would have.
    mounts = tuple(
        Mount("volume", m.source.replace(SITES[0], name), m.target) if m.kind == "volume" else m
        for m in base.mounts
    )
    command = base.command
    if key is not None:
        mounts = tuple(
            dataclasses.replace(m, source=str(key)) if m.target == "/keys/node.key" else m
            for m in mounts
        )
    if not ca:
        at = command.index("--root-certificates")
        command = command[:at] + command[at + 2 :]
        mounts = tuple(m for m in mounts if m.target != "/certs/ca.crt")
    return federation.variant(name, dataclasses.replace(base, command=command, mounts=mounts))


@pytest.mark.slow
def test_unregistered_node_key_is_refused(federation):
    # A well-formed key from `fedsec node keygen` that the model team never registered.
    intruder = _data_holder_without(
        federation, "intruder", key=federation.root / "intruder" / "node" / "intruder.key"
    )
    proc = federation.start(intruder)
    code = proc.wait_exit(timeout=START_SECONDS)
    assert code not in (None, 0), proc.tail()
    assert "[code: 2004] Failed to activate SuperNode" in proc.log(), proc.tail()
    assert "SuperNode ID" not in proc.log()


@pytest.mark.slow
def test_node_without_the_ca_certificate_is_refused(federation):
    stranger = _data_holder_without(federation, "no-ca", ca=False)
    assert "--root-certificates" not in stranger.argv
    proc = federation.start(stranger)
    code = proc.wait_exit(timeout=START_SECONDS)
    assert code not in (None, 0), proc.tail()
    assert "CERTIFICATE_VERIFY_FAILED" in proc.log(), proc.tail()
    assert "SuperNode ID" not in proc.log()


def _serverapp_pids(federation: Federation) -> list[int]:
    """The coordinator's ServerApp processes: descendants of the SuperLink we started."""
    superlink = federation.processes.get("superlink").pid
    return [
        pid
        for pid in process_tree(superlink)
        if b"flwr-serverapp" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.mark.slow
def test_killed_serverapp_resumes_without_losing_or_repeating_a_round(federation, tmp_path):
    app = _approved_app(federation, tmp_path / "app")
    out = tmp_path / "run"
    config = (
        f"mode='fedavg' num-rounds=2 min-nodes={len(SITES)} local-steps=2 site-html='off' "
        f"out-dir='{out}'"
    )
    command = [
        default_executable("flwr"),
        "run",
        str(app),
        CONNECTION,
        "--stream",
        "--run-config",
        config,
    ]
    env = {**federation.env, "FLWR_HOME": str(federation.model_team_home)}
    first = subprocess.Popen(
        command,
        env=env,
        cwd=app.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        state = out / "checkpoints" / "round-001.state.json"
        wait_until(
            lambda: state.exists(),
            timeout=RUN_SECONDS,
            what="round 1 checkpoint",
            on_timeout=federation.processes.tails,
        )
        victims = _serverapp_pids(federation)
        assert victims, "no flwr-serverapp process under the SuperLink"
        kill_pids(victims, grace_seconds=0.0)  # mid-run: round 2 is under way or about to be
    finally:
        kill_pids([first.pid])
        first.wait(timeout=60)
    assert not (out / "checkpoints" / "round-002.npz").exists()
    round_one = _sha256(out / "checkpoints" / "round-001.npz")
    result = _flwr_run(federation, app, config + " resume=true")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [entry["round"] for entry in results["rounds"]] == [1, 2]
    assert all(sorted(entry["sites"]) == list(SITES) for entry in results["rounds"])
    assert _sha256(out / "checkpoints" / "round-001.npz") == round_one  # not repeated
    assert (out / "checkpoints" / "round-002.npz").is_file() and (out / "model.npz").is_file()


def _worker_children(supervisor: int) -> list[int]:
    """The serving process(es) under a `fedsec worker` supervisor."""
    return [
        pid
        for pid in process_tree(supervisor)
        if pid != supervisor and b"--once" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.mark.slow
def test_killed_worker_costs_one_line_per_message_and_no_round(federation, tmp_path):
    """site-00's worker service is down when a run starts: its ClientApps say so in one line
    each and work cold, and every round still has every site. Started again, the service is
    ready, and after a crash of its worker process it starts it again by itself."""
    worker = federation.processes.get("site-00-worker")
    node = federation.processes.get("site-00")
    seen = len(node.log())
    kill_pids([worker.pid], grace_seconds=0.0)
    app = _approved_app(federation, tmp_path / "app")
    out = tmp_path / "run"
    run = subprocess.Popen(
        [
            default_executable("flwr"),
            "run",
            str(app),
            CONNECTION,
            "--stream",
            "--run-config",
            f"mode='fedavg' num-rounds=1 min-nodes={len(SITES)} local-steps=2 "
            f"site-html='off' out-dir='{out}'",
        ],
        env={**federation.env, "FLWR_HOME": str(federation.model_team_home)},
        cwd=app.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: "warm worker" in node.log()[seen:],
            timeout=RUN_SECONDS,
            what="site-00's ClientApp noticing its worker is down",
            on_timeout=node.tail,
        )
        mark = len(worker.log())  # the service logs to the same file, appended
        restarted = federation.start(federation.local["site-00-worker"])
        output, _ = run.communicate(timeout=RUN_SECONDS)
    finally:
        kill_pids([run.pid])
    assert run.returncode == 0, output[-3000:]
    rounds = json.loads((out / "results.json").read_text())["rounds"]
    assert [entry["round"] for entry in rounds] == [1]  # one round: train and evaluate both
    assert all(sorted(entry["sites"]) == list(SITES) for entry in rounds)
    said = [line for line in node.log()[seen:].splitlines() if "warm worker" in line]
    assert all("did not answer" in line and "cold" in line for line in said), said
    assert "Traceback" not in node.log()[seen:]

    # The service again: ready, and it restarts its worker process after a crash.
    def logged(*patterns: str) -> bool:
        return re.search(".*".join(patterns), restarted.log()[mark:], re.DOTALL) is not None

    wait_until(lambda: logged("ready"), timeout=START_SECONDS, what="worker ready")
    (child,) = _worker_children(restarted.pid)
    kill_pids([child], grace_seconds=0.0)
    wait_until(
        lambda: logged("ready", "exited with code -9", "ready"),
        timeout=START_SECONDS,
        what="worker started again by its service",
        on_timeout=restarted.tail,
    )
