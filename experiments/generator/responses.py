"""DNS answers for a (name, qtype): deterministic per name, so a host resolves alike everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from experiments.generator.streams import digest

QTYPE_CODES = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
    "SVCB": 64,
    "HTTPS": 65,
}
RCODE_CODES = {"NOERROR": 0, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}

# response kind -> (qtypes, probabilities)
QTYPE_MIX: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "web": (("A", "AAAA", "HTTPS", "TXT", "MX"), (0.52, 0.30, 0.15, 0.02, 0.01)),
    "cname": (("A", "AAAA", "HTTPS"), (0.6, 0.3, 0.1)),
    "nx": (("A", "AAAA"), (0.6, 0.4)),
    "internal": (("A", "AAAA", "SOA"), (0.72, 0.25, 0.03)),
    "srv": (("SRV",), (1.0,)),
    "ptr": (("PTR",), (1.0,)),
    "mdns": (("PTR",), (1.0,)),
    "ddr": (("SVCB",), (1.0,)),
    "dga": (("A", "AAAA"), (0.95, 0.05)),
}
PUBLIC_FIRST_OCTETS = (13, 23, 31, 34, 35, 52, 54, 104, 142, 151, 157, 172, 184, 185, 199, 212)
EDGE_SUFFIXES = (
    "edgekey.net",
    "akamaiedge.net",
    "cdn.cloudflare.net",
    "map.fastly.net",
    "trafficmanager.net",
    "l.google.com",
    "cloudfront.net",
    "azureedge.net",
)
CDN_SUFFIXES = EDGE_SUFFIXES + (
    "akamai.net",
    "akamaized.net",
    "googlevideo.com",
    "gvt1.com",
    "windows.net",
    "azurefd.net",
    "amazonaws.com",
    "fbcdn.net",
    "jsdelivr.net",
    "googleusercontent.com",
)
SINKHOLE_ADDRESSES = ("0.0.0.0", "127.0.0.1", "131.253.18.12", "216.218.185.162", "54.244.6.214")


@dataclass(frozen=True)
class Answer:
    rcode_name: str
    answers: str = "-"
    ttls: str = "-"
    authoritative: bool = False


def zeek_escape(name: str) -> str:
    r"""Zeek writes bytes outside printable ASCII (and the separator) as \xNN."""
    if name.isascii() and name.isprintable() and "\\" not in name:
        return name
    out = []
    for byte in name.encode("utf-8"):
        out.append(chr(byte) if 0x20 <= byte < 0x7F and byte != 0x5C else f"\\x{byte:02x}")
    return "".join(out)


@lru_cache(maxsize=256)
def _ttl(value: int) -> str:
    return f"{value:.6f}"


def _ipv4(seed: bytes, count: int) -> list[str]:
    return [
        f"{PUBLIC_FIRST_OCTETS[seed[i] % len(PUBLIC_FIRST_OCTETS)]}"
        f".{seed[i + 4]}.{seed[i + 8]}.{1 + seed[i + 12] % 254}"
        for i in range(count)
    ]


def _ipv6(seed: bytes, count: int) -> list[str]:
    prefixes = ("2606:4700", "2a00:1450", "2600:9000", "2a03:2880", "2620:1ec", "2001:4860")
    return [
        f"{prefixes[seed[i] % len(prefixes)]}:{seed[i + 4]:x}{seed[i + 8]:02x}::{seed[i + 12]:x}"
        for i in range(count)
    ]


def _registered_guess(name: str) -> str:
    labels = name.split(".")
    return (
        ".".join(labels[-3:])
        if len(labels[-1]) == 2 and len(labels) > 2 and len(labels[-2]) <= 3
        else ".".join(labels[-2:])
    )


def _chain(name: str, seed: bytes) -> list[str]:
    first = name.split(".")[0]
    suffix = EDGE_SUFFIXES[seed[15] % len(EDGE_SUFFIXES)]
    return [
        f"{first}.{_registered_guess(name)}.{suffix}"
        if seed[14] % 2
        else f"{first}-{seed[13]:x}.{suffix}"
    ]


def web_answer(name: str, qtype: str, *, cname: bool) -> Answer:
    seed = digest(name, qtype) if qtype in ("A", "AAAA", "MX") else b""
    host_seed = digest(name)
    on_edge = name.endswith(CDN_SUFFIXES)  # already the edge host: answered with addresses directly
    chain = _chain(name, host_seed) if not on_edge and (cname or host_seed[0] % 5 == 0) else []
    chain_ttls = [_ttl((60, 300, 3600)[host_seed[1] % 3])] * len(chain)
    record_ttl = _ttl((20, 60, 300, 3600)[host_seed[2] % 4])
    if qtype == "A":
        count = 1 + seed[0] % (4 if chain else 2)
        return Answer(
            "NOERROR",
            ",".join(chain + _ipv4(seed, count)),
            ",".join(chain_ttls + [record_ttl] * count),
        )
    if qtype == "AAAA":
        if host_seed[3] % 4 == 0:  # no IPv6: NOERROR without answers
            return Answer("NOERROR", ",".join(chain) or "-", ",".join(chain_ttls) or "-")
        count = 1 + seed[0] % 2
        return Answer(
            "NOERROR",
            ",".join(chain + _ipv6(seed, count)),
            ",".join(chain_ttls + [record_ttl] * count),
        )
    if qtype == "HTTPS":
        return Answer("NOERROR", ",".join(chain) or "(empty)", ",".join(chain_ttls) or "(empty)")
    registered = _registered_guess(name)
    if qtype == "TXT":
        text = f"v=spf1 include:_spf.{registered} ~all"
        return Answer("NOERROR", f"TXT {len(text)} {text}", _ttl(3600))
    return Answer("NOERROR", f"mx{1 + seed[0] % 3}.{registered}", _ttl(3600))  # MX


def internal_answer(
    name: str, qtype: str, *, internal_domain: str, subnet: tuple[int, int]
) -> Answer:
    seed = digest(name, qtype)
    if qtype == "A":
        return Answer(
            "NOERROR", f"{subnet[0]}.{subnet[1]}.{seed[0]}.{1 + seed[1] % 254}", _ttl(1200), True
        )
    if qtype in ("SOA", "SRV"):
        targets = [
            f"dc{1 + (seed[0] + i) % 3:02d}.{internal_domain}" for i in range(1 + seed[1] % 2)
        ]
        return Answer("NOERROR", ",".join(targets), ",".join([_ttl(600)] * len(targets)), True)
    return Answer("NOERROR", authoritative=True)  # AAAA on a v4-only internal host


def ptr_answer(name: str, *, internal_domain: str, subnet: tuple[int, int]) -> Answer:
    seed = digest(name, "PTR")
    labels = name.split(".")
    if name.endswith(f".{subnet[1]}.{subnet[0]}.in-addr.arpa"):
        if seed[0] % 5 == 0:
            return Answer("NXDOMAIN", authoritative=True)
        host = (
            f"ws-{seed[1] * 37 % 9000 + 1000}",
            f"desktop-{seed[2]:02x}{seed[3]:02x}q{seed[4] % 10}",
            f"prn{seed[5] % 30:02d}",
        )
        return Answer("NOERROR", f"{host[seed[6] % 3]}.{internal_domain}", _ttl(1200), True)
    if name.endswith(".ip6.arpa"):
        return Answer(
            "NOERROR",
            f"{''.join(labels[:4][::-1])}.ipv6."
            f"{('telekom.de', 'comcast.net', 'bbox.fr')[seed[0] % 3]}",
            _ttl(3600),
        )
    octets = labels[:4][::-1]
    styles = (
        f"server-{'-'.join(octets)}.{('fra', 'ams', 'iad', 'sin')[seed[0] % 4]}"
        f"{50 + seed[1] % 9}.r.cloudfront.net",
        f"{'-'.join(octets[::-1])}.static."
        f"{('isp-net.de', 'telecom.com.tr', 'ptr.example-hosting.net')[seed[2] % 3]}",
        f"{_ttl_free_host(seed)}.1e100.net",
    )
    return Answer("NOERROR", styles[seed[3] % 3], _ttl(86400))


def _ttl_free_host(seed: bytes) -> str:
    city = ("fra", "muc", "lhr", "ams")[seed[4] % 4]
    return f"{city}{seed[5] % 20:02d}s{seed[6] % 50:02d}-in-f{seed[7] % 20}"


def dga_answer(name: str, qtype: str, *, live: bool) -> Answer:
    """Most DGA names are unregistered (NXDOMAIN); the registered few point at C2 or a sinkhole."""
    seed = digest(name, "dga")
    if qtype == "A" and live:
        addresses = _ipv4(digest(name, "c2"), 1 + seed[0] % 2)
        return Answer("NOERROR", ",".join(addresses), ",".join([_ttl(300)] * len(addresses)))
    if qtype == "A" and seed[1] < 6:
        return Answer(
            "NOERROR",
            SINKHOLE_ADDRESSES[seed[2] % len(SINKHOLE_ADDRESSES)],
            _ttl((300, 86400)[seed[3] % 2]),
        )
    if live:
        return Answer("NOERROR")
    return Answer("NXDOMAIN")
