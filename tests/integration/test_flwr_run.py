"""`flwr run <app> NAME` against a local simulation connection in a test-owned FLWR_HOME.

flwr starts a detached local SuperLink that outlives the command; it and everything it
started (the simulation, Ray) carry this test's unique FLWR_HOME in their environment,
which is how the test finds them afterwards and kills them by PID.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.compose import (
    default_executable,
    interpreter_path_env,
    simulation_entry,
    write_connection,
)
from deploy.procs import free_ports, kill_pids, pids_with_env
from tests.conftest import ROOT, TEST_ENV

CONNECTION = "fedsec-sim"
N_SITES = 3
RUN_SECONDS = 420


def _copy_app(target: Path) -> Path:
    """The app as `flwr run .` would bundle it; flwr may rewrite this copy's pyproject."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("common", "client", "server"):
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_flwr_run_with_a_local_simulation_connection(tmp_path):
    from experiments.generator import generate_sites

    flwr_home = tmp_path / ".flwr"
    config = write_connection(
        flwr_home, CONNECTION, simulation_entry(num_supernodes=N_SITES), default=True
    )
    assert f"[superlink.{CONNECTION}.options]" in config.read_text()
    sites = generate_sites(out_dir=tmp_path / "sites", n_sites=N_SITES, n_days=3, seed=1, scale=0.1)
    app = _copy_app(tmp_path / "app")
    out = tmp_path / "run"
    http_port, control_port = free_ports(2)
    env = interpreter_path_env(
        {
            **os.environ,
            **TEST_ENV,
            "FLWR_HOME": str(flwr_home),
            # A port of its own: never reuse (or collide with) another local SuperLink.
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(http_port),
            "FLWR_LOCAL_CONTROL_API_PORT": str(control_port),
        }
    )
    run_config = (
        f"data-dir='{tmp_path / 'sites'}' out-dir='{out}' min-nodes={N_SITES} "
        "num-rounds=1 local-steps=2 site-html='off'"
    )
    pyproject = _sha256(ROOT / "pyproject.toml")
    try:
        result = subprocess.run(
            [
                default_executable("flwr"),
                "run",
                str(app),
                CONNECTION,
                "--stream",
                "--run-config",
                run_config,
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
        )
    finally:
        started = pids_with_env("FLWR_HOME", str(flwr_home))
        kill_pids(started)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert started, "flwr run left no local SuperLink behind: was one started?"
    assert not pids_with_env("FLWR_HOME", str(flwr_home))
    results = json.loads((out / "results.json").read_text())
    (entry,) = results["rounds"]
    assert sorted(entry["sites"]) == sorted(site.name for site in sites)
    assert entry["train"]["results"] == N_SITES
    assert _sha256(ROOT / "pyproject.toml") == pyproject
