"""A site that refuses to train is one line at the coordinator and one entry in results.json.

Issue 18: a site failing its quality gate flooded the coordinator's console with flwr's Ray
traceback every round. The in-process run goes through fedsec's ServerApp and ClientApp over
flwr's wire with one site whose own gate refuses its data; flwr's Simulation Engine records of
the same exception are replayed through flwr's logger as vce_api.py writes them.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
from flwr.common import Error
from flwr.common.logger import log as flwr_log

from common.protocol import SITE_ERRORS
from server.quiet import quiet_site_refusals
from server.strategy import describe_failure

REFUSAL = f"fedsec-E3: {SITE_ERRORS['E3']}"
ROUNDS = 2


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())


def _ray_error_text() -> str:
    """What vce_api.py gets from Ray when the ClientApp raised a SiteError."""
    try:
        raise RuntimeError(f"{REFUSAL} (details stay in the site's log)")
    except RuntimeError:
        remote = traceback.format_exc()
    return f"ray::ClientAppActor.run() (pid=1, ip=127.0.0.1)\n{remote}"


def test_flwr_simulation_records_of_a_site_error_are_dropped_others_kept():
    quiet_site_refusals()
    handler = Lines()
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.addHandler(handler)
    try:
        flwr_log(logging.ERROR, "An exception was raised when processing a message by %s", "X")
        flwr_log(logging.ERROR, _ray_error_text())
        flwr_log(logging.ERROR, "Traceback (most recent call last):\n  ...\n" + REFUSAL)
        flwr_log(logging.ERROR, "Traceback (most recent call last):\n  ImportError: no torch")
    finally:
        flwr_logger.removeHandler(handler)
    assert not any("fedsec-E" in line for line in handler.lines)
    assert handler.lines[-1].endswith("ImportError: no torch")


def test_a_wrapped_site_error_is_described_in_one_line():
    reason = f"<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'{_ray_error_text()}'>"
    failure = Exception(Error(code=1, reason=reason))
    assert describe_failure(failure) == REFUSAL
    assert "\n" not in describe_failure(Exception("first line\nsecond line"))
    guard = "fedsec-A1: this data holder has not approved app sha256:ab12"
    assert describe_failure(Exception(Error(code=1, reason=f"<class 'E'>:<'{guard}'>"))) == guard


@pytest.fixture(scope="module")
def refusing_sites(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("refusal") / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=2, seed=3, scale=0.05)
    config = out / "site-01" / "site.toml"
    config.write_text(config.read_text() + "\n[dqa]\nmin_train_positives = 1000000\n")
    return out


@pytest.mark.slow
def test_a_refusing_site_is_one_line_per_round_and_one_entry(refusing_sites, tmp_path):
    from experiments.simulate import run_in_process

    handler = Lines()
    loggers = [logging.getLogger(name) for name in ("fedsec.server", "flwr")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        results = run_in_process(
            data_dir=refusing_sites,
            out_dir=tmp_path / "run",
            overrides={
                "mode": "fedavg",
                "num-rounds": ROUNDS,
                "local-steps": 2,
                "site-html": "off",
                "report-html": False,
            },
        )
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert not any("Traceback" in line for line in handler.lines), handler.lines
    for entry in results["rounds"]:
        train = entry["train"]
        assert train["failure_reasons"] == [REFUSAL] and train["status"] == "aggregated"
        mentions = [line for line in handler.lines if f"round {entry['round']}:" in line]
        assert sum("fedsec-E3" in line for line in mentions) == 1, mentions
