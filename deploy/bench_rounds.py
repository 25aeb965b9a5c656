"""Benchmark the Deployment Engine path on this machine: docker-compose.yml run as processes.

Prints start-up times, seconds per round (from results.json) and memory per data holder.

    .venv/bin/python -m deploy.bench_rounds --mode secagg --rounds 3
    .venv/bin/python -m deploy.bench_rounds --mode fedavg --rounds 3 --app /tmp/patched-app

`--app` runs another copy of the app (e.g. one with a change to measure); by default the
repository's own app is copied. Every process started is killed by PID on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common.files import write_json
from deploy.app_approval import app_hash, approve
from deploy.certs import write_pki
from deploy.compose import (
    approval_file,
    connection_entry,
    default_executable,
    load_compose,
    local_services,
    materialise,
    node_key_file,
    node_register_command,
    process_env,
    write_connection,
)
from deploy.node_keys import write_node_key
from deploy.procs import (
    Processes,
    free_ports,
    port_open,
    process_tree,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]

QUIET = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _name(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return " ".join(Path(p.decode()).name for p in parts[:2])


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Every 0.1 s: summed RSS of each data holder's process tree, and each flwr-clientapp's
    RSS and CPU time (a process's last <0.1 s before it exits is missed)."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peak = roots, dict.fromkeys(roots, 0.0)
        self.clientapp_peak = 0.0
        self.clientapp_cpu: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for name, pid in self.roots.items():
                tree = process_tree(pid)
                self.peak[name] = max(self.peak[name], sum(_rss_mib(p) for p in tree))
                for p in tree:
                    if "flwr-clientapp" in _name(p):
                        self.clientapp_peak = max(self.clientapp_peak, _rss_mib(p))
                        self.clientapp_cpu[p] = max(self.clientapp_cpu.get(p, 0.0), _cpu_seconds(p))


def copy_app(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("common", "client", "server"):
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["secagg", "fedavg"], default="secagg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--app", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("experiments/results/deploy_rounds"),
        help="folder for MODE.json (the figures the README's deployment-cost table quotes)",
    )
    args = parser.parse_args()
    from experiments.generator import generate_sites

    with tempfile.TemporaryDirectory(prefix="fedsec-bench-") as scratch:
        root = Path(scratch)
        generate_sites(out_dir=root / "sites", n_sites=3, n_days=3, seed=1, scale=args.scale)
        services = load_compose(
            env={"FEDSEC_PKI": str(root / "pki"), "FEDSEC_SITES": str(root / "sites")}
        )
        holders = sorted(n for n, s in services.items() if s.command[0] == "flower-supernode")
        write_pki(root / "pki", hosts=["superlink", "fleet-proxy", "localhost", "127.0.0.1"])
        # Each data holder's own key, where its compose service mounts it (`fedsec node keygen`).
        node_keys = {name: node_key_file(services[name]) for name in holders}
        for key in node_keys.values():
            write_node_key(key.parent, key.stem)
        need = [(s.name, p) for s in services.values() for p in s.ports]
        ports = dict(zip(need, free_ports(len(need)), strict=True))
        local = local_services(services, root=root, ports=ports)
        base = {**os.environ, **QUIET}
        processes = Processes(root / "logs")

        def start(name: str):
            materialise(local[name])
            return processes.start(
                name, local[name].argv, env=process_env(local[name], base), cwd=local[name].cwd
            )

        try:
            t0 = time.monotonic()
            start("superlink")
            wait_until(
                lambda: (
                    subprocess.run(local["superlink"].healthcheck, capture_output=True).returncode
                    == 0
                ),
                timeout=90,
                what="SuperLink",
            )
            healthy = time.monotonic() - t0
            start("fleet-proxy")
            wait_until(lambda: port_open(ports[("fleet-proxy", 8443)]), timeout=30, what="proxy")
            home = root / "model-team"
            write_connection(
                home,
                "bench",
                connection_entry(
                    address=f"127.0.0.1:{ports[('superlink', 8000)]}",
                    root_certificates=root / "pki" / "ca.crt",
                ),
            )
            t_register = time.monotonic()
            for name in holders:
                node_register_command(
                    node_keys[name].with_suffix(".pub"), connection="bench", flwr_home=home
                )
            registered = time.monotonic() - t_register
            t_nodes = time.monotonic()
            nodes = {name: start(name) for name in holders}
            for proc in nodes.values():
                proc.wait_for_log("SuperNode ID", timeout=90)
            active = time.monotonic() - t_nodes
            time.sleep(3)
            idle = {
                n: sum(_rss_mib(p) for p in process_tree(proc.pid)) for n, proc in nodes.items()
            }
            monitor = Sampler({n: proc.pid for n, proc in nodes.items()})
            monitor.start()
            app = args.app or copy_app(root / "app")
            # Each data holder approves the app by its hash (`fedsec app approve`).
            digest = app_hash(app)
            for name in holders:
                approve(approval_file(services[name]), hashes=[digest])
            out = root / "run"
            t_run = time.monotonic()
            result = subprocess.run(
                [
                    default_executable("flwr"),
                    "run",
                    str(app),
                    "bench",
                    "--stream",
                    "--run-config",
                    f"mode='{args.mode}' num-rounds={args.rounds} min-nodes={len(holders)} "
                    f"local-steps={args.local_steps} out-dir='{out}'",
                ],
                env={**base, "FLWR_HOME": str(home)},
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
            run_seconds = time.monotonic() - t_run
            monitor.stop.set()
            monitor.join()
            if result.returncode != 0:
                print(result.stdout[-3000:], result.stderr[-3000:])
                raise SystemExit(result.returncode)
            rounds = json.loads((out / "results.json").read_text())["rounds"]
        finally:
            processes.stop()
    print(
        f"mode={args.mode} rounds={args.rounds} nodes={len(holders)} "
        f"local-steps={args.local_steps} scale={args.scale} load={os.getloadavg()[0]:.2f}"
    )
    print(
        f"start-up: SuperLink healthy {healthy:.1f}s, 3 registrations {registered:.1f}s, "
        f"SuperNodes active {active:.1f}s"
    )
    print(f"flwr run (submit to end): {run_seconds:.1f}s")
    for entry in rounds:
        seconds = {k: round(v, 1) for k, v in entry.get("seconds", {}).items()}
        print(f"round {entry['round']}: {seconds}")
    print(
        "idle MiB per data holder (SuperNode + SuperExec): "
        + ", ".join(f"{n} {v:.0f}" for n, v in idle.items())
    )
    print(
        "peak MiB per data holder (incl. flwr-clientapp): "
        + ", ".join(f"{n} {v:.0f}" for n, v in monitor.peak.items())
        + f"; largest flwr-clientapp {monitor.clientapp_peak:.0f}"
    )
    cpu = monitor.clientapp_cpu
    print(
        f"flwr-clientapp processes: {len(cpu)}, CPU {sum(cpu.values()):.1f}s in all, "
        f"{sum(cpu.values()) / max(1, len(cpu)):.2f}s each"
    )
    later = [entry["seconds"] for entry in rounds[1:] if entry.get("seconds")]
    document = {
        "command": f"python -m deploy.bench_rounds --mode {args.mode} --rounds {args.rounds} "
        f"--local-steps {args.local_steps} --scale {args.scale}",
        "machine": {"cpus": os.cpu_count(), "load_average_1min_after": os.getloadavg()[0]},
        "mode": args.mode,
        "data_holders": len(holders),
        "startup_s": {
            "superlink_healthy": healthy,
            "registrations": registered,
            "supernodes_active": active,
        },
        "flwr_run_s": run_seconds,
        "rounds": [{"round": entry["round"], **entry.get("seconds", {})} for entry in rounds],
        "mean_round_s_after_first": {
            phase: sum(seconds[phase] for seconds in later) / len(later)
            for phase in ("train", "evaluate", "total")
        }
        if later
        else None,
        "idle_mib_per_data_holder": idle,
        "peak_mib_per_data_holder": dict(monitor.peak),
        "largest_clientapp_mib": monitor.clientapp_peak,
        "clientapp_processes": len(cpu),
        "clientapp_cpu_s_each": sum(cpu.values()) / max(1, len(cpu)),
    }
    path = write_json(args.out / f"{args.mode}.json", document)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
