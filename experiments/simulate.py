"""`fedsec simulate`: a federation of site folders on flwr's Simulation Engine, in this process."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from client.site import find_site_dirs, load_site_config
from common.config import ConfigError
from common.run_config import RunSettings

QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


def ensure_empty_output(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            f"{out_dir}: output folder exists and is not empty "
            "(fix: pass a new --out, or remove the old run)"
        )


def validate_sites(data_dir: Path) -> list[Path]:
    """Check every site configuration before anything is written."""
    sites = find_site_dirs(data_dir)
    site_ids: dict[str, Path] = {}
    for site in sites:
        site_id = load_site_config(site).site_id
        if site_id in site_ids:
            raise ConfigError(
                f"{site / 'site.toml'}: field site_id: '{site_id}' is also used by "
                f"{site_ids[site_id]} (fix: give every site its own site_id)"
            )
        site_ids[site_id] = site
    return sites


def _write_app_dir(app_dir: Path, run_config: dict[str, Any]) -> None:
    """A minimal flwr app folder whose pyproject carries this run's full config to every node."""
    project = {
        "project": {"name": "fedsec-simulation", "version": "0.1.0"},
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedsec",
                    "components": {"serverapp": "server.app:app", "clientapp": "client.app:app"},
                    "config": run_config,
                }
            }
        },
    }
    (app_dir / "pyproject.toml").write_bytes(tomli_w.dumps(project).encode())


def poll_nodes_in_one_pass() -> None:
    """Make the Simulation Engine find each node's next message in one pass over the store.

    flwr 1.42's engine (`vce_api.add_messages_to_queue`) polls every 0.1 s, and each poll asks
    the in-memory link state for every node's message in turn; each ask scans every stored
    message and re-checks its expiry. That is nodes x messages work ten times a second, all
    round long, in the coordinator's process: at 500 sites it held the GIL most of the time
    and a site's round cost 2.4x the CPU it cost at 100. This replacement scans the store
    once per poll and hands each node at most one message, as flwr's does (the first one not
    yet delivered, in the order they were stored). Any other link state keeps flwr's loop.
    """
    from flwr.server.superlink.fleet.vce import vce_api

    if getattr(vce_api.add_messages_to_queue, "one_pass", False):
        return
    flwr_loop = vce_api.add_messages_to_queue

    def add_messages_to_queue(state, queue, nodes_mapping, f_stop) -> None:
        from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

        if not isinstance(state, InMemoryLinkState):
            flwr_loop(state, queue, nodes_mapping, f_stop)
            return
        nodes = set(nodes_mapping.keys())
        while not f_stop.is_set():
            for message in next_message_per_node(state, nodes):
                queue.put(message)
            f_stop.wait(0.1)

    add_messages_to_queue.one_pass = True  # type: ignore[attr-defined]
    vce_api.add_messages_to_queue = add_messages_to_queue


def next_message_per_node(state, nodes: set[int]) -> list:
    """Each node's first undelivered message in `state` (an InMemoryLinkState), now marked
    delivered; expired messages are dropped first, as flwr's own query does."""
    from flwr.supercore.date import now

    found: dict[int, Any] = {}
    with state.lock:
        stored = list(state.message_ins_store)
        state._check_stored_messages(set(stored))
        for message_id in stored:
            message = state.message_ins_store.get(message_id)
            if message is None:
                continue
            node = message.metadata.dst_node_id
            if node in nodes and node not in found and message.metadata.delivered_at == "":
                found[node] = message
    delivered_at = now().isoformat()
    for message in found.values():
        message.metadata.delivered_at = delivered_at
    return list(found.values())


