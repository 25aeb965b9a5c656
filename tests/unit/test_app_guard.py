"""The data holder's app check (deploy/app_guard.py) and `fedsec app` (deploy/app_approval.py).

The running federation's refusals are in tests/integration/test_app_approval.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from deploy import app_guard
from deploy.app_approval import (
    app_hash,
    approve,
    approve_command,
    load_signing_key,
    render_approvals,
    sign_command,
    write_signing_key,
)
from deploy.app_guard import (
    APPROVAL_ENV,
    LOG_ENV,
    SIGNATURE_KEY,
    AppRefused,
    ApprovalError,
    ApprovedApps,
    approvals_from_env,
    decide,
    install_guard,
    load_approvals,
    parse_approvals,
    public_key_text,
    sign_hash,
)
from tests.conftest import ROOT, TEST_ENV, run_fedsec

APP_FILES = ("pyproject.toml", "LICENSE", "README.md")
APP_PACKAGES = ("common", "client", "server")
FAB = b"PK\x03\x04 a stand-in for a FAB"
FAB_HASH = hashlib.sha256(FAB).hexdigest()


def _copy_app(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in APP_FILES:
        shutil.copy2(ROOT / name, target / name)
    for package in APP_PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return target


def _key() -> tuple[ed25519.Ed25519PrivateKey, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    return key, public_key_text(key.public_key())


def _one_line_error(error: BaseException, *, names: str) -> str:
    text = str(error)
    assert "\n" not in text and names in text and "fix:" in text, text
    return text


# ---------------------------------------------------------------------- the approval file


def test_approval_file_reads_hashes_signers_and_the_flag(tmp_path):
    _, b64 = _key()
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    (tmp_path / "team.pub").write_bytes(
        other.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    (tmp_path / "team.pem").write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    path = tmp_path / "approved-apps.toml"
    path.write_text(
        f'hashes = ["sha256:{FAB_HASH.upper()}"]\n'
        f'signers = ["{b64}", "team.pub", "{tmp_path / "team.pem"}"]\n'
        "require_signature = true\n"
    )
    approvals = load_approvals(path)
    assert approvals.hashes == (FAB_HASH,)  # prefix and case normalised
    keys = approvals.signer_keys(base_dir=path.parent)  # "team.pub": next to the file
    assert [public_key_text(k) for k in keys] == [b64, *[public_key_text(other)] * 2]
    assert approvals.require_signature
    assert ApprovedApps() == parse_approvals("", source="x", base_dir=None)  # refuses all


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('hashes = ["abc"]', "field hashes.0"),
        (f'hashes = ["{FAB_HASH}"]\nsigner = []', "field signer"),
        ('signers = ["bm90IGEga2V5"]', "field signers.0"),
        ('signers = ["missing.pub"]', "field signers.0"),
        ("require_signature = true", "require_signature is true"),
        ('require_signature = "yes"', "field require_signature"),
        ("hashes = [", "not valid TOML"),
    ],
)
def test_an_unusable_approval_file_is_one_line_naming_file_field_and_fix(tmp_path, text, names):
    path = tmp_path / "approved-apps.toml"
    path.write_text(text)
    with pytest.raises(ApprovalError) as caught:
        load_approvals(path)
    assert _one_line_error(caught.value, names=names).startswith(f"{path}: ")


def test_a_private_key_is_refused_as_a_signer(tmp_path):
    private, _, _ = write_signing_key(tmp_path, "team")
    path = tmp_path / "approved-apps.toml"
    path.write_text(f'signers = ["{private}"]')
    with pytest.raises(ApprovalError) as caught:
        load_approvals(path)
    assert "is a private key" in _one_line_error(caught.value, names="field signers.0")


def test_no_variable_or_no_file_refuses_every_app_and_says_so(tmp_path):
    with pytest.raises(ApprovalError) as caught:
        approvals_from_env({})
    assert APPROVAL_ENV in _one_line_error(caught.value, names="every app is refused")
    missing = tmp_path / "nope.toml"
    with pytest.raises(ApprovalError) as caught:
        approvals_from_env({APPROVAL_ENV: str(missing)})
    assert "fedsec app approve" in _one_line_error(caught.value, names=str(missing))


# ----------------------------------------------------------------------------- decisions


def _decide(approvals, *, signature=None, content=FAB, sent=FAB_HASH):
    config = {} if signature is None else {SIGNATURE_KEY: signature}
    return decide(content=content, sent_hash=sent, override_config=config, approvals=approvals)


def test_a_listed_hash_runs_and_anything_else_is_refused_with_its_hash():
    assert _decide(ApprovedApps(hashes=(FAB_HASH,))).approved
    verdict = _decide(ApprovedApps(hashes=("0" * 64,)))
    assert (verdict.approved, verdict.code) == (False, "A1")
    assert str(verdict.refusal()) == (
        f"fedsec-A1: this data holder has not approved app sha256:{FAB_HASH}"
    )
    # Content that is not what its hash says: refused whatever the file approves.
    forged = _decide(ApprovedApps(hashes=(FAB_HASH,)), content=FAB + b"!")
    assert forged.code == "A3" and forged.app_hash == hashlib.sha256(FAB + b"!").hexdigest()
    unusable = _decide(ApprovalError("FILE: no such file"))
    assert unusable.code == "A0" and "no such file" in unusable.detail


def test_signatures_approve_unlisted_apps_and_are_required_when_asked():
    key, b64 = _key()
    stranger, _ = _key()
    signed = sign_hash(key, FAB_HASH)
    trusting = ApprovedApps(signers=(b64,))
    assert _decide(trusting, signature=signed).approved  # the hash need not be listed
    assert _decide(trusting, signature=sign_hash(stranger, FAB_HASH)).code == "A1"
    assert _decide(trusting, signature=sign_hash(key, "1" * 64)).code == "A1"  # another app
    assert _decide(trusting, signature="zz").code == "A1"
    strict = ApprovedApps(hashes=(FAB_HASH,), signers=(b64,), require_signature=True)
    unsigned = _decide(strict)
    assert unsigned.code == "A2" and FAB_HASH in str(unsigned.refusal())  # listed, unsigned
    assert _decide(strict, signature=sign_hash(stranger, FAB_HASH)).code == "A2"
    assert _decide(strict, signature=signed).approved
    # The bytes signed are exactly b"fedsec-app-v1:" + the hex hash.
    key.public_key().verify(bytes.fromhex(signed), b"fedsec-app-v1:" + FAB_HASH.encode())


# ------------------------------------------------------------- wrapping flwr-clientapp


class _FakeRunClientapp:
    """The two names run_clientapp calls, recording what the real ones would have done."""

    def __init__(self, *, content=FAB, sent=FAB_HASH, override_config=None):
        self.installed: list[bytes] = []
        self.fab = SimpleNamespace(hash_str=sent, content=content, verifications={})
        self.run = SimpleNamespace(run_id=42, override_config=override_config or {})

    def pull_task_input(self, client):
        return "message", "context", self.run, self.fab

    def install_from_fab(self, fab_file, *args, **kwargs):
        self.installed.append(fab_file)
        return Path("/installed")


def _run_like_flwr(module) -> str:
    """run_clientapp's order and its error reason: `str(type(ex)) + ":<'" + str(ex) + "'>"`."""
    try:
        message, context, run, fab = module.pull_task_input(None)
        module.install_from_fab(fab.content, skip_prompt=True)
    except Exception as ex:
        return str(type(ex)) + ":<'" + str(ex) + "'>"
    return "installed"


