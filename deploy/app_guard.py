"""`fedsec-clientapp`: the data holder's check of every app before any line of it runs.

A SuperNode runs whatever app (FAB) the SuperLink hands it, next to the data holder's logs.
flwr 1.42's own check (`flower-supernode --trusted-entities`) needs verification records
that only Flower's hosted platform supplies. This is the data holder's own check, in a
process the data holder starts and with configuration only the data holder controls.

How it is wired (flwr 1.42.0, checked at start): for every message, the SuperNode's
SuperExec starts `flwr-clientapp` by name, from PATH. The data holder's image puts a folder
first on PATH (`GUARD_DIR`) in which `flwr-clientapp` is this program. It loads flwr's own
`flwr-clientapp` entry point (from flwr's package metadata) and wraps two functions in the
namespace of `flwr.supernode.runtime.run_clientapp`, whose `run_clientapp` does:

    message, context, run, fab = pull_task_input(client)    # 1. pull the task
    install_from_fab(fab.content, skip_prompt=True)          # 2. unpack the app
    ... load the ClientApp from the unpacked folder, call it  # 3. the app's code runs

- `pull_task_input` is wrapped to check the app right after it is pulled: the FAB's bytes
  must hash (SHA-256) to the hash they were sent with, and that hash must be approved in
  the data holder's approval file (`FEDSEC_APPROVED_APPS`), by hash or by a valid ed25519
  signature of an approved signer (run-config key `app-signature`). The decision is
  logged at the site, one line: on stderr (the SuperNode's log) and, if `FEDSEC_APP_LOG`
  is set, appended to that file.
- `install_from_fab` is wrapped to raise the refusal (`AppRefused`) before anything is
  unpacked, and to unpack only the exact bytes that were approved. The refusal is raised
  here and not inside the pull: an exception from `pull_task_input` leaves `message`
  unset, and flwr then sends no reply at all (the model team would see only a timeout).
  From step 2 on, flwr turns the exception into an error reply whose reason carries its
  text, so the model team sees one fixed sentence and the app's hash (`REFUSALS`).
  An app already unpacked by an earlier message is used again only if its folder holds
  exactly the files the approved FAB lists, each with its listed hash
  (`installed_as_approved`); otherwise the approved files are unpacked again. flwr alone
  would load whatever that folder holds.

The approval file is read again for every message, so a data holder's edit applies to the
next message without restarting the node. A missing variable, a missing file or an
unusable file refuses every app (and the site log says why).

Other programs a SuperNode's SuperExec can be asked to start (`flwr-agentapp` for an
AgentApp bundle, ...) are linked to this program too, and it refuses to run them: on a data
holder's node only ClientApps run, each checked here.

This module is part of the data holder's image (not of the app bundle): it imports only
flwr, pydantic, cryptography and the standard library, never the app's own packages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from deploy.message_times import ClientAppTimes

PROGRAM = "fedsec-clientapp"
FLWR_VERSION = "1.42.0"
"""The flwr release whose `run_clientapp` this guard was checked against."""
APPROVAL_ENV = "FEDSEC_APPROVED_APPS"
"""Path of the data holder's approval file (TOML)."""
LOG_ENV = "FEDSEC_APP_LOG"
"""Optional: a file to which every decision is appended, one line each."""
SIGNATURE_KEY = "app-signature"
"""Run-config key carrying the model team's signature (hex) of the app's hash."""
SIGNED_PREFIX = b"fedsec-app-v1:"
"""What is signed: SIGNED_PREFIX + the app's SHA-256 in lowercase hex, as ASCII."""

GUARD_DIR = "/opt/fedsec/guard"
"""The client image's folder, first on a data holder's PATH, of links to this program."""
FAB_MANIFEST = ".info/CONTENT"
"""The FAB's list of its files: path, SHA-256 and size per line (flwr 1.42's `flwr build`)."""
GUARDED_PROGRAM = "flwr-clientapp"
REFUSED_PROGRAMS = (
    "flwr-agentapp",
    "flwr-connector",
    "flwr-model",
    "flwr-serverapp",
    "flwr-simulation",
)
"""flwr's other task programs (TASK_TYPE_TO_COMMAND): linked here too, and never run."""
SHIMS = (GUARDED_PROGRAM, *REFUSED_PROGRAMS)

_RUN_CLIENTAPP_MODULE = "flwr.supernode.runtime.run_clientapp"
_HASH = re.compile(r"^[0-9a-f]{64}$")

