"""A development PKI for a deployment: the CA and the SuperLink's TLS certificate.

Layout written by `write_pki` (the compose file mounts these exact names):

    OUT/ca.crt               the CA every party trusts (public: give it to data holders)
    OUT/ca.key               the CA's key: keep it off every server, it signs new certificates
    OUT/server.crt|.key      the TLS certificate of the SuperLink and the Fleet proxy

No SuperNode keys: a node key made here would let this host's operator act as that data
holder. Each data holder makes its own (`fedsec node keygen`, deploy/node_keys.py) and
hands over only the public key, which the model team registers.

Existing files are kept, never overwritten. To change the server's host names, delete
`server.crt` and `server.key` first.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names the SuperLink is reached by: compose service names (data holders reach the proxy,
# the proxy and the ServerApp reach the SuperLink) and loopback (the model team's side).
DEFAULT_HOSTS = ("superlink", "fleet-proxy", "localhost", "127.0.0.1")
CA_VALID_DAYS = 3650
SERVER_VALID_DAYS = 825  # the longest leaf lifetime clients still accept
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class PkiPaths:
    """Where each file of the PKI lives under one folder."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def legacy_node_keys(self) -> list[Path]:
        """Node private keys an older `fedsec certs --node` wrote here (to be retired)."""
        return sorted((self.root / "nodes").glob("*.key"))


def validate_hosts(hosts: Sequence[str]) -> list[str]:
    """Host names and IP addresses for the server certificate; raises ValueError on junk."""
    if not hosts:
        raise ValueError("no host names given (fix: pass at least one --host, e.g. localhost)")
    for host in hosts:
        if not _is_ip(host) and not _HOST_NAME.match(host):
            raise ValueError(
                f"host {host!r} is neither a DNS name nor an IP address "
                "(fix: pass the name data holders use to reach the proxy)"
            )
    return list(dict.fromkeys(hosts))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    return x509.SubjectAlternativeName(names)


def new_ca(
    *, common_name: str, now: dt.datetime, valid_days: int = CA_VALID_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def server_certificate(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    now: dt.datetime,
    valid_days: int = SERVER_VALID_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate (P-256) for every name in `hosts`, signed by the CA."""
    hosts = validate_hosts(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    """Create `path` (never replace it); secrets are readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    with os.fdopen(os.open(path, flags, 0o600 if secret else 0o644), "wb") as stream:
        stream.write(data)


def write_pki(out_dir: Path, *, hosts: Sequence[str], now: dt.datetime | None = None) -> list[Path]:
    """Write whatever of the CA and server certificate is missing; returns the files written.

    The only private keys it ever writes are the CA's and the server's.
    """
    hosts = validate_hosts(hosts)
    now = now or dt.datetime.now(dt.UTC)
    paths = PkiPaths(out_dir)
    written: list[Path] = []
    if paths.ca_cert.exists() != paths.ca_key.exists():
        raise ValueError(
            f"{out_dir}: has only one of ca.crt and ca.key "
            "(fix: restore the other file, or start from an empty folder)"
        )
    if paths.ca_cert.exists():
        ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths.ca_key}: not an EC key (fix: start from an empty folder)")
    else:
        ca_key, ca_cert = new_ca(common_name="fedsec development CA", now=now)
        _write(paths.ca_key, _pem_key(ca_key), secret=True)
        _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), secret=False)
        written += [paths.ca_key, paths.ca_cert]
    if not paths.server_cert.exists():
        if paths.server_key.exists():
            raise ValueError(
                f"{paths.server_key}: exists without server.crt "
                "(fix: delete it to issue a new server certificate)"
            )
        key, cert = server_certificate(ca_key=ca_key, ca_cert=ca_cert, hosts=hosts, now=now)
        _write(paths.server_key, _pem_key(key), secret=True)
        _write(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM), secret=False)
        written += [paths.server_key, paths.server_cert]
    return written


def server_hosts(cert_path: Path) -> list[str]:
    """The DNS names and IP addresses a server certificate is valid for."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        *san.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
    ]


NODE_FLAG_REMOVED = (
    "--node: fedsec certs no longer makes node keys, since whoever makes a node's private "
    "key can act as that data holder (fix: each data holder runs `fedsec node keygen "
    "--out DIR --name NAME` on its own host and sends you NAME.pub for `fedsec node register`)"
)


def certs_command(out_dir: Path, *, hosts: list[str]) -> int:
    """`fedsec certs`: write the CA and the server certificate; 0 on success, 2 on an error.

    The server certificate covers DEFAULT_HOSTS (the compose service names and loopback)
    plus `hosts`: the names data holders on other machines use to reach the proxy.
    """
    try:
        written = write_pki(out_dir, hosts=[*DEFAULT_HOSTS, *hosts])
    except (ValueError, OSError) as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    paths = PkiPaths(out_dir)
    print(f"server certificate valid for: {', '.join(server_hosts(paths.server_cert))}")
    if not written:
        print(f"{out_dir}: nothing to do, every file exists")
    legacy = paths.legacy_node_keys
    if legacy:
        print(
            f"fedsec: warning: {len(legacy)} node private key(s) in {legacy[0].parent} were made "
            "on this host by an older `fedsec certs --node` (fix: have each data holder run "
            "`fedsec node keygen`, register the new .pub, then delete these files)",
            file=sys.stderr,
        )
    print(
        f"keep {paths.ca_key} offline; give data holders {paths.ca_cert}; each data holder "
        "makes its own node key with `fedsec node keygen` and sends you only its .pub for "
        "`fedsec node register`"
    )
    return 0
