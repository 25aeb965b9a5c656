"""Beyond one machine: the same federation on in-process Ray and on a Ray cluster.

    fedsec experiment ray [--full | --tiny]

A Ray head is started on loopback (`ray start --head --block`, its own session, its own temp
folder), then the same seeded simulation runs twice as `fedsec simulate` child processes:
(a) with Ray started inside the command, (b) with `--ray-address` pointing at the head, so
the ClientApp actors run in the cluster's workers. The final models are compared weight by
weight, with the sites' AUC and seconds per round (rounds >= 2). While each run goes, every
process of both trees is checked for sockets listening beyond 127.0.0.1; afterwards the head
is stopped by its process group and nothing it started may remain.

Ray on Linux replaces `--node-ip-address 127.0.0.1` with the machine's routable address
and binds its GCS and raylet on every interface; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`
keeps a single-machine cluster on loopback (set here for the head and the cluster run).
The local runs get neither that variable nor `RAY_ADDRESS`: they check that `fedsec simulate`
on its own starts a private Ray on loopback rather than joining the head `ray start` left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.lab import RESULTS_ROOT, Column, Results, cli_main, round_seconds

log = logging.getLogger("fedsec.experiments")

NAME = "ray"
TITLE = "Beyond one machine: local Ray vs a Ray cluster (head on loopback)"
SEED = 0
LOOPBACK = "127.0.0.1"
HEAD_START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 1_800.0


@dataclass(frozen=True)
class Plan:
    n_sites: int
    num_rounds: int
    mode: str
    head_cpus: int = 2
    scale: float = 0.05
    n_days: int = 2
    local_steps: int = 10


PLANS = {
    "tiny": Plan(n_sites=3, num_rounds=2, mode="fedavg"),
    "default": Plan(n_sites=8, num_rounds=3, mode="secagg"),
    "full": Plan(n_sites=16, num_rounds=3, mode="secagg"),
}


def run(*, size: str = "default", root: Path = RESULTS_ROOT) -> dict[str, Any]:
    plan = PLANS[size]
    # Short path: Ray's unix sockets live under its temp folder (108-byte limit).
    with tempfile.TemporaryDirectory(prefix="fedsec-ray-", ignore_cleanup_errors=True) as temp:
        from experiments.generator import generate_sites

        temp_dir = Path(temp)
        data = temp_dir / "sites"
        generate_sites(
            out_dir=data, n_sites=plan.n_sites, n_days=plan.n_days, seed=SEED, scale=plan.scale
        )
        # Each arm gets its own copy: sites keep per-round state (fragility probes) in work/.
        shutil.copytree(data, temp_dir / "sites-cluster")
        shutil.copytree(data, temp_dir / "sites-repeat")
        env = _child_env(temp_dir)
        log.info(
            "ray: %d sites, %d rounds, %s; (a) Ray inside the command ...",
            plan.n_sites,
            plan.num_rounds,
            plan.mode,
        )
        local = _simulate(plan, data, temp_dir / "local", env=env, ray_address=None)
        with RayHead(temp_dir / "ray", env=env, num_cpus=plan.head_cpus) as head:
            log.info(
                "ray: head up on %s in %.1f s; (b) the same run against it ...",
                head.address,
                head.startup_s,
            )
            cluster = _simulate(
                plan,
                temp_dir / "sites-cluster",
                temp_dir / "cluster",
                env=env,
                ray_address=head.address,
                watch_roots=(head.pid,),
            )
            head.seen.update(cluster.pop("seen").get(head.pid, {}))  # workers too
        cluster["head"] = head.report()
        log.info(
            "ray: head stopped; %d of its processes left, %d sockets beyond loopback",
            len(head.leftover),
            len(cluster["non_loopback_listeners"]),
        )
        arms = {"local": local, "cluster": cluster}
        if plan.mode == "secagg":  # SecAgg+ rounds stochastically: how far apart are two locals?
            log.info("ray: (a) again, for the run-to-run spread of SecAgg+ ...")
            arms["local-repeat"] = _simulate(
                plan,
                temp_dir / "sites-repeat",
                temp_dir / "local-repeat",
                env=env,
                ray_address=None,
            )
    payload = _compare(plan, arms)
    _write(Results(NAME, TITLE, root), payload, size=size)
    return payload


# --- the Ray head ------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def head_argv(*, port: int, temp_dir: Path, num_cpus: int, extra_ports: list[int]) -> list[str]:
    """`ray start --head` on loopback; every port it opens is named, so none collides."""
    client_port, agent_port, agent_grpc_port, metrics_port, runtime_env_port = extra_ports
    ray = Path(sys.executable).with_name("ray")
    return [
        str(ray),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        LOOPBACK,
        "--port",
        str(port),
        "--num-cpus",
        str(num_cpus),
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
        "--temp-dir",
        str(temp_dir),
        "--ray-client-server-port",
        str(client_port),
        "--dashboard-agent-listen-port",
        str(agent_port),
        "--dashboard-agent-grpc-port",
        str(agent_grpc_port),
        "--metrics-export-port",
        str(metrics_port),
        "--runtime-env-agent-port",
        str(runtime_env_port),
    ]


@dataclass
class RayHead:
    """A `ray start --head --block` child in its own session; stopped by its process group."""

    temp_dir: Path
    env: dict[str, str]
    num_cpus: int = 2
    port: int = 0
    pid: int = 0
    startup_s: float = 0.0
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create time
    leftover: list[int] = field(default_factory=list)
    _popen: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def __enter__(self) -> RayHead:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.port, *extra = free_ports(6)
        argv = head_argv(
            port=self.port, temp_dir=self.temp_dir, num_cpus=self.num_cpus, extra_ports=extra
        )
        started = time.monotonic()
        with (self.temp_dir / "head.log").open("ab") as log_file:
            self._popen = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self._popen.pid
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self, started: float) -> None:
        log_path = self.temp_dir / "head.log"
        while "Ray runtime started" not in log_path.read_text(errors="replace"):
            if self._popen.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {self._popen.returncode}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() - started > HEAD_START_TIMEOUT_S:
                raise TimeoutError(f"ray head not up within {HEAD_START_TIMEOUT_S:.0f} s")
            time.sleep(0.3)
        with socket.create_connection((LOOPBACK, self.port), timeout=5):
            pass
        self.startup_s = time.monotonic() - started
        self.remember()

    def remember(self) -> list[Any]:
        """Note every process of the head's tree (its workers come and go during a run)."""
        tree = process_tree(self.pid)
        for process in tree:
            self.seen.setdefault(process.pid, process.create_time())
        return tree

    def stop(self) -> None:
        """SIGTERM the head's process group and tree, SIGKILL what is left after 15 s."""
        import psutil

        if not self.pid:
            return
        self.remember()
        tree = process_tree(self.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            for process in tree:
                with suppress(psutil.NoSuchProcess):
                    process.send_signal(sig)
            _, alive = psutil.wait_procs(tree, timeout=15)
            if not alive:
                break
        if self._popen is not None:
            self._popen.wait(timeout=15)
        self.leftover = [pid for pid, created in self.seen.items() if _alive(pid, created)]
        self.leftover += [
            process.pid
            for process in _mentioning(str(self.temp_dir))
            if process.pid not in self.leftover
        ]

    def report(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "startup_s": self.startup_s,
            "processes_seen": len(self.seen),
            "leftover_after_stop": self.leftover,
        }


def process_tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int, created: float) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _mentioning(text: str) -> list[Any]:
    """Live processes whose command line names `text` (the head's temp folder)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(
                process.info["cmdline"] or ()
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


# --- one simulation ----------------------------------------------------------------------------


def _child_env(temp_dir: Path) -> dict[str, str]:
    from experiments.simulate import QUIET_ENV

    env = {
        **os.environ,
        **QUIET_ENV,
        "FLWR_HOME": str(temp_dir / ".flwr"),
        "FLWR_LOG_LEVEL": "WARNING",
        "RAY_TMPDIR": str(temp_dir),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    env.pop("RAY_ADDRESS", None)
    return env


class Watch:
    """Samples process trees: sockets listening beyond loopback, ClientApp actors seen."""

    def __init__(self, roots: list[int], interval: float = 1.0) -> None:
        self.roots = roots
        self.interval = interval
        self.listeners: set[tuple[str, str, int]] = set()
        self.actors: dict[int, int] = {}  # actor pid -> the root whose tree it was in
        self.seen: dict[int, dict[int, float]] = {root: {} for root in roots}  # pid -> created
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        import psutil

        for root in self.roots:
            for process in process_tree(root):
                try:
                    self.seen[root].setdefault(process.pid, process.create_time())
                    if "ClientAppActor" in " ".join(process.cmdline()):
                        self.actors[process.pid] = root
                    for conn in process.net_connections(kind="inet"):
                        if conn.status == psutil.CONN_LISTEN and not _loopback(conn.laddr.ip):
                            self.listeners.add((process.name(), conn.laddr.ip, conn.laddr.port))
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue


def _loopback(ip: str) -> bool:
    return ip.removeprefix("::ffff:").startswith("127.") or ip == "::1"


def _simulate(
    plan: Plan,
    data: Path,
    out: Path,
    *,
    env: dict[str, str],
    ray_address: str | None,
    watch_roots: tuple[int, ...] = (),
) -> dict[str, Any]:
    """`fedsec simulate` as a child process; its results, final weights and what was seen."""
    from common.model import model_from_bytes, model_to_ndarrays

    argv = [
        sys.executable,
        "-m",
        "fedsec",
        "simulate",
        "--data",
        str(data),
        "--out",
        str(out),
        "--rounds",
        str(plan.num_rounds),
        "--mode",
        plan.mode,
        "--seed",
        str(SEED),
        "--local-steps",
        str(plan.local_steps),
        "--set",
        "site-html=off",
    ]
    if ray_address:
        argv += ["--ray-address", ray_address]
    else:  # what a user's plain `fedsec simulate` sees: its own defaults must keep Ray private
        env = {
            key: value
            for key, value in env.items()
            if key not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log")
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        child = subprocess.Popen(
            argv,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with _killed_on_error(child), Watch([child.pid, *watch_roots]) as watch:
            returncode = child.wait(timeout=RUN_TIMEOUT_S)
    wall_s = time.monotonic() - started
    if returncode != 0:
        raise RuntimeError(
            f"fedsec simulate exited with {returncode}:\n"
            + log_path.read_text(errors="replace")[-4000:]
        )
    results = json.loads((out / "results.json").read_text())
    model, _ = model_from_bytes((out / "model.npz").read_bytes())
    actors_in = {"command" if root == child.pid else "head" for root in watch.actors.values()}
    return {
        "results": results,
        "arrays": model_to_ndarrays(model),
        "wall_s": wall_s,
        "actors_seen": len(watch.actors),
        "actors_in": sorted(actors_in),
        "non_loopback_listeners": sorted(watch.listeners),
        "seen": {root: pids for root, pids in watch.seen.items() if root != child.pid},
        "command": " ".join(argv[3:]).replace(str(data.parent), "$TMP"),
    }


@contextmanager
def _killed_on_error(child: subprocess.Popen):
    try:
        yield
    except BaseException:
        for process in reversed(process_tree(child.pid)):
            process.kill()
        child.wait(timeout=15)
        raise


# --- comparison and results --------------------------------------------------------------------


def _mean_auc(results: dict) -> float:
    sites = results["rounds"][-1]["sites"]
    values = [metrics["auc"] for metrics in sites.values() if "auc" in metrics]
    return float(np.mean(values)) if values else float("nan")


def _max_abs_diff(left: list[np.ndarray], right: list[np.ndarray]) -> list[float]:
    return [
        float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(left, right, strict=True)
    ]


ARM_LABELS = {
    "local": "Ray inside the command",
    "cluster": "Ray cluster (--ray-address)",
    "local-repeat": "Ray inside the command, again",
}


def _compare(plan: Plan, arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row per arm; weights compared with the first local run."""
    local, cluster = arms["local"], arms["cluster"]
    diffs = {arm: _max_abs_diff(local["arrays"], found["arrays"]) for arm, found in arms.items()}
    rows = []
    for arm, found in arms.items():
        timing = round_seconds(found["results"])
        rows.append(
            {
                "arm": arm,
                "label": ARM_LABELS[arm],
                **timing,
                "wall_s": found["wall_s"],
                "over_local": timing["mean_round_s"]
                / round_seconds(local["results"])["mean_round_s"],
                "mean_auc": _mean_auc(found["results"]),
                "rounds_done": len(found["results"]["rounds"]),
                "actors_seen": found["actors_seen"],
                "actors_in": "+".join(found["actors_in"]) or "none seen",
                "non_loopback_listeners": len(found["non_loopback_listeners"]),
                "max_abs_diff": max(diffs[arm]),
            }
        )
    by_arm = {row["arm"]: row for row in rows}
    head = cluster["head"]
    summary = {
        "max_abs_weight_diff": max(diffs["cluster"]),
        "identical": max(diffs["cluster"]) == 0.0,
        "repeat_max_abs_weight_diff": (
            max(diffs["local-repeat"]) if "local-repeat" in diffs else None
        ),
        "auc_diff": by_arm["cluster"]["mean_auc"] - by_arm["local"]["mean_auc"],
        "cluster_over_local_round_s": by_arm["cluster"]["over_local"],
        "head_startup_s": head["startup_s"],
        "head_leftover_after_stop": head["leftover_after_stop"],
        "non_loopback_listeners": [
            item for found in arms.values() for item in found["non_loopback_listeners"]
        ],
    }
    return {
        "plan": plan.__dict__,
        "rows": rows,
        "summary": summary,
        "head": head,
        "commands": {arm: found["command"] for arm, found in arms.items()},
        "max_abs_diff_per_array": diffs,
    }


