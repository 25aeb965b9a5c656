"""Only apps a data holder approved run on its node: the deployment of test_deployment.py.

The same local federation (docker-compose.yml's commands on loopback): each SuperNode's
SuperExec finds `flwr-clientapp` on the service's PATH, which is fedsec-clientapp in the
guard folder, and each data holder's approval file is the one its service mounts. The
approved app training a round is test_deployment.py's SecAgg+ round; here, what is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from deploy.app_approval import app_hash, approve, load_signing_key, write_signing_key
from deploy.app_guard import APPROVAL_ENV, GUARD_DIR, LOG_ENV, PROGRAM, SHIMS, sign_hash
from deploy.compose import (
    approval_file,
    data_holders,
    load_compose,
    local_services,
    materialise,
    process_env,
)
from tests.conftest import ROOT
from tests.integration import test_deployment as deployment
from tests.integration.test_deployment import SITES, Federation, _approved_app, _flwr_run

# The same module-scoped fixture: this module gets its own federation.
federation = deployment.federation

ROUND = "mode='fedavg' num-rounds=1 min-nodes={n} local-steps=2 site-html='off' out-dir='{out}'"


# ------------------------------------------------------------------- the wiring (quick)


def test_every_data_holder_runs_the_guard_with_its_own_read_only_approval_file(tmp_path):
    env = {"FEDSEC_PKI": str(tmp_path / "pki"), "FEDSEC_SITES": str(tmp_path / "sites")}
    services = load_compose(env=env)
    holders = data_holders(services)
    assert holders == list(SITES)
    files = set()
    for name in holders:
        service = services[name]
        assert service.environment["PATH"].split(":")[:2] == [GUARD_DIR, "/opt/fedsec/bin"]
        target = service.environment[APPROVAL_ENV]
        (mount,) = [m for m in service.mounts if m.target == target]
        assert mount.read_only and mount.kind == "bind"
        assert approval_file(service) == tmp_path / "sites" / name / "approved-apps.toml"
        assert service.environment[LOG_ENV].startswith("/work/")  # its own work volume
        files.add(mount.source)
    assert len(files) == len(holders)
    for name in set(services) - set(holders):  # the coordinator side runs no guard
        assert APPROVAL_ENV not in services[name].environment
    # The image makes the same guard folder the compose PATH names.
    dockerfile = (ROOT / "Dockerfile").read_text()
    client = dockerfile[dockerfile.index("AS client") :].replace("\\\n", " ")
    (names,) = re.findall(r"for name in ([^;]+); do ln -s", client)
    assert sorted(names.split()) == sorted(SHIMS)
    assert f'ln -s /opt/fedsec/bin/{PROGRAM} "{GUARD_DIR}/$name"' in client
    assert f"ENV PATH={GUARD_DIR}:$PATH" in client


def test_local_data_holders_find_the_guard_first_on_path(tmp_path):
    services = load_compose(
        env={"FEDSEC_PKI": str(tmp_path / "pki"), "FEDSEC_SITES": str(tmp_path / "sites")}
    )
    need = [(s.name, p) for s in services.values() for p in s.ports]
    ports = dict(zip(need, range(21000, 21000 + len(need)), strict=True))
    local = local_services(services, root=tmp_path / "local", ports=ports)
    site = local[SITES[0]]
    materialise(site)
    env = process_env(site, {"PATH": "/somewhere/else"})
    found = shutil.which("flwr-clientapp", path=env["PATH"])
    assert found is not None and Path(found).parent == site.rootfs / GUARD_DIR.lstrip("/")
    assert Path(found).resolve() == (Path(sys.executable).parent / PROGRAM).resolve()
    assert shutil.which("flower-superexec", path=env["PATH"]) == str(
        Path(sys.executable).parent / "flower-superexec"
    )
    assert env[APPROVAL_ENV] == str(site.rootfs / "etc/fedsec/approved-apps.toml")
    assert Path(env[APPROVAL_ENV]).parent.is_dir() and os.path.islink(env[APPROVAL_ENV])
    # The coordinator keeps this interpreter's programs first, as before.
    superlink = process_env(local["superlink"], {"PATH": "/somewhere/else"})
    assert superlink["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


# ------------------------------------------------------------------- refusals (slow)


def _set_approvals(federation: Federation, **fields) -> None:
    """Each data holder's approval file, written afresh (read again for every message)."""
    for site in SITES:
        path = approval_file(federation.services[site])
        path.unlink(missing_ok=True)
        approve(path, **fields)