REFUSALS = {
    "A0": "this data holder has no usable list of approved apps, so it refuses app sha256:{}",
    "A1": "this data holder has not approved app sha256:{}",
    "A2": "this data holder runs only apps signed by a key it approved; app sha256:{} is not",
    "A3": "app sha256:{} does not match the hash it was sent with",
    "A9": "this data holder's app check failed, so it refuses app sha256:{}",
}
"""What the model team sees for a refused app: a fixed sentence per code, and the hash."""


class GuardError(RuntimeError):
    """This program cannot guard flwr-clientapp (wrong flwr, missing entry point)."""


class ApprovalError(ValueError):
    """The approval file is missing or unusable: one line per problem, with the fix."""


class AppRefused(Exception):
    """Raised in the ClientApp process: flwr sends its text to the model team."""

    def __init__(self, code: str, app_hash: str) -> None:
        self.code = code
        self.app_hash = app_hash
        super().__init__(f"fedsec-{code}: " + REFUSALS[code].format(app_hash))


# ------------------------------------------------------------------------ the approval file


def normalise_hash(value: str) -> str:
    """A SHA-256 in lowercase hex, with or without a `sha256:` prefix; ValueError otherwise."""
    text = value.strip().lower().removeprefix("sha256:")
    if not _HASH.match(text):
        raise ValueError(
            f"{value!r} is not a SHA-256 in hex (fix: copy the 64 hex digits "
            "`fedsec app hash` printed)"
        )
    return text


def public_key_text(key: ed25519.Ed25519PublicKey) -> str:
    """The form `signers` lists: the raw 32-byte public key in base64."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_signer(text: str, *, base_dir: Path | None = None) -> ed25519.Ed25519PublicKey:
    """An ed25519 public key from base64 (raw 32 bytes), an OpenSSH line, or a key file.

    A file path may be an OpenSSH (`ssh-ed25519 ...`) or PEM public key; a relative path is
    read from `base_dir` (the approval file's folder). ValueError, with the fix, otherwise.
    """
    text = text.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    if text.startswith("ssh-"):
        return _public_key_from(text.encode(), where="the OpenSSH line")
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(
            f"{text!r} is neither a base64 ed25519 public key (32 bytes) nor a readable key "
            f"file ({error.strerror or error}) (fix: paste the `public key:` line "
            "`fedsec app keygen` printed)"
        ) from None
    if b"PRIVATE KEY" in data:
        raise ValueError(
            f"{path} is a private key, which stays with the model team (fix: list its "
            "public key: NAME.pub, or the base64 line `fedsec app keygen` printed)"
        )
    return _public_key_from(data, where=str(path))


def _public_key_from(data: bytes, *, where: str) -> ed25519.Ed25519PublicKey:
    key = None
    for loader in (serialization.load_ssh_public_key, serialization.load_pem_public_key):
        try:
            key = loader(data)
            break
        except (ValueError, UnsupportedAlgorithm):
            continue
    if key is None:
        raise ValueError(
            f"{where} holds no OpenSSH or PEM public key (fix: use the NAME.pub "
            "`fedsec app keygen` wrote, or its base64 `public key:` line)"
        )
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(
            f"{where} is not an ed25519 key (fix: make one with `fedsec app keygen`, or "
            "`ssh-keygen -t ed25519`)"
        )
    return key


def _check_hash(value: str) -> str:
    return normalise_hash(value)


def _check_signer(value: str, info: ValidationInfo) -> str:
    base_dir = (info.context or {}).get("base_dir")
    load_signer(value, base_dir=base_dir)
    return value.strip()


class ApprovedApps(BaseModel):
    """The data holder's approval file: which apps may run on its node.

    `hashes`: SHA-256 of approved FABs (`fedsec app hash` prints them). `signers`: ed25519
    public keys of the model team (base64 of the raw 32 bytes, an OpenSSH line, or a path
    to an OpenSSH/PEM public key file); an app whose hash one of them signed is approved
    even if its hash is not listed. `require_signature = true`: only signed apps run,
    listed hash or not.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hashes: tuple[Annotated[str, AfterValidator(_check_hash)], ...] = ()
    signers: tuple[Annotated[str, AfterValidator(_check_signer)], ...] = ()
    require_signature: StrictBool = False

    @model_validator(mode="after")
    def _signature_needs_signers(self) -> ApprovedApps:
        if self.require_signature and not self.signers:
            raise ValueError(
                "require_signature is true but no signer is listed, so every app would be "
                "refused (fix: add the model team's key with `fedsec app approve --signer`)"
            )
        return self

    def signer_keys(self, *, base_dir: Path | None) -> list[ed25519.Ed25519PublicKey]:
        return [load_signer(text, base_dir=base_dir) for text in self.signers]


def describe_validation_error(error: ValidationError, *, source: str | Path) -> str:
    """One line per problem: `FILE: field NAME: what is wrong (fix: ...)`."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        kind = problem["type"]
        message = problem["msg"].removeprefix("Value error, ")
        if kind == "value_error":  # ours: the message carries its own fix
            lines.append(f"{source}: field {field}: {message}" if field else f"{source}: {message}")
            continue
        if kind == "extra_forbidden":
            fix = f"remove `{field}` (the fields are hashes, signers, require_signature)"
        else:
            fix = f"set `{field}` to a valid value"
        lines.append(f"{source}: field {field}: {message} (fix: {fix})")
    return "\n".join(lines)


def parse_approvals(text: str, *, source: str | Path, base_dir: Path | None) -> ApprovedApps:
    """Validate an approval file's text; ApprovalError (one line per problem) otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ApprovalError(
            f"{source}: not valid TOML ({error}) (fix: see `fedsec app approve --help` for "
            "the format, or recreate the file with it)"
        ) from None
    try:
        return ApprovedApps.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise ApprovalError(describe_validation_error(error, source=source)) from None


