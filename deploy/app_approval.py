"""Which app may run on a data holder's node: `fedsec app hash|keygen|sign|approve`.

The model team names an app by the SHA-256 flwr computes for it (`flwr run` hashes the FAB
it builds from the app folder; the build is deterministic) and may sign that hash with an
ed25519 key. Each data holder lists, in an approval file it owns, the hashes it approves or
the model team's public keys whose signatures it accepts. `fedsec-clientapp`
(deploy/app_guard.py) checks every app against that file before any of its code runs.

    model team:   fedsec app hash [APP_DIR]                  -> the hash, sent to data holders
                  fedsec app keygen --out DIR --name NAME    -> NAME.key (0600), NAME.pub
                  fedsec app sign --key NAME.key [APP_DIR]   -> --run-config "app-signature='…'"
    data holder:  fedsec app approve --file FILE --hash H | --signer PUB [--require-signature]
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import tomli_w
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from common.files import write_atomic
from deploy.app_guard import (
    SIGNATURE_KEY,
    ApprovalError,
    ApprovedApps,
    load_approvals,
    load_signer,
    normalise_hash,
    parse_approvals,
    public_key_text,
    sign_hash,
)

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
APPROVAL_HEADER = """\
# Apps this data holder lets run on its node. fedsec-clientapp reads this file (the path in
# FEDSEC_APPROVED_APPS) for every message, before any of the app's code runs.
#   hashes             SHA-256 of approved apps (`fedsec app hash` on the model team's side)
#   signers            the model team's ed25519 public keys (`fedsec app keygen`): an app whose
#                      hash one of them signed (run config app-signature) is approved too
#   require_signature  true: only signed apps run, listed hash or not
# Written by `fedsec app approve`, which rewrites the whole file (comments are not kept).
"""


def app_hash(app_dir: Path) -> str:
    """The SHA-256 `flwr run APP_DIR` computes: of the FAB flwr builds from the folder."""
    from flwr.cli.build import build_fab_from_disk

    app_dir = app_dir.expanduser()
    if not (app_dir / "pyproject.toml").is_file():
        raise ValueError(
            f"{app_dir}: no pyproject.toml, so not a Flower app folder (fix: pass the "
            "folder you give to `flwr run`)"
        )
    try:
        fab = build_fab_from_disk(app_dir)
    except Exception as error:  # flwr raises ValueError, click and its own errors here
        text = " ".join(str(getattr(error, "message", error)).split())
        raise ValueError(
            f"{app_dir}: flwr cannot build the app ({text}) (fix: make `flwr build --app "
            f"{app_dir}` succeed)"
        ) from None
    return hashlib.sha256(fab).hexdigest()


def hash_command(app_dir: Path) -> int:
    try:
        print(app_hash(app_dir))
    except ValueError as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------ the model team's key


def _create(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with exactly `mode`; never replace a file (O_EXCL)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(stream.fileno(), mode)
        stream.write(data)


def write_signing_key(out_dir: Path, name: str) -> tuple[Path, Path, str]:
    """NAME.key (OpenSSH ed25519, 0600) and NAME.pub under `out_dir`; never replaces a file.

    Returns (private, public, public key in base64).
    """
    if not KEY_NAME.match(name):
        raise ValueError(
            f"key name {name!r}: use letters, digits, '.', '_' or '-' (fix: e.g. --name model-team)"
        )
    private, public = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    existing = [str(p) for p in (private, public) if p.exists() or p.is_symlink()]
    if existing:
        raise FileExistsError(
            f"{', '.join(existing)}: exists, not replaced (fix: keep signing with this key, "
            "or move both files away first; data holders must then approve the new key)"
        )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _create(private, private_bytes, 0o600)
    try:
        _create(public, public_line + f" {name}\n".encode(), 0o644)
    except BaseException:
        private.unlink(missing_ok=True)
        raise
    return private, public, public_key_text(key.public_key())


def keygen_command(out_dir: Path, *, name: str) -> int:
    try:
        private, public, text = write_signing_key(out_dir, name)
    except (ValueError, OSError) as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {private} (private signing key, mode 0600: it stays with the model team)")
    print(f"wrote {public} (public key)")
    print(f"public key: {text}")
    print(
        "give data holders the public key by a channel they trust; each approves it with: "
        f"fedsec app approve --file APPROVED --signer {text}"
    )
    return 0


def load_signing_key(path: Path) -> ed25519.Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(
            f"{path}: cannot read it ({error.strerror}) (fix: pass the NAME.key "
            "`fedsec app keygen` wrote)"
        ) from None
    key = None
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            key = loader(data, password=None)
            break
        except TypeError:
            raise ValueError(
                f"{path}: the key is encrypted (fix: use an unencrypted key from "
                "`fedsec app keygen`, kept on the model team's host)"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            continue
    if key is None:
        raise ValueError(
            f"{path}: not an OpenSSH or PEM private key (fix: pass the NAME.key "
            "`fedsec app keygen` wrote, not NAME.pub)"
        )
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: not an ed25519 key (fix: make one with `fedsec app keygen`)")
    return key


def sign_command(key_path: Path, app_dir: Path) -> int:
    try:
        key = load_signing_key(key_path)
        digest = app_hash(app_dir)
    except ValueError as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    signature = sign_hash(key, digest)
    print(f"app sha256:{digest}")
    print(f"signed by: {public_key_text(key.public_key())}")
    print(f"signature: {signature}")
    print(f"--run-config \"{SIGNATURE_KEY}='{signature}'\"")
    print(
        "add that option to `flwr run` (with your other --run-config options); sign again "
        "after any change to the app: the signature covers this hash only",
        file=sys.stderr,
    )
    return 0


# ------------------------------------------------------------- the data holder's file


def render_approvals(approvals: ApprovedApps) -> str:
    data = {
        "hashes": list(approvals.hashes),
        "signers": list(approvals.signers),
        "require_signature": approvals.require_signature,
    }
    return APPROVAL_HEADER + tomli_w.dumps(data, multiline_strings=False)


def approve(
    path: Path,
    *,
    hashes: Sequence[str] = (),
    signers: Sequence[str] = (),
    require_signature: bool | None = None,
) -> tuple[ApprovedApps, list[str]]:
    """Add hashes and signers to the approval file at `path` (created if missing).

    A signer given as a key file is written inline (base64), so the file stands alone where
    the node mounts it. Returns the new approvals and one line per change.
    """
    current = load_approvals(path) if path.exists() else ApprovedApps()
    new_hashes = list(current.hashes)
    new_signers = list(current.signers)
    changes = []
    for value in hashes:
        try:
            digest = normalise_hash(value)
        except ValueError as error:
            raise ApprovalError(f"--hash: {error}") from None
        if digest in new_hashes:
            changes.append(f"app sha256:{digest} was already approved")
        else:
            new_hashes.append(digest)
            changes.append(f"approved app sha256:{digest}")
    known = {public_key_text(key) for key in current.signer_keys(base_dir=path.parent)}
    for value in signers:
        try:
            text = public_key_text(load_signer(value))
        except ValueError as error:
            raise ApprovalError(f"--signer: {error}") from None
        if text in known:
            changes.append(f"signer {text} was already approved")
        else:
            new_signers.append(text)
            known.add(text)
            changes.append(f"approved signer {text}: apps it signs may run")
    flag = current.require_signature if require_signature is None else require_signature
    if flag != current.require_signature:
        changes.append(
            "only apps signed by an approved signer may run now"
            if flag
            else "apps with a listed hash may run unsigned now"
        )
    rendered = render_approvals(
        ApprovedApps.model_construct(
            hashes=tuple(new_hashes), signers=tuple(new_signers), require_signature=flag
        )
    )
    # Validate exactly what is written, as fedsec-clientapp will read it.
    updated = parse_approvals(rendered, source=path, base_dir=path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, rendered)
    return updated, changes


def approve_command(
    path: Path,
    *,
    hashes: list[str],
    signers: list[str],
    require_signature: bool | None,
) -> int:
    if not hashes and not signers and require_signature is None:
        print(
            "fedsec: error: nothing to approve (fix: pass --hash HASH, --signer PUBLIC_KEY "
            "or --require-signature)",
            file=sys.stderr,
        )
        return 2
    try:
        approvals, changes = approve(
            path, hashes=hashes, signers=signers, require_signature=require_signature
        )
    except (ApprovalError, OSError) as error:
        for line in str(error).splitlines():
            print(f"fedsec: error: {line}", file=sys.stderr)
        return 2
    for line in changes:
        print(line)
    print(
        f"{path}: {len(approvals.hashes)} approved hash(es), {len(approvals.signers)} "
        f"signer(s), require_signature = {str(approvals.require_signature).lower()}; "
        "applies from the next message, no restart needed"
    )
    return 0