def quiet_frameworks() -> None:
    """flwr and Ray are chatty: keep their warnings and errors, drop the rest."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("flwr", "ray", "filelock"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def run_settings(*, data_dir: Path, out_dir: Path, overrides: dict[str, Any]) -> RunSettings:
    """The run's settings over the sites in `data_dir`, checked before anything runs."""
    sites = validate_sites(data_dir)
    settings = RunSettings.from_run_config(
        {
            **RunSettings().to_run_config(),
            **overrides,
            "data-dir": str(data_dir.resolve()),
            "out-dir": str(out_dir.resolve()),
            "min-nodes": len(sites),
        }
    )
    if settings.mode == "secagg":
        settings.secagg_shares(num_nodes=len(sites))  # fail now, not inside the ServerApp
        settings.check_secagg_capacity(num_nodes=len(sites))
    return settings


def run_in_process(*, data_dir: Path, out_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The same federation with every ClientApp call in this thread: seconds, not Ray's start.

    See `experiments.inprocess` for what this covers and what it does not.
    """
    settings = run_settings(data_dir=data_dir, out_dir=out_dir, overrides=overrides)
    quiet_frameworks()
    from flwr.app import Context, RecordDict

    import client.app
    import server.app
    from experiments.inprocess import LocalGrid

    quiet_frameworks()
    run_config = settings.to_run_config()
    grid = LocalGrid(client_app=client.app.app, num_nodes=settings.min_nodes, run_config=run_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = Context(
        run_id=grid.run_id,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    server.app.app(grid, context)
    return _results(out_dir)


def _results(out_dir: Path) -> dict[str, Any]:
    results_path = out_dir / "results.json"
    if not results_path.is_file():
        raise RuntimeError(f"the simulation ended without writing {results_path}; see the log")
    return json.loads(results_path.read_text())


def run_simulation(
    *,
    data_dir: Path,
    out_dir: Path,
    overrides: dict[str, Any],
    ray_address: str | None = None,
    cpus_per_site: float = 1.0,
) -> dict[str, Any]:
    """Run a whole federated training over the sites in `data_dir`; returns results.json.

    The caller checks that `out_dir` is new (it may already hold the generated sites).
    """
    settings = run_settings(data_dir=data_dir, out_dir=out_dir, overrides=overrides)
    if ray_address is None:
        # A private Ray needs no network, but on Linux Ray binds its GCS and raylet to the
        # host's routable address unless told it is a single-machine install (read at import).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    quiet_frameworks()
    from flwr.app import Context, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supercore.telemetry import EventType

    import client.app
    import server.app

    quiet_frameworks()  # again: importing flwr resets its logger's level
    poll_nodes_in_one_pass()

    run_config = settings.to_run_config()
    run = Run.create_empty(run_id=generate_rand_int_from_bytes(8))
    run.primary_task_id = generate_rand_int_from_bytes(8)
    run.federation_id = NOOP_FEDERATION_ID
    # What flwr's own `run_simulation` sets for an in-process run (its messages need it).
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    init_args: dict[str, Any] = {
        "logging_level": "ERROR",
        "log_to_driver": False,
        "include_dashboard": False,
    }
    # Without an address Ray would join whatever cluster `ray start` left on this host;
    # "local" always starts a private one unless the user names a cluster.
    init_args["address"] = ray_address or "local"
    if not ray_address:
        # A private cluster starts no idle workers ahead of flwr's actors (each ~80 MiB).
        init_args["_system_config"] = {
            "enable_worker_prestart": False,
            "prestart_worker_first_driver": False,
        }
    backend_config = {
        "client_resources": {"num_cpus": cpus_per_site, "num_gpus": 0.0},
        "init_args": init_args,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedsec-app-") as app_dir:
        _write_app_dir(Path(app_dir), run_config)
        context = Context(
            run_id=run.run_id,
            node_id=0,
            node_config={},
            state=RecordDict(),
            run_config=dict(run_config),
        )
        _run_simulation(
            num_supernodes=settings.min_nodes,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client.app.app,
            server_app=server.app.app,
            backend_config=backend_config,
            server_app_context=context,
            app_dir=app_dir,
            run=run,
            is_app=True,
        )
    return _results(out_dir)