def load_approvals(path: Path) -> ApprovedApps:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ApprovalError(
            f"{path}: no such file, so every app is refused (fix: create it with "
            f"`fedsec app approve --file {path} --hash HASH`)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ApprovalError(
            f"{path}: cannot read it ({reason}), so every app is refused (fix: make it a "
            "UTF-8 text file the node's user can read)"
        ) from None
    return parse_approvals(text, source=path, base_dir=path.parent)


def approvals_from_env(env: Mapping[str, str] | None = None) -> tuple[ApprovedApps, Path]:
    """The approval file named by FEDSEC_APPROVED_APPS; ApprovalError if unusable."""
    value = (os.environ if env is None else env).get(APPROVAL_ENV, "").strip()
    if not value:
        raise ApprovalError(
            f"{APPROVAL_ENV} is not set, so every app is refused (fix: set it to the data "
            "holder's approval file, written with `fedsec app approve`)"
        )
    path = Path(value)
    return load_approvals(path), path


# --------------------------------------------------------------------------- the decision


def signed_message(app_hash: str) -> bytes:
    return SIGNED_PREFIX + normalise_hash(app_hash).encode("ascii")


def sign_hash(key: ed25519.Ed25519PrivateKey, app_hash: str) -> str:
    """The model team's signature of an app's hash, in hex (the `app-signature` value)."""
    return key.sign(signed_message(app_hash)).hex()


def verify_signature(
    signature: Any, app_hash: str, keys: list[ed25519.Ed25519PublicKey]
) -> tuple[ed25519.Ed25519PublicKey | None, str]:
    """(the approved key that signed `app_hash`, "") or (None, why not)."""
    if signature in (None, ""):
        return None, "the run carries no app-signature"
    if not isinstance(signature, str):
        return None, "the run's app-signature is not a string"
    try:
        raw = bytes.fromhex(signature.strip())
    except ValueError:
        return None, "the run's app-signature is not hex"
    if len(raw) != 64:
        return None, "the run's app-signature is not 64 bytes"
    message = signed_message(app_hash)
    for key in keys:
        try:
            key.verify(raw, message)
        except InvalidSignature:
            continue
        return key, ""
    return None, "the run's app-signature verifies with no approved signer"


@dataclass(frozen=True)
class Verdict:
    """A decision on one app, for one message of one run."""

    app_hash: str
    approved: bool
    code: str = ""  # the refusal's code (REFUSALS); "" when approved
    detail: str = ""  # why: for the site's log only

    def refusal(self) -> AppRefused:
        assert not self.approved
        return AppRefused(self.code, self.app_hash)


