"""Benchmark the Deployment Engine path on this machine: docker-compose.yml run as processes.

One federation (SuperLink, proxy, 3 data holders), then one `flwr run` per mode and
setting:
- `warm`: each data holder's launcher (deploy/launcher.py, the `*-launcher` services) and
  warm worker (client/worker.py, the `*-worker` services) running, as docker-compose.yml
  starts them: each message's ClientApp is forked warm and hands its work to the worker;
- `worker`: the worker only: every message's `flwr-clientapp` process imports flwr and the
  app itself, then hands its work to the worker;
- `cold`: neither: every message imports torch and reads the site again, as flwr's
  per-message ClientApp does.
Prints start-up times, seconds per round (from results.json), CPU per message and memory
per data holder, and writes them all to one results file.

    .venv/bin/python -m deploy.bench_rounds                       # fedavg+secagg, all three
    .venv/bin/python -m deploy.bench_rounds --modes secagg --workers warm --rounds 3

`--app` runs another copy of the app (e.g. one with a change to measure); by default the
repository's own app is copied. Every process started is killed by PID on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
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
    data_holders,
    default_executable,
    load_compose,
    local_services,
    materialise,
    node_key_file,
    node_register_command,
    process_env,
    write_connection,
)
from deploy.message_times import (
    CLIENTAPP_FIELDS,
    CLIENTAPP_LINE,
    RECEIVED_FIELDS,
    RECEIVED_LINE,
    line_pattern,
)
from deploy.node_keys import write_node_key
from deploy.procs import (
    Processes,
    free_ports,
    kill_pids,
    port_open,
    process_table,
    process_tree,
    wait_until,
)
from deploy.supernode import ENV_ACTIVE_POLL, SENT_LINE, active_poll_seconds

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


def _cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """CPU seconds (user + system) of a process, and of its reaped children if asked (fields
    14-17 of /proc/PID/stat); 0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = (11, 12, 13, 14) if reaped_children else (11, 12)
    return sum(int(fields[i]) for i in used) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root`'s process tree: each living process's own and its reaped
    children's (a launcher's finished children, flwr's finished ServerApp)."""
    return sum(_cpu_seconds(pid, reaped_children=True) for pid in process_tree(root))


def _tree_mib(pids: list[int]) -> float:
    return sum(_rss_mib(p) for root in pids for p in process_tree(root))


class Sampler(threading.Thread):
    """Every 0.1 s: summed RSS of each data holder's process tree; each flwr-clientapp's RSS
    and CPU time, and each launcher child's (a process's last <0.1 s before it exits is
    missed). A launcher child is the message's ClientApp; its flwr-clientapp only waits."""

    def __init__(self, roots: dict[str, list[int]], launchers: list[int] = ()) -> None:
        super().__init__(daemon=True)
        self.roots, self.peak = roots, dict.fromkeys(roots, 0.0)
        self.launchers = set(launchers)
        self.clientapp_peak = 0.0
        self.clientapp_cpu: dict[int, float] = {}
        self.child_cpu: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            table = process_table()  # one scan of /proc a tick: the sampler's own CPU
            for name, pids in self.roots.items():
                tree = [p for root in pids for p in process_tree(root, table)]
                self.peak[name] = max(self.peak[name], sum(_rss_mib(p) for p in tree))
                for p in tree:
                    if "flwr-clientapp" in _name(p):
                        self.clientapp_peak = max(self.clientapp_peak, _rss_mib(p))
                        self.clientapp_cpu[p] = max(self.clientapp_cpu.get(p, 0.0), _cpu_seconds(p))
            for launcher in self.launchers:
                for p in process_tree(launcher, table):
                    if p != launcher:
                        self.child_cpu[p] = max(self.child_cpu.get(p, 0.0), _cpu_seconds(p))


def copy_app(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for package in ("common", "client", "server"):
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=["fedavg", "secagg"], default=MODES)
    parser.add_argument("--workers", nargs="+", choices=WORKERS, default=WORKERS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--app", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="results file (the figures the README's deployment-rounds table quotes)",
    )
    return parser


MODES = ["fedavg", "secagg"]
WORKERS = ["warm", "worker", "cold"]
RESULTS = Path("experiments/results/deployment-rounds/rounds.json")


class Bench:
    """One federation on loopback, as docker-compose.yml describes it, run as processes."""

    def __init__(self, root: Path, *, scale: float) -> None:
        from experiments.generator import generate_sites

        self.root = root
        generate_sites(out_dir=root / "sites", n_sites=3, n_days=3, seed=1, scale=scale)
        self.services = load_compose(
            env={"FEDSEC_PKI": str(root / "pki"), "FEDSEC_SITES": str(root / "sites")}
        )
        self.holders = data_holders(self.services)
        self.workers = {name: f"{name}-worker" for name in self.holders}
        self.launchers = {name: f"{name}-launcher" for name in self.holders}
        write_pki(root / "pki", hosts=["superlink", "fleet-proxy", "localhost", "127.0.0.1"])
        # Each data holder's own key, where its compose service mounts it (`fedsec node keygen`).
        self.node_keys = {name: node_key_file(self.services[name]) for name in self.holders}
        for key in self.node_keys.values():
            write_node_key(key.parent, key.stem)
        need = [(s.name, p) for s in self.services.values() for p in s.ports]
        self.ports = dict(zip(need, free_ports(len(need)), strict=True))
        self.local = local_services(self.services, root=root, ports=self.ports)
        self.base = {**os.environ, **QUIET}
        self.processes = Processes(root / "logs")
        self.home = root / "model-team"
        self.startup: dict[str, float] = {}
        self.nodes: dict[str, object] = {}

    def start(self, name: str):
        local = self.local[name]
        materialise(local)
        return self.processes.start(
            name, local.argv, env=process_env(local, self.base), cwd=local.cwd
        )

    def up(self) -> None:
        t0 = time.monotonic()
        self.start("superlink")
        wait_until(
            lambda: (
                subprocess.run(self.local["superlink"].healthcheck, capture_output=True).returncode
                == 0
            ),
            timeout=90,
            what="SuperLink",
        )
        self.startup["superlink_healthy"] = time.monotonic() - t0
        self.start("fleet-proxy")
        wait_until(lambda: port_open(self.ports[("fleet-proxy", 8443)]), timeout=30, what="proxy")
        write_connection(
            self.home,
            "bench",
            connection_entry(
                address=f"127.0.0.1:{self.ports[('superlink', 8000)]}",
                root_certificates=self.root / "pki" / "ca.crt",
            ),
        )
        t_register = time.monotonic()
        for name in self.holders:
            node_register_command(
                self.node_keys[name].with_suffix(".pub"), connection="bench", flwr_home=self.home
            )
        self.startup["registrations"] = time.monotonic() - t_register
        t_nodes = time.monotonic()
        self.nodes = {name: self.start(name) for name in self.holders}
        for proc in self.nodes.values():
            proc.wait_for_log("SuperNode ID", timeout=90)
        self.startup["supernodes_active"] = time.monotonic() - t_nodes

    def work_dir(self, holder: str) -> Path:
        return self.root / "volumes" / f"{holder}-work"

    def running(self, names) -> list:
        return [p for p in self.processes.started if p.name in names and p.popen.poll() is None]

    def set_up(self, setting: str) -> float:
        """Start or stop workers and launchers for `setting`; the seconds until all are ready."""
        t0 = time.monotonic()
        want = {
            "warm": [*self.workers.values(), *self.launchers.values()],
            "worker": list(self.workers.values()),
            "cold": [],
        }[setting]
        self.stop_others(keep=want)
        have = {p.name for p in self.running(want)}
        procs = [self.start(name) for name in want if name not in have]
        for proc in procs:
            proc.wait_for_log("ready", timeout=120)
        return time.monotonic() - t0

    def stop_others(self, *, keep: list[str]) -> None:
        """Stop the workers and launchers not in `keep` and remove their folders."""
        from client.worker import socket_dir

        others = {*self.workers.values(), *self.launchers.values()} - set(keep)
        kill_pids([p.pid for p in self.running(others)])
        for holder in self.holders:
            if self.workers[holder] in others:
                shutil.rmtree(socket_dir(self.work_dir(holder)), ignore_errors=True)
            if self.launchers[holder] in others:
                shutil.rmtree(self.work_dir(holder) / "launch", ignore_errors=True)

    def roots(self, holder: str) -> list[int]:
        names = {self.workers[holder], self.launchers[holder]}
        return [self.nodes[holder].pid, *(p.pid for p in self.running(names))]

    def run(self, app: Path, *, mode: str, args: argparse.Namespace, tag: str) -> dict:
        time.sleep(3)
        idle = {n: _tree_mib(self.roots(n)) for n in self.holders}
        launchers = [p.pid for p in self.running(set(self.launchers.values()))]
        worker_logs = {name: len(self._log(name)) for name in self.workers.values()}
        node_logs = {name: len(self._log(name)) for name in self.holders}
        monitor = Sampler({n: self.roots(n) for n in self.holders}, launchers)
        monitor.start()
        out = self.root / f"run-{tag}"
        cpu_before = self.service_cpu()
        t_run = time.monotonic()
        result = subprocess.run(
            [
                default_executable("flwr"),
                "run",
                str(app),
                "bench",
                "--stream",
                "--run-config",
                f"mode='{mode}' num-rounds={args.rounds} min-nodes={len(self.holders)} "
                f"local-steps={args.local_steps} out-dir='{out}'",
            ],
            env={**self.base, "FLWR_HOME": str(self.home)},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        run_seconds = time.monotonic() - t_run
        cpu_after = self.service_cpu()
        monitor.stop.set()
        monitor.join()
        if result.returncode != 0:
            print(result.stdout[-3000:], result.stderr[-3000:], self.processes.tails())
            raise SystemExit(result.returncode)
        rounds = json.loads((out / "results.json").read_text())["rounds"]
        summary = _summary(rounds, run_seconds, idle, monitor)
        # What the warm workers themselves spent per message (their log's "handled in" lines).
        summary["worker_handled_s"] = _line_figures(
            (self._log(name)[offset:] for name, offset in worker_logs.items()),
            HANDLED,
            ("handled",),
        )
        node_texts = [self._log(name)[offset:] for name, offset in node_logs.items()]
        # Each reply at its SuperNode (deploy/supernode.py's line): how long after its creation
        # the node had it, and how long its upload took; all of the run's rounds.
        summary["supernode_sent_s"] = _line_figures(node_texts, SENT, ("at_node", "upload"))
        # Each message's way out, step by step (deploy/message_times.py); all rounds.
        summary["way_out_s"] = _way_out(node_texts)
        summary["service_cpu_s_per_round"] = {
            kind: round((cpu_after[kind] - cpu_before.get(kind, 0.0)) / len(rounds), 3)
            for kind in cpu_after
        }
        return summary

    def _log(self, name: str) -> str:
        running = self.running({name})
        return running[0].log() if running else ""

    def service_cpu(self) -> dict[str, float]:
        """CPU seconds so far of each kind of long-running service, summed over data holders:
        the coordinator (SuperLink, its SuperExec and ServerApps), the proxy, SuperNodes,
        workers, launchers (their message children included)."""
        kinds = {
            "coordinator": ["superlink"],
            "fleet_proxy": ["fleet-proxy"],
            "supernodes": list(self.holders),
            "workers": list(self.workers.values()),
            "launchers": list(self.launchers.values()),
        }
        return {
            kind: sum(_tree_cpu_seconds(p.pid) for p in self.running(set(names)))
            for kind, names in kinds.items()
        }


HANDLED = re.compile(r"fedsec-worker (\w+) handled in ([0-9.]+)s")
SENT = line_pattern(SENT_LINE)
WAY_OUT = {
    line_pattern(RECEIVED_LINE): RECEIVED_FIELDS,
    line_pattern(CLIENTAPP_LINE): CLIENTAPP_FIELDS,
}
"""Each step of a message's way out, in seconds after its creation (deploy/message_times.py):
the SuperNode's line, then its ClientApp's."""


def _line_figures(logs, pattern: re.Pattern, fields: tuple[str, ...]) -> dict[str, dict]:
    """Per message type (a line's first group), how many lines and each field's mean, median
    and max (the rest of its groups, in seconds), over new log text."""
    seen: dict[str, list[tuple[float, ...]]] = {}
    for text in logs:
        for kind, *values in pattern.findall(text):
            seen.setdefault(kind, []).append(tuple(float(value) for value in values))
    figures: dict[str, dict] = {}
    for kind, rows in seen.items():
        entry: dict[str, float] = {"lines": len(rows)}
        for index, field in enumerate(fields):
            column = [row[index] for row in rows]
            entry[f"{field}_s_mean"] = statistics.fmean(column)
            entry[f"{field}_s_median"] = statistics.median(column)
            entry[f"{field}_s_max"] = max(column)
        figures[kind] = entry
    return figures


def _way_out(logs) -> dict[str, dict]:
    """Both way-out lines of the SuperNodes' logs, merged per message type."""
    texts = list(logs)
    merged: dict[str, dict] = {}
    for pattern, fields in WAY_OUT.items():
        for kind, figures in _line_figures(texts, pattern, fields).items():
            lines = figures.pop("lines")
            merged.setdefault(kind, {})[f"{fields[0]}_lines"] = lines
            merged[kind].update(figures)
    return merged


def _message_means(rounds: list[dict]) -> dict[str, dict[str, float]]:
    """Each `messages` figure of results.json (server/polling.py), averaged over the rounds
    after the first."""
    sums: dict[str, dict[str, list[float]]] = {}
    for entry in rounds[1:]:
        for phase, figures in entry.get("messages", {}).items():
            for key, value in figures.items():
                sums.setdefault(phase, {}).setdefault(key, []).append(float(value))
    return {
        phase: {key: sum(values) / len(values) for key, values in figures.items()}
        for phase, figures in sums.items()
    }


def _round_means(later: list[dict]) -> dict[str, float]:
    """Mean seconds per phase over the rounds after the first, and the period: a round's total
    plus the gap before it (the ServerApp's recording of the round before, results.json's
    "before"), i.e. from one round's start to the next's."""
    means = {
        phase: statistics.fmean(seconds[phase] for seconds in later)
        for phase in ("train", "evaluate", "total", "before")
        if all(phase in seconds for seconds in later)
    }
    if "before" in means:
        means["period"] = means["total"] + means["before"]
    return means


def _summary(rounds: list[dict], run_seconds: float, idle: dict, monitor: Sampler) -> dict:
    later = [entry["seconds"] for entry in rounds[1:] if entry.get("seconds")]
    cpu = monitor.clientapp_cpu
    return {
        "flwr_run_s": run_seconds,
        "rounds": [{"round": entry["round"], **entry.get("seconds", {})} for entry in rounds],
        "mean_round_s_after_first": _round_means(later) if later else None,
        # Per phase: exchanges, push seconds, and each reply's round trip split into out (to
        # the reply's creation at the node) and back (to the ServerApp's collection).
        "messages_after_first": _message_means(rounds),
        "idle_mib_per_data_holder": idle,
        "peak_mib_per_data_holder": dict(monitor.peak),
        "largest_clientapp_mib": monitor.clientapp_peak,
        "clientapp_processes": len(cpu),
        "clientapp_cpu_s_each": sum(cpu.values()) / max(1, len(cpu)),
        "launched_children": len(monitor.child_cpu),
        "launched_child_cpu_s_each": sum(monitor.child_cpu.values())
        / max(1, len(monitor.child_cpu)),
    }


def _print_run(tag: str, run: dict) -> None:
    print(f"--- {tag}: flwr run (submit to end) {run['flwr_run_s']:.1f}s")
    for entry in run["rounds"]:
        print(f"round {entry['round']}: " + str({k: round(v, 1) for k, v in entry.items()}))
    print(
        "idle MiB per data holder: "
        + ", ".join(f"{n} {v:.0f}" for n, v in run["idle_mib_per_data_holder"].items())
        + "; peak: "
        + ", ".join(f"{n} {v:.0f}" for n, v in run["peak_mib_per_data_holder"].items())
    )
    print("CPU s per round: " + str(run["service_cpu_s_per_round"]))
    for phase, figures in run["messages_after_first"].items():
        print(
            f"{phase}: {figures.get('exchanges', 0):.0f} exchanges, push "
            f"{figures.get('push_s_mean', float('nan')):.2f}s, round trip "
            f"{figures.get('round_trip_s_mean', float('nan')):.2f}s = out "
            f"{figures.get('out_s_mean', float('nan')):.2f}s + back "
            f"{figures.get('back_s_mean', float('nan')):.2f}s"
        )
    for kind, figures in run["way_out_s"].items():
        steps = ", ".join(
            f"{field} {figures[f'{field}_s_median']:.2f}"
            for fields in WAY_OUT.values()
            for field in fields
            if f"{field}_s_median" in figures
        )
        print(f"{kind} message's way out, median s after its creation: {steps}")
    for kind, figures in run["supernode_sent_s"].items():
        print(
            f"{kind} reply at its node {figures['at_node_s_mean']:.2f}s after creation, "
            f"uploaded in {figures['upload_s_mean']:.2f}s ({figures['lines']} replies)"
        )
    for handler, figures in run["worker_handled_s"].items():
        print(
            f"worker {handler}: {figures['lines']} messages, "
            f"{figures['handled_s_mean']:.2f}s each (median {figures['handled_s_median']:.2f}s)"
        )


def _document(args: argparse.Namespace, bench: Bench, runs: dict, ready_s: dict) -> dict:
    poll = os.environ.get(ENV_ACTIVE_POLL)
    return {
        "command": (f"{ENV_ACTIVE_POLL}={poll} " if poll else "")
        + "python -m deploy.bench_rounds --modes "
        + " ".join(args.modes)
        + " --workers "
        + " ".join(args.workers)
        + f" --rounds {args.rounds} --local-steps {args.local_steps} --scale {args.scale}",
        "machine": {"cpus": os.cpu_count(), "load_average_1min_after": os.getloadavg()[0]},
        "data_holders": len(bench.holders),
        # How often a SuperNode polls while a run is on (deploy/supernode.py).
        "active_poll_s": active_poll_seconds(),
        "startup_s": {**bench.startup, "ready_s": ready_s},
        "table": {
            tag: {
                "mean_round_s_after_first": (run["mean_round_s_after_first"] or {}).get("total"),
                # Start to next start: the round plus the ServerApp's recording before it.
                "mean_period_s_after_first": (run["mean_round_s_after_first"] or {}).get("period"),
                "cpu_s_per_message": run["clientapp_cpu_s_each"]
                + run["launched_child_cpu_s_each"]
                * run["launched_children"]
                / max(1, run["clientapp_processes"]),
                "idle_mib_per_data_holder": max(run["idle_mib_per_data_holder"].values()),
                "peak_mib_per_data_holder": max(run["peak_mib_per_data_holder"].values()),
                "cpu_s_per_round": round(sum(run["service_cpu_s_per_round"].values()), 2),
                # How many of the machine's cores the federation kept busy over the run, on
                # average: well under the core count means its steps wait on each other.
                "cores_busy": round(
                    sum(run["service_cpu_s_per_round"].values())
                    * len(run["rounds"])
                    / run["flwr_run_s"],
                    2,
                ),
                "load_average_1min_after": run["load_average_1min_after"],
            }
            for tag, run in runs.items()
        },
        "runs": runs,
    }


def main() -> None:
    args = _parser().parse_args()
    runs: dict[str, dict] = {}
    ready_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fedsec-bench-") as scratch:
        bench = Bench(Path(scratch), scale=args.scale)
        try:
            bench.up()
            app = args.app or copy_app(bench.root / "app")
            # Each data holder approves the app by its hash (`fedsec app approve`).
            digest = app_hash(app)
            for name in bench.holders:
                approve(approval_file(bench.services[name]), hashes=[digest])
            for workers in args.workers:
                ready_s[workers] = bench.set_up(workers)
                for mode in args.modes:
                    tag = f"{mode}-{workers}"
                    runs[tag] = bench.run(app, mode=mode, args=args, tag=tag)
                    runs[tag]["load_average_1min_after"] = os.getloadavg()[0]
                    _print_run(tag, runs[tag])
                    # After every run: a run cut short still leaves the ones before it.
                    write_json(args.out, _document(args, bench, runs, ready_s))
        finally:
            bench.processes.stop()
    print(json.dumps(_document(args, bench, runs, ready_s)["table"], indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