def _canary_app(federation: Federation, target: Path, canary: Path) -> Path:
    """The approved app with one line added: client/app.py writes `canary` when imported."""
    app = _approved_app(federation, target)
    with (app / "client" / "app.py").open("a", encoding="utf-8") as stream:
        stream.write(f"__import__('pathlib').Path({str(canary)!r}).write_text('ran')\n")
    return app


def _failure_reasons(out: Path) -> list[str]:
    (entry,) = json.loads((out / "results.json").read_text())["rounds"]
    return entry["train"]["failure_reasons"] + entry["aggregate"].get("failure_reasons", [])


def _site_logs(federation: Federation) -> dict[str, str]:
    return {site: federation.processes.get(site).log() for site in SITES}


@pytest.mark.slow
def test_a_changed_app_is_refused_before_any_of_its_code_runs(federation, tmp_path):
    _set_approvals(federation, hashes=[federation.app_hash])
    canary = tmp_path / "canary"
    app = _canary_app(federation, tmp_path / "app", canary)
    changed = app_hash(app)
    assert changed != federation.app_hash
    out = tmp_path / "run"
    result = _flwr_run(federation, app, ROUND.format(n=len(SITES), out=out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sentence = f"fedsec-A1: this data holder has not approved app sha256:{changed}"
    reasons = _failure_reasons(out)
    assert len(reasons) == 2 * len(SITES), reasons  # every train and evaluate message
    assert all(sentence in reason for reason in reasons), reasons
    assert sentence in result.stdout + result.stderr  # the model team's console
    assert not canary.exists()  # not one line of the changed app ran
    for site, log in _site_logs(federation).items():
        assert f"refused (fedsec-A1) app sha256:{changed} run " in log, site
        work = federation.root / "volumes" / f"{site}-work" / "app-approvals.log"
        assert f"refused (fedsec-A1) app sha256:{changed}" in work.read_text(), site


@pytest.mark.slow
def test_require_signature_refuses_unsigned_apps_and_runs_signed_ones(federation, tmp_path):
    private, _, team_key = write_signing_key(tmp_path / "model-team", "team")
    _set_approvals(
        federation, hashes=[federation.app_hash], signers=[team_key], require_signature=True
    )
    try:
        # The approved hash, unsigned: refused now.
        app = _approved_app(federation, tmp_path / "unsigned")
        out = tmp_path / "unsigned-run"
        result = _flwr_run(federation, app, ROUND.format(n=len(SITES), out=out))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        sentence = (
            "fedsec-A2: this data holder runs only apps signed by a key it approved; "
            f"app sha256:{federation.app_hash} is not"
        )
        reasons = _failure_reasons(out)
        assert reasons and all(sentence in reason for reason in reasons), reasons
        # A changed app whose hash no data holder listed, signed by the model team: it runs
        # (and its canary shows the changed code really ran, once approved).
        canary = tmp_path / "canary"
        signed = _canary_app(federation, tmp_path / "signed", canary)
        signature = sign_hash(load_signing_key(private), app_hash(signed))
        out = tmp_path / "signed-run"
        result = _flwr_run(
            federation,
            signed,
            ROUND.format(n=len(SITES), out=out) + f" app-signature='{signature}'",
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        (entry,) = json.loads((out / "results.json").read_text())["rounds"]
        assert entry["train"]["status"] == "aggregated", entry["train"]
        assert entry["train"]["results"] == len(SITES)
        assert canary.read_text() == "ran"
        for site, log in _site_logs(federation).items():
            assert f"approved app sha256:{app_hash(signed)} run " in log, site
            assert f"signed by {team_key}" in log, site
    finally:
        _set_approvals(federation, hashes=[federation.app_hash])
