"""Shared test fixtures: quiet, offline flwr settings and small generated federations."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# No wall-clock deadlines on a shared 2-core machine; fixed examples in CI (no flaky draws).
settings.register_profile("fedsec", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile("fedsec")

ROOT = Path(__file__).resolve().parents[1]

TEST_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "FLWR_LOG_LEVEL": "WARNING",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def fedsec_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **TEST_ENV, "FLWR_HOME": str(tmp_path / ".flwr")}
    return env


def run_fedsec(
    args: list[str], *, tmp_path: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the installed CLI entry point in a child process (bounded, its own process group)."""
    command = [sys.executable, "-m", "fedsec", *args]
    return subprocess.run(
        command,
        cwd=tmp_path,
        env=fedsec_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def small_federation(tmp_path_factory) -> Path:
    """Four small generated sites, three days each, shared by the integration tests."""
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("federation") / "sites"
    generate_sites(out_dir=out, n_sites=4, n_days=3, seed=7, scale=0.15)
    return out


def pids_with_env(key: str, value: str) -> list[int]:
    """Processes whose environment holds KEY=VALUE: how a test finds what it started."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_started(tmp_path: Path) -> None:
    """Kill, by PID, every process still running with this test's own FLWR_HOME."""
    import signal

    for pid in pids_with_env("FLWR_HOME", str(tmp_path / ".flwr")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