def decide(
    *,
    content: bytes,
    sent_hash: str,
    override_config: Mapping[str, Any],
    approvals: ApprovedApps | ApprovalError,
    base_dir: Path | None = None,
) -> Verdict:
    """May this FAB run? `approvals` is the loaded file, or why it could not be loaded."""
    app_hash = hashlib.sha256(content).hexdigest()
    if sent_hash.strip().lower() != app_hash:
        return Verdict(app_hash, False, "A3", f"the FAB was sent as {sent_hash[:80]!r}")
    if isinstance(approvals, ApprovalError):
        return Verdict(app_hash, False, "A0", str(approvals).replace("\n", "; "))
    try:
        keys = approvals.signer_keys(base_dir=base_dir)
    except ValueError as error:  # a key file that changed since the file was validated
        return Verdict(app_hash, False, "A0", str(error))
    signer, why_not = verify_signature(override_config.get(SIGNATURE_KEY), app_hash, keys)
    if signer is not None:
        return Verdict(app_hash, True, detail=f"signed by {public_key_text(signer)}")
    if approvals.require_signature:
        return Verdict(app_hash, False, "A2", f"require_signature is true and {why_not}")
    if app_hash in approvals.hashes:
        unsigned = override_config.get(SIGNATURE_KEY) in (None, "")
        note = "" if unsigned else f" (but {why_not})"
        return Verdict(app_hash, True, detail=f"its hash is listed{note}")
    return Verdict(app_hash, False, "A1", f"its hash is not listed and {why_not}")