def test_the_guard_refuses_before_install_and_logs_one_line_at_the_site(
    tmp_path, monkeypatch, capsys
):
    approvals = tmp_path / "approved-apps.toml"
    approvals.write_text('hashes = ["' + "0" * 64 + '"]')
    log = tmp_path / "work" / "app-approvals.log"
    log.parent.mkdir()
    monkeypatch.setenv(APPROVAL_ENV, str(approvals))
    monkeypatch.setenv(LOG_ENV, str(log))
    module = _FakeRunClientapp()
    install_guard(module)
    reason = _run_like_flwr(module)
    assert reason == (
        "<class 'deploy.app_guard.AppRefused'>:<'fedsec-A1: this data holder has not "
        f"approved app sha256:{FAB_HASH}'>"
    )
    assert module.installed == []  # nothing unpacked, so nothing of the app ran
    (line,) = capsys.readouterr().err.splitlines()
    assert f"refused (fedsec-A1) app sha256:{FAB_HASH} run 42: its hash is not listed" in line
    assert log.read_text().splitlines() == [line]
    # The data holder approves it: read again for the next message, no restart.
    approvals.write_text(f'hashes = ["{FAB_HASH}"]')
    assert _run_like_flwr(module) == "installed" and module.installed == [FAB]
    assert f"approved app sha256:{FAB_HASH} run 42" in capsys.readouterr().err