COLUMNS = (
    Column("label", "Ray"),
    Column("mean_round_s", "s/round (rounds >= 2)", "{:.1f}"),
    Column("first_round_s", "round 1 s (cold)", "{:.1f}"),
    Column("over_local", "vs local", "{:.2f}x"),
    Column("wall_s", "command wall s", "{:.0f}"),
    Column("mean_auc", "mean site AUC (last round)", "{:.4f}"),
    Column("max_abs_diff", "max |Δw| vs local", "{:.2e}"),
    Column("actors_seen", "actors seen", "{:d}"),
    Column("actors_in", "actors ran in"),
    Column("non_loopback_listeners", "sockets beyond 127.0.0.1", "{:d}"),
)

HOWTO = """\
On a real cluster (every machine: the same fedsec checkout and venv at the same path, and the
site folders at the same path, e.g. on a shared filesystem, since each actor opens its site
by the run's `data-dir`; Ray has no authentication, so its ports must only be reachable on a
private network):

```
# the head machine
ray start --head --node-ip-address HEAD_IP --port 6379 --num-cpus 8 \\
    --include-dashboard false --disable-usage-stats
# every worker machine
ray start --address HEAD_IP:6379 --num-cpus 8 --disable-usage-stats
# on the head machine: the ServerApp runs here, the sites' ClientApps on the workers
fedsec simulate --data /shared/sites --out runs/cluster --mode secagg --ray-address HEAD_IP:6379
# afterwards, on every machine
ray stop
```

Here the head runs on loopback only: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head
--block --node-ip-address 127.0.0.1 --port PORT --num-cpus 2 --include-dashboard false
--disable-usage-stats --temp-dir TMP` plus explicit free ports for the client server and
agents. Without that variable Ray 2.55 replaces 127.0.0.1 with the machine's routable address
and its GCS and raylet listen on every interface. `fedsec simulate` without `--ray-address`
sets both itself: it starts a private Ray (address `local`, so it never joins a head that
`ray start` left in Ray's temp folder) with that variable, so its Ray listens on loopback only;
the two local rows above ran without either in their environment."""