def site_log(line: str, env: Mapping[str, str] | None = None) -> None:
    """One line to stderr (the SuperNode's log) and, if FEDSEC_APP_LOG is set, to that file."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    text = f"{stamp} {PROGRAM}: " + " ".join(line.split())
    print(text, file=sys.stderr, flush=True)
    target = (os.environ if env is None else env).get(LOG_ENV, "").strip()
    if target:
        try:
            with open(target, "a", encoding="utf-8") as stream:
                stream.write(text + "\n")
        except OSError as error:
            print(f"{PROGRAM}: warning: cannot append to {target}: {error}", file=sys.stderr)


def log_verdict(verdict: Verdict, *, run_id: int) -> None:
    word = "approved" if verdict.approved else f"refused (fedsec-{verdict.code})"
    site_log(f"{word} app sha256:{verdict.app_hash} run {run_id}: {verdict.detail}")


# ------------------------------------------------------------------ wrapping flwr-clientapp


def _install_folder(run: Any, fab: Any) -> Path | None:
    """Where flwr unpacks this app and then loads it from (run_clientapp's own call)."""
    from flwr.common.config import get_project_dir

    try:
        return get_project_dir(run.fab_id, run.fab_version, fab.hash_str)
    except (AttributeError, ValueError):  # no or a malformed app id: flwr's install decides
        return None


def _manifest(content: bytes) -> dict[str, str]:
    """{path: SHA-256} of every file the FAB lists in its `.info/CONTENT`."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        text = archive.read(FAB_MANIFEST).decode("utf-8")
    listed = {}
    for line in text.strip().splitlines():
        path, digest, _size = line.rsplit(",", 2)
        listed[path] = digest
    return listed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if need be) for as long as the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def installed_as_approved(folder: Path, content: bytes) -> bool:
    """True if `folder` holds exactly the files the approved FAB lists, each with its listed
    SHA-256 (bytecode caches aside): then the app need not be unpacked again.

    flwr 1.42 unpacks every message's FAB to a temporary folder, checks it, and then runs
    whatever an earlier message left in the install folder. Checking the installed files
    here saves the unpacking and closes that gap: a changed file is unpacked again.
    """
    try:
        listed = _manifest(content)
    except (KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile):
        return False
    found = {}
    try:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [name for name in dirs if name != "__pycache__"]
            for name in files:
                path = Path(root) / name
                found[path.relative_to(folder).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    except OSError:
        return False
    return bool(listed) and found == listed


def install_guard(
    module: ModuleType,
    *,
    load: Callable[[], tuple[ApprovedApps, Path]] = approvals_from_env,
) -> None:
    """Wrap `pull_task_input` and `install_from_fab` in flwr's run_clientapp module."""
    original_pull = module.pull_task_input
    original_install = module.install_from_fab
    checked: dict[str, Any] = {"content": None, "refusal": None, "folder": None}

    def pull_task_input(client: Any) -> tuple[Any, Any, Any, Any]:
        checked.update(content=None, refusal=None, folder=None)
        message, context, run, fab = original_pull(client)
        try:
            verdict = _check(fab, run)
        except Exception as error:  # a fault in the check itself: refuse, say so at the site
            verdict = Verdict(
                hashlib.sha256(fab.content).hexdigest(),
                False,
                "A9",
                f"{type(error).__name__}: {error}",
            )
        log_verdict(verdict, run_id=run.run_id)
        if verdict.approved:
            checked["content"] = fab.content
            checked["folder"] = _install_folder(run, fab)
        else:
            checked["refusal"] = verdict.refusal()
        return message, context, run, fab

    def _check(fab: Any, run: Any) -> Verdict:
        base_dir = None
        try:
            approvals, path = load()
            base_dir = path.parent
        except ApprovalError as error:
            approvals = error
        return decide(
            content=fab.content,
            sent_hash=fab.hash_str,
            override_config=run.override_config,
            approvals=approvals,
            base_dir=base_dir,
        )

    def install_from_fab(fab_file: Any, *args: Any, **kwargs: Any) -> Any:
        if checked["refusal"] is not None:
            raise checked["refusal"]
        if not isinstance(fab_file, bytes) or fab_file != checked["content"]:
            # Not the bytes that were checked: nothing unchecked is ever unpacked.
            data = fab_file if isinstance(fab_file, bytes) else b""
            raise AppRefused("A3", hashlib.sha256(data).hexdigest())
        folder = checked["folder"]
        if folder is None or args or set(kwargs) - {"skip_prompt"}:
            return original_install(fab_file, *args, **kwargs)
        # One message at a time per app folder: another ClientApp of this node may be
        # unpacking the same app right now, and a half-copied folder is not a changed one.
        with _locked(folder.parent / f".{folder.name}.lock"):
            if folder.is_dir():
                if installed_as_approved(folder, fab_file):
                    return folder  # this message runs the files the approved bytes list
                # flwr would run the folder as it is: unpack the approved files again.
                shutil.rmtree(folder, ignore_errors=True)
            return original_install(fab_file, *args, **kwargs)

    module.pull_task_input = pull_task_input
    module.install_from_fab = install_from_fab


def flwr_clientapp_entry() -> tuple[Callable[[], None], ModuleType]:
    """flwr's own `flwr-clientapp` entry point and the module whose functions it calls."""
    try:
        version = importlib.metadata.version("flwr")
    except importlib.metadata.PackageNotFoundError:
        raise GuardError("flwr is not installed (fix: install flwr==1.42.0)") from None
    if version != FLWR_VERSION:
        raise GuardError(
            f"flwr {version} is installed, and this guard was checked against flwr "
            f"{FLWR_VERSION}'s run_clientapp only (fix: install flwr=={FLWR_VERSION}, or "
            "re-check deploy/app_guard.py against the new flwr first)"
        )
    points = [
        point
        for point in importlib.metadata.distribution("flwr").entry_points
        if point.group == "console_scripts" and point.name == GUARDED_PROGRAM
    ]
    if len(points) != 1:
        raise GuardError(f"flwr {version} declares no `{GUARDED_PROGRAM}` console script")
    entry = points[0].load()
    module = sys.modules.get(_RUN_CLIENTAPP_MODULE)
    runner = getattr(entry, "__globals__", {}).get("run_clientapp")
    if (
        module is None
        or runner is None
        or runner.__module__ != _RUN_CLIENTAPP_MODULE
        or not callable(getattr(module, "pull_task_input", None))
        or not callable(getattr(module, "install_from_fab", None))
    ):
        raise GuardError(
            f"flwr's `{GUARDED_PROGRAM}` no longer runs {_RUN_CLIENTAPP_MODULE}.run_clientapp "
            "with pull_task_input and install_from_fab (fix: re-check deploy/app_guard.py)"
        )
    return entry, module


def main() -> None:
    """`fedsec-clientapp` (also started as `flwr-clientapp` through GUARD_DIR)."""
    program = Path(sys.argv[0]).name
    if program in REFUSED_PROGRAMS:
        site_log(
            f"refused to start {program}: this data holder runs only ClientApps, each "
            f"checked by {PROGRAM}"
        )
        raise SystemExit(2)
    # One line per message: when each step of this ClientApp ran (deploy/message_times.py).
    times = ClientAppTimes()
    try:
        entry, module = flwr_clientapp_entry()
    except GuardError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    times.install(module)
    install_guard(module)
    # The message's objects, pulled from the SuperNode: retried promptly (object_pulls.py).
    from deploy.object_pulls import prompt_object_pulls

    prompt_object_pulls(module)
    entry()


if __name__ == "__main__":
    main()