def test_the_guard_unpacks_only_the_bytes_it_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(APPROVAL_ENV, str(tmp_path / "a.toml"))
    (tmp_path / "a.toml").write_text(f'hashes = ["{FAB_HASH}"]')
    module = _FakeRunClientapp()
    install_guard(module)
    module.pull_task_input(None)
    with pytest.raises(AppRefused, match="fedsec-A3"):
        module.install_from_fab(b"other bytes", skip_prompt=True)
    fresh = _FakeRunClientapp()
    install_guard(fresh)
    with pytest.raises(AppRefused):  # install without a checked pull
        fresh.install_from_fab(FAB)
    assert module.installed == fresh.installed == []


def test_a_fault_in_the_check_refuses_the_app(capsys):
    def broken():
        raise RuntimeError("disk on fire")

    module = _FakeRunClientapp()
    install_guard(module, load=broken)
    assert "fedsec-A9: this data holder's app check failed" in _run_like_flwr(module)
    assert module.installed == []
    assert "refused (fedsec-A9)" in capsys.readouterr().err


def test_the_guard_wraps_flwr_1_42s_own_clientapp_and_refuses_another_flwr(monkeypatch):
    entry, module = app_guard.flwr_clientapp_entry()
    assert (entry.__module__, entry.__name__) == (
        "flwr.supernode.cli.flwr_clientapp",
        "flwr_clientapp",
    )
    assert module.__name__ == "flwr.supernode.runtime.run_clientapp"
    # run_clientapp finds both names in its module's namespace at call time.
    assert {"pull_task_input", "install_from_fab"} <= set(module.run_clientapp.__code__.co_names)
    monkeypatch.setattr(app_guard.importlib.metadata, "version", lambda name: "1.43.0")
    with pytest.raises(app_guard.GuardError, match="flwr 1.43.0 is installed.*fix:"):
        app_guard.flwr_clientapp_entry()


def test_every_flwr_task_program_is_linked_and_only_the_clientapp_runs(tmp_path):
    from flwr.supercore.constant import TASK_TYPE_TO_COMMAND

    assert set(app_guard.SHIMS) == set(TASK_TYPE_TO_COMMAND.values())
    program = Path(sys.executable).parent / "fedsec-clientapp"
    assert program.is_file(), "pip install -e . (the console script)"
    agent = tmp_path / "flwr-agentapp"
    agent.symlink_to(program)
    result = subprocess.run(
        [str(agent), "--token", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **TEST_ENV},
    )
    assert result.returncode == 2 and "refused to start flwr-agentapp" in result.stderr


class _RealInstall(_FakeRunClientapp):
    """run_clientapp's two names around a real FAB and flwr's own `install_from_fab`."""

    def __init__(self, fab: bytes) -> None:
        from flwr.common.config import get_fab_config, get_metadata_from_config

        super().__init__(content=fab, sent=hashlib.sha256(fab).hexdigest())
        fab_id, version = get_metadata_from_config(get_fab_config(fab))
        self.run = SimpleNamespace(
            run_id=42, override_config={}, fab_id=fab_id, fab_version=version
        )
        self.unpacked = 0

    def install_from_fab(self, fab_file, *args, **kwargs):
        from flwr.cli.install import install_from_fab

        self.unpacked += 1
        return install_from_fab(fab_file, *args, **kwargs)