def _write(results: Results, payload: dict[str, Any], *, size: str) -> None:
    rows, summary, plan = payload["rows"], payload["summary"], payload["plan"]
    results.write_json(payload)
    results.write_csv(rows, "runs.csv")
    results.add_table(
        "Local Ray vs a Ray cluster: the same seeded run", rows, COLUMNS, notes=_notes(payload)
    )
    results.plot("ray.png", lambda figure: _draw(figure, rows))
    intro = (
        f"{plan['n_sites']} generated sites, {plan['num_rounds']} rounds of {plan['mode']} "
        f"with seed {SEED}, run by `fedsec simulate`: once with Ray started inside the "
        f"command, once against a Ray head (`ray start --head`, {plan['head_cpus']} CPUs, "
        f"loopback only) via `--ray-address`"
        f"{' and, for SecAgg+, once more inside the command' if len(rows) > 2 else ''}. "
        f"{_reading(summary)}\n\n{HOWTO}"
    )
    results.write_table_md(
        size=size, command="fedsec experiment ray [--full]", intro=intro, plots=["ray.png"]
    )


def _reading(summary: dict[str, Any]) -> str:
    same = (
        "bit for bit the same final model"
        if summary["identical"]
        else f"final models within max |Δw| = {summary['max_abs_weight_diff']:.2e}"
    )
    if summary["repeat_max_abs_weight_diff"] is not None:
        same += (
            f" of the local run, while two local runs with the same seed differ by "
            f"{summary['repeat_max_abs_weight_diff']:.2e} (SecAgg+ quantises with "
            f"stochastic rounding from NumPy's unseeded global generator, so no two SecAgg+ "
            f"runs are bit-identical, on any Ray)"
        )
    leftover = summary["head_leftover_after_stop"]
    listeners = summary["non_loopback_listeners"]
    return (
        f"The cluster gave {same} (mean AUC difference {summary['auc_diff']:+.4f}) at "
        f"{summary['cluster_over_local_round_s']:.2f}x the local seconds per round; the head "
        f"took {summary['head_startup_s']:.1f} s to start. After stopping the head's process "
        f"group {len(leftover)} of its processes were left"
        f"{' (' + ', '.join(map(str, leftover)) + ')' if leftover else ''}, and "
        f"{len(listeners)} sockets listened beyond 127.0.0.1 during the runs."
    )


def _notes(payload: dict[str, Any]) -> list[str]:
    commands = " and ".join(f"`fedsec {command}`" for command in payload["commands"].values())
    return [
        f"Commands (data and Ray temp folders under a temporary `$TMP`): {commands}.",
        "Seconds are means over rounds >= 2 on a shared, noisy 2-core machine: read the "
        "ratio. `actors seen` counts ClientApp actor processes sampled once a second in the "
        "command's own process tree (local) or the head's (cluster).",
    ]


def _draw(figure, rows: list[dict[str, Any]]) -> None:
    axes = figure.subplots()
    labels = [row["arm"] for row in rows]
    axes.bar(
        labels,
        [row["mean_round_s"] for row in rows],
        color=["tab:blue", "tab:orange", "tab:cyan"][: len(rows)],
    )
    for index, row in enumerate(rows):
        axes.annotate(
            f"AUC {row['mean_auc']:.3f}", (index, row["mean_round_s"]), ha="center", va="bottom"
        )
    axes.set(
        ylabel="seconds per round (rounds >= 2)",
        title="the same seeded run: local Ray vs a Ray cluster",
    )


if __name__ == "__main__":
    cli_main(__name__, run, __doc__)
