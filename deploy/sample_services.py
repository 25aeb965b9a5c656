"""Peak tasks (processes + threads) and memory of each compose service run as local processes.

    python -m deploy.sample_services --while-pid PID [--out FILE]

Why: docker-compose.yml caps each container's tasks (`pids_limit`, which counts threads) and
memory (`mem_limit`). Those caps are sized from what the services use in a real round: run
this beside the deployment test (tests/integration/test_deployment.py), which starts every
service of the compose file as local processes under a stand-in root `.../rootfs/SERVICE/`
(deploy/compose.py). A process belongs to SERVICE when its working folder or its environment
(FLWR_HOME, inherited by flwr's SuperExec and every ClientApp) lies under that root. Samples
every half second until PID exits; writes the peaks as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path

_SERVICE = re.compile(rb"/rootfs/(?P<service>[A-Za-z0-9_.-]+)(?:/|\x00|$)")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(pid: str, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _service(pid: str) -> str | None:
    """The compose service a local process stands for, or None."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd").encode()
    except OSError:
        cwd = b""
    for text in (cwd, _read(pid, "environ")):
        if match := _SERVICE.search(text):
            return match.group("service").decode()
    return None


def _threads_and_rss(pid: str) -> tuple[int, int]:
    status = _read(pid, "status").decode(errors="replace")
    threads = re.search(r"(?m)^Threads:\s+(\d+)", status)
    statm = _read(pid, "statm").split()
    rss = int(statm[1]) * PAGE if len(statm) > 1 else 0
    return (int(threads.group(1)) if threads else 0), rss


def sample() -> dict[str, dict[str, int]]:
    """Tasks, processes and resident bytes per service, now."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"tasks": 0, "processes": 0, "rss": 0})
    for pid in filter(str.isdigit, os.listdir("/proc")):
        service = _service(pid)
        if service is None:
            continue
        threads, rss = _threads_and_rss(pid)
        totals[service]["tasks"] += threads
        totals[service]["processes"] += 1
        totals[service]["rss"] += rss
    return totals


def watch(while_pid: int, *, interval: float = 0.5) -> dict[str, dict[str, float]]:
    """Peaks per service until `while_pid` exits."""
    peaks: dict[str, dict[str, float]] = defaultdict(
        lambda: {"peak_tasks": 0, "peak_processes": 0, "peak_rss_mib": 0.0}
    )
    samples = 0
    while Path(f"/proc/{while_pid}").exists():
        for service, now in sample().items():
            peak = peaks[service]
            peak["peak_tasks"] = max(peak["peak_tasks"], now["tasks"])
            peak["peak_processes"] = max(peak["peak_processes"], now["processes"])
            peak["peak_rss_mib"] = max(peak["peak_rss_mib"], round(now["rss"] / 2**20, 1))
        samples += 1
        time.sleep(interval)
    return {"samples": samples, **{name: dict(value) for name, value in sorted(peaks.items())}}


def main(argv: list[str] | None = None) -> int:
    """Sample until the given process exits, then write the peaks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--while-pid", type=int, required=True, help="stop when it exits")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="what ran (kept in the file)")
    args = parser.parse_args(argv)
    peaks = watch(args.while_pid)
    result = {"what": __doc__.splitlines()[0], "ran": args.note, "cpus": os.cpu_count(), **peaks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