def test_an_installed_app_is_reused_only_while_it_holds_exactly_the_approved_files(
    tmp_path, monkeypatch
):
    from flwr.cli.build import build_fab_from_disk

    fab = build_fab_from_disk(_copy_app(tmp_path / "app"))
    digest = hashlib.sha256(fab).hexdigest()
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(APPROVAL_ENV, str(tmp_path / "a.toml"))
    (tmp_path / "a.toml").write_text(f'hashes = ["{digest}"]')
    module = _RealInstall(fab)
    install_guard(module)

    def message() -> Path:
        _, _, run, pulled = module.pull_task_input(None)
        return Path(module.install_from_fab(pulled.content, skip_prompt=True))

    folder = message()
    assert module.unpacked == 1 and (folder / "client" / "app.py").is_file()
    approved = (folder / "client" / "app.py").read_bytes()
    (folder / "client" / "__pycache__").mkdir()
    (folder / "client" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"cache")
    assert message() == folder and module.unpacked == 1  # the same files: not unpacked again
    # flwr alone would run a changed or an added file; the guard unpacks the approved ones.
    (folder / "client" / "app.py").write_bytes(approved + b"\nimport os  # changed\n")
    assert message() == folder and module.unpacked == 2
    assert (folder / "client" / "app.py").read_bytes() == approved
    (folder / "client" / "extra.py").write_text("print('not in the app')\n")
    assert message() == folder and module.unpacked == 3
    assert not (folder / "client" / "extra.py").exists()
    (folder / "server" / "app.py").unlink()
    assert message() == folder and module.unpacked == 4
    assert (folder / "server" / "app.py").is_file()
    assert app_guard.installed_as_approved(folder, fab)
    assert not app_guard.installed_as_approved(folder, b"not a zip")


def test_a_second_message_waits_for_an_unpacking_in_progress_instead_of_undoing_it(
    tmp_path, monkeypatch
):
    """Two ClientApps of one node get the same new app at once: the second finds the folder
    half copied. It must wait for the first, then use its folder, not delete it midway."""
    from flwr.cli.build import build_fab_from_disk

    fab = build_fab_from_disk(_copy_app(tmp_path / "app"))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(APPROVAL_ENV, str(tmp_path / "a.toml"))
    (tmp_path / "a.toml").write_text(f'hashes = ["{hashlib.sha256(fab).hexdigest()}"]')
    first, second = _RealInstall(fab), _RealInstall(fab)
    real_install = first.install_from_fab
    copying = threading.Event()

    def slow_install(fab_file, *args, **kwargs):
        folder = app_guard._install_folder(first.run, first.fab)
        folder.mkdir(parents=True)
        (folder / "pyproject.toml").write_text("half copied")
        copying.set()
        time.sleep(0.5)  # the second message arrives meanwhile
        shutil.rmtree(folder)
        return real_install(fab_file, *args, **kwargs)

    first.install_from_fab = slow_install
    for module in (first, second):
        install_guard(module)
        module.pull_task_input(None)
    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(first.install_from_fab, fab, skip_prompt=True)
        assert copying.wait(10)
        two = pool.submit(second.install_from_fab, fab, skip_prompt=True)
        folders = {Path(one.result(timeout=30)), Path(two.result(timeout=30))}
    (folder,) = folders
    assert first.unpacked == 1 and second.unpacked == 0  # the second used the first's folder
    assert app_guard.installed_as_approved(folder, fab)


# ---------------------------------------------------------------- hashing and signing


