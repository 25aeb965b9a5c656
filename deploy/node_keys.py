"""A data holder's SuperNode key, made on the data holder's own host: `fedsec node keygen`.

The SuperLink authenticates each SuperNode by an ECDSA key pair. Whoever holds the private
key can act as that data holder, so it is made where it is used and never leaves that
host; only the public key goes to the model team, who registers it
(`fedsec node register`, which runs `flwr supernode register`). Both sides print the
public key's fingerprint so they can compare it by another channel (a call, a signed mail)
before the key is trusted.

Files written by `write_node_key(DIR, NAME)`, never replacing an existing file:

    DIR/NAME.key   the private key, OpenSSH format, mode 0600: what flower-supernode's
                   `--auth-supernode-private-key` loads (as `ssh-keygen -t ecdsa -b 384`)
    DIR/NAME.pub   the public key, one OpenSSH line: what `flwr supernode register` loads
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
KEYGEN_HINT = "fedsec node keygen --out DIR --name NAME"


@dataclass(frozen=True)
class NodeKeyFiles:
    """Where one data holder's key pair lives."""

    private: Path
    public: Path

    @classmethod
    def under(cls, out_dir: Path, name: str) -> NodeKeyFiles:
        return cls(private=out_dir / f"{name}.key", public=out_dir / f"{name}.pub")


def validate_node_name(name: str) -> str:
    if not NODE_NAME.match(name):
        raise ValueError(
            f"node name {name!r}: use letters, digits, '.', '_' or '-' "
            "(fix: name the key after the site, e.g. site-00)"
        )
    return name


def node_key_pair(*, comment: str) -> tuple[bytes, bytes]:
    """(private, public) ECDSA P-384 key in OpenSSH format, as `ssh-keygen -t ecdsa -b 384`."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + f" {comment}\n".encode()


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key's SHA-256 fingerprint as OpenSSH prints it (`ssh-keygen -l -f NAME.pub`)."""
    line = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """An ECDSA public key in OpenSSH format; ValueError (with the fix) for anything else."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(
            f"{path}: cannot read it ({error.strerror}) (fix: pass a NAME.pub)"
        ) from error
    if b"PRIVATE KEY" in data:
        raise ValueError(
            f"{path}: is a private key, which must never leave the data holder's host (fix: "
            "delete this copy, have the data holder make a new key with `fedsec node keygen` "
            "and send only NAME.pub)"
        )
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ValueError(
            f"{path}: not an OpenSSH public key ({error}) (fix: pass the NAME.pub a data "
            f"holder made with `{KEYGEN_HINT}`)"
        ) from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(
            f"{path}: not an ECDSA key (fix: pass the NAME.pub a data holder made with "
            f"`{KEYGEN_HINT}`, or `ssh-keygen -t ecdsa -b 384`)"
        )
    return key


def public_key_fingerprint(path: Path) -> str:
    return fingerprint(load_public_key(path))


def _create(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with exactly `mode` (never replace it: O_EXCL)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(stream.fileno(), mode)  # exact, whatever the umask
        stream.write(data)


def write_node_key(out_dir: Path, name: str) -> tuple[NodeKeyFiles, str]:
    """Make NAME.key (0600) and NAME.pub under `out_dir`; returns the files and fingerprint.

    Refuses (FileExistsError) if either file exists: a new key would lock the data holder
    out until the model team registers it, and the old key may still be in use.
    """
    files = NodeKeyFiles.under(out_dir, validate_node_name(name))
    existing = [str(p) for p in (files.private, files.public) if p.exists() or p.is_symlink()]
    if existing:
        raise FileExistsError(
            f"{', '.join(existing)}: exists, not replaced (fix: keep using this key, or move "
            "both files away and register the new NAME.pub with the model team)"
        )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = node_key_pair(comment=name)
    _create(files.private, private, 0o600)
    try:
        _create(files.public, public, 0o644)
    except BaseException:
        files.private.unlink(missing_ok=True)
        raise
    return files, public_key_fingerprint(files.public)


def keygen_command(out_dir: Path, *, name: str) -> int:
    """`fedsec node keygen`: the data holder's own key pair; 0 on success, 2 on an error."""
    try:
        files, key_fingerprint = write_node_key(out_dir, name)
    except (ValueError, OSError) as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {files.private} (private key, mode 0600)")
    print(f"wrote {files.public} (public key)")
    print(f"public key fingerprint: {key_fingerprint}")
    print(
        f"send {files.public} to the model team and read them the fingerprint by another "
        f"channel; {files.private} never leaves this host"
    )
    return 0