def test_app_hash_is_the_hash_of_the_fab_flwr_builds(tmp_path):
    app = _copy_app(tmp_path / "one" / "app")
    digest = app_hash(app)
    out = tmp_path / "built"
    out.mkdir()
    subprocess.run(
        [str(Path(sys.executable).parent / "flwr"), "build", "--app", str(app)],
        cwd=out,
        capture_output=True,
        timeout=120,
        check=True,
        env={**os.environ, **TEST_ENV},
    )
    (fab,) = out.glob("*.fab")
    assert hashlib.sha256(fab.read_bytes()).hexdigest() == digest
    # The same files elsewhere, touched later: the same hash. One changed line: another.
    other = _copy_app(tmp_path / "two" / "app")
    os.utime(other / "client" / "app.py", (1, 1))
    assert app_hash(other) == digest
    with (other / "client" / "app.py").open("a") as stream:
        stream.write("# one more line\n")
    assert app_hash(other) != digest
    with pytest.raises(ValueError, match="no pyproject.toml.*fix:"):
        app_hash(tmp_path)


def test_keygen_sign_and_approve_on_the_command_line(tmp_path):
    keys = tmp_path / "team"
    made = run_fedsec(["app", "keygen", "--out", str(keys), "--name", "team"], tmp_path=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (keys / "team.key").stat().st_mode & 0o777 == 0o600
    (b64,) = [
        line.split(": ", 1)[1]
        for line in made.stdout.splitlines()
        if line.startswith("public key: ")
    ]
    again = run_fedsec(["app", "keygen", "--out", str(keys), "--name", "team"], tmp_path=tmp_path)
    assert (
        again.returncode == 2 and again.stderr.count("\n") == 1 and "not replaced" in again.stderr
    )
    # Sign: the printed option is what flwr run parses into the run config.
    app = _copy_app(tmp_path / "app")
    signed = run_fedsec(
        ["app", "sign", "--key", str(keys / "team.key"), str(app)], tmp_path=tmp_path
    )
    assert signed.returncode == 0, signed.stderr
    option = signed.stdout.splitlines()[-1]
    assert option.startswith('--run-config "app-signature=')
    from flwr.common.config import parse_config_args

    config = parse_config_args([option.split(" ", 1)[1].strip('"')])
    digest = app_hash(app)
    key = load_signing_key(keys / "team.key")
    assert config[SIGNATURE_KEY] == sign_hash(key, digest)
    # The data holder approves the key (from its .pub file: written inline) and the hash.
    approved = tmp_path / "site-00" / "approved-apps.toml"
    first = run_fedsec(
        [
            "app",
            "approve",
            "--file",
            str(approved),
            "--signer",
            str(keys / "team.pub"),
            "--hash",
            digest,
        ],
        tmp_path=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    data = tomllib.loads(approved.read_text())
    assert data == {"hashes": [digest], "signers": [b64], "require_signature": False}
    strict = run_fedsec(
        ["app", "approve", "--file", str(approved), "--require-signature"], tmp_path=tmp_path
    )
    assert strict.returncode == 0 and load_approvals(approved).require_signature
    hashed = run_fedsec(["app", "hash", str(app)], tmp_path=tmp_path)
    assert hashed.stdout.strip() == digest


def test_approve_errors_are_one_line_and_change_nothing(tmp_path, capsys):
    path = tmp_path / "approved-apps.toml"
    assert approve_command(path, hashes=["nothex"], signers=[], require_signature=None) == 2
    assert approve_command(path, hashes=[], signers=[], require_signature=True) == 2
    assert approve_command(path, hashes=[], signers=[], require_signature=None) == 2
    assert not path.exists()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(
        line.startswith("fedsec: error: ") and "fix:" in line for line in err
    )
    approve(path, hashes=[FAB_HASH])
    before = path.read_text()
    assert approve_command(path, hashes=[], signers=["x.pub"], require_signature=None) == 2
    assert path.read_text() == before
    path.write_text("hashes = 3")
    assert approve_command(path, hashes=[FAB_HASH], signers=[], require_signature=None) == 2
    assert "field hashes" in capsys.readouterr().err
    assert path.read_text() == "hashes = 3"


def test_render_and_sign_command_outputs(tmp_path, capsys):
    approvals = ApprovedApps(hashes=(FAB_HASH,))
    text = render_approvals(approvals)
    assert parse_approvals(text, source="x", base_dir=None) == approvals
    assert text.startswith("# Apps this data holder lets run")
    assert sign_command(tmp_path / "missing.key", ROOT) == 2
    assert "cannot read it" in capsys.readouterr().err
