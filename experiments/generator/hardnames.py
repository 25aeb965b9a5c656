"""Benign names that look machine-made: CDN/cloud hashes, telemetry ids, internal, PTR, mDNS."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from experiments.generator import data, lexicon
from experiments.generator.benign import Named

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
REGIONS = (
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
)


def _chars(rng: np.random.Generator, alphabet: str, length: int) -> str:
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=length))


def _word(rng: np.random.Generator) -> str:
    return data.EN_WORDS[rng.integers(len(data.EN_WORDS))]


def _cdn_templates(rng: np.random.Generator) -> list[tuple[float, Callable[[], str]]]:
    hexa = "0123456789abcdef"
    sn = "abcdefghklnrstyz0123456789"  # googlevideo's sn- alphabet is narrow
    return [
        (3, lambda: f"d{_chars(rng, ALNUM, 13)}.cloudfront.net"),
        (
            2,
            lambda: (
                f"e{rng.integers(1, 99999)}."
                f"{rng.choice(('a', 'b', 'd', 'dscb', 'dscx', 'g'))}.akamaiedge.net"
            ),
        ),
        (1, lambda: f"a{rng.integers(1, 9999)}.dscg{rng.integers(1, 10)}.akamai.net"),
        (3, lambda: f"r{rng.integers(1, 21)}---sn-{_chars(rng, sn, 8)}.googlevideo.com"),
        (1, lambda: f"r{rng.integers(1, 9)}---sn-{_chars(rng, sn, 8)}.gvt1.com"),
        (2, lambda: f"{_storage_account(rng)}.blob.core.windows.net"),
        (1, lambda: f"{_word(rng)}-{_chars(rng, ALNUM, 16)}.z01.azurefd.net"),
        (1, lambda: f"{_word(rng)}{rng.integers(1, 99)}.azureedge.net"),
        (
            1,
            lambda: (
                f"{_word(rng)}-{_word(rng)}-{_chars(rng, ALNUM, 4)}"
                f".s3.{rng.choice(REGIONS)}.amazonaws.com"
            ),
        ),
        (1, lambda: f"{_chars(rng, ALNUM, 10)}.execute-api.{rng.choice(REGIONS)}.amazonaws.com"),
        (
            1,
            lambda: (
                f"{_word(rng)}-prod-{rng.integers(10**8, 10**10)}"
                f".{rng.choice(REGIONS)}.elb.amazonaws.com"
            ),
        ),
        (
            1,
            lambda: (
                "ec2-"
                + "-".join(str(v) for v in rng.integers(1, 255, size=4))
                + ".compute-1.amazonaws.com"
            ),
        ),
        (
            1,
            lambda: (
                f"{rng.integers(10**11, 10**12)}-{_chars(rng, ALNUM, 32)}"
                ".apps.googleusercontent.com"
            ),
        ),
        (1, lambda: f"{_word(rng)}-{_word(rng)}-{rng.integers(10000, 99999)}.herokuapp.com"),
        (1, lambda: f"{_word(rng)}-{_chars(rng, hexa, 6)}.web.app"),
        (1, lambda: f"{_word(rng)}{_word(rng)}-my.sharepoint.com"),
        (1, lambda: f"www-{_word(rng)}{_word(rng)}-com.cdn.ampproject.org"),
        (1, lambda: f"{_word(rng)}.map.fastly.net"),
        (1, lambda: f"{_word(rng)}.{rng.choice(('com', 'de', 'net'))}.edgekey.net"),
        (1, lambda: f"lh{rng.integers(3, 7)}.googleusercontent.com"),
        (
            1,
            lambda: (
                f"scontent-{rng.choice(('fra', 'ams', 'lhr', 'iad'))}{rng.integers(1, 6)}"
                f"-{rng.integers(1, 3)}.xx.fbcdn.net"
            ),
        ),
        (1, lambda: f"{_chars(rng, hexa, 12)}.cdn.jsdelivr.net"),
        (1, lambda: _home_device(rng)),
    ]


def _home_device(rng: np.random.Generator) -> str:
    """A NAS, camera or hobby server under a dynamic-DNS zone (DGAs use the same zones)."""
    owner = (
        _word(rng) if rng.random() < 0.5 else lexicon.SURNAMES[rng.integers(len(lexicon.SURNAMES))]
    )
    device = ("nas", "cam", "home", "vpn", "plex", "cloud", "pi", "server", "")[rng.integers(9)]
    label = f"{owner}{device}" if rng.random() < 0.6 else f"{owner}-{device or 'home'}"
    if rng.random() < 0.25:
        label += str(rng.integers(1, 100))
    parents = lexicon.HOME_DEVICE_PARENTS
    return f"{label}.{parents[rng.integers(len(parents))]}"


def _storage_account(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return "st" + _chars(rng, "0123456789abcdef", int(rng.integers(10, 22)))
    return f"{_word(rng)}{rng.choice(('prod', 'dev', 'diag', 'logs'))}{rng.integers(1, 99):02d}"


def cdn_names(rng: np.random.Generator, count: int) -> Named:
    """Hashed hostnames under CDN and cloud suffixes (many are private public-suffix entries)."""
    templates = _cdn_templates(rng)
    weights = np.array([weight for weight, _ in templates], dtype=float)
    picks = rng.choice(len(templates), size=count, p=weights / weights.sum())
    return [(templates[i][1](), "cname") for i in picks]


def telemetry_names(rng: np.random.Generator, count: int) -> Named:
    """Telemetry, push, update and reputation look-ups that embed ids, hashes or addresses."""
    hexa = "0123456789abcdef"
    b32 = "abcdefghijklmnopqrstuvwxyz234567"
    templates: list[tuple[str, Callable[[], str]]] = [
        (
            "web",
            lambda: (
                f"o{rng.integers(10**5, 10**7)}.ingest.{rng.choice(('', 'us.', 'de.'))}sentry.io"
            ),
        ),
        (
            "web",
            lambda: (
                f"{rng.choice(('eu', 'us', 'asia'))}-v{rng.integers(10, 21)}"
                ".events.data.microsoft.com"
            ),
        ),
        ("web", lambda: f"{rng.integers(1, 50)}-courier.push.apple.com"),
        ("web", lambda: f"{rng.integers(1, 9)}.tlu.dl.delivery.mp.microsoft.com"),
        (
            "web",
            lambda: (
                f"{_chars(rng, hexa, 8)}-{_chars(rng, hexa, 4)}-{_chars(rng, hexa, 4)}"
                f".clientlogs.{_word(rng)}app.io"
            ),
        ),
        ("web", lambda: f"{_word(rng)}corp.sc.omtrdc.net"),
        ("web", lambda: f"browser-intake-{rng.choice(('datadoghq.com', 'us5-datadoghq.com'))}"),
        ("web", lambda: f"{_chars(rng, hexa, 16)}.{_chars(rng, hexa, 16)}.avqs.mcafee.com"),
        ("web", lambda: "0.0.0.0.1.0.0.4e." + _chars(rng, hexa, 32) + ".avts.mcafee.com"),
        ("web", lambda: f"p4.{_chars(rng, b32, 26)}.{_chars(rng, b32, 26)}.sophosxl.net"),
        (
            "nx",
            lambda: ".".join(str(v) for v in rng.integers(1, 255, size=4)) + ".zen.spamhaus.org",
        ),
        (
            "nx",
            lambda: (
                ".".join(str(v) for v in rng.integers(1, 255, size=4)) + ".b.barracudacentral.org"
            ),
        ),
        ("web", lambda: f"{_chars(rng, hexa, 32)}.clo.footprintdns.com"),
        (
            "web",
            lambda: f"{rng.integers(10**9, 10**10)}.{rng.choice(('fp', 'bg'))}.measure.office.com",
        ),
        (
            "web",
            lambda: (
                f"{_chars(rng, ALNUM, 20)}.{rng.choice(('ipv4', 'ipv6'))}"
                ".teams.events.data.microsoft.com"
            ),
        ),
        ("web", lambda: f"update-{_chars(rng, hexa, 6)}.{_word(rng)}soft.com"),
    ]
    picks = rng.integers(0, len(templates), size=count)
    return [(templates[i][1](), templates[i][0]) for i in picks]


def internal_names(rng: np.random.Generator, count: int, *, internal_domain: str) -> Named:
    """The site's namespace: hosts, AD SRV records, WPAD, leaked search suffixes, Chrome probes."""
    roles = ("fs", "dc", "sql", "web", "app", "prn", "ws", "vpn", "mail", "proxy", "jump", "backup")
    templates: list[tuple[str, Callable[[], str]]] = [
        ("internal", lambda: f"{rng.choice(roles)}{rng.integers(1, 40):02d}.{internal_domain}"),
        (
            "internal",
            lambda: (
                f"{rng.choice(('desktop', 'laptop'))}-{_chars(rng, ALNUM, 7)}.{internal_domain}"
            ),
        ),
        (
            "internal",
            lambda: (
                f"{rng.choice(('ws', 'nb', 'pc'))}-{rng.integers(1000, 9999)}.{internal_domain}"
            ),
        ),
        ("srv", lambda: f"_ldap._tcp.{rng.choice(('dc', 'pdc', 'gc'))}._msdcs.{internal_domain}"),
        ("srv", lambda: f"_kerberos._tcp.{_word(rng)}-site._sites.dc._msdcs.{internal_domain}"),
        ("srv", lambda: f"_ldap._tcp.default-first-site-name._sites.{internal_domain}"),
        ("nx", lambda: f"wpad.{internal_domain}"),
        (
            "nx",
            lambda: f"{rng.choice(data.GLOBAL_POPULAR[:40])}.{internal_domain}",
        ),  # search-suffix leak
        (
            "nx",
            lambda: _chars(rng, "abcdefghijklmnopqrstuvwxyz", int(rng.integers(7, 16))),
        ),  # Chrome probe
        ("nx", lambda: f"isatap.{internal_domain}"),
        (
            "internal",
            lambda: (
                f"{rng.choice(('printer', 'nas', 'cam', 'ap'))}-{rng.integers(1, 30)}"
                f"-{rng.choice(('fl1', 'fl2', 'lab'))}.{internal_domain}"
            ),
        ),
    ]
    picks = rng.choice(
        len(templates), size=count, p=_normalised((4, 3, 3, 1, 1, 1, 1, 1, 2, 0.3, 1))
    )
    return [(templates[i][1](), templates[i][0]) for i in picks]


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    return array / array.sum()


def ptr_names(rng: np.random.Generator, count: int, *, subnet: tuple[int, int]) -> Named:
    """Reverse look-ups: internal and public IPv4, and 32-nibble ip6.arpa names."""
    named: Named = []
    for roll in rng.random(count):
        if roll < 0.5:
            c, d = rng.integers(0, 255, size=2)
            named.append((f"{d}.{c}.{subnet[1]}.{subnet[0]}.in-addr.arpa", "ptr"))
        elif roll < 0.85:
            a, b, c, d = rng.integers(1, 255, size=4)
            named.append((f"{d}.{c}.{b}.{a}.in-addr.arpa", "ptr" if roll < 0.7 else "nx"))
        elif roll < 0.95:
            nibbles = ".".join(_chars(rng, "0123456789abcdef", 32))
            named.append((f"{nibbles}.ip6.arpa", "ptr"))
        else:
            named.append(
                (
                    f"lb._dns-sd._udp.0.{rng.integers(0, 255)}"
                    f".{subnet[1]}.{subnet[0]}.in-addr.arpa",
                    "nx",
                )
            )
    return named


MDNS_NAMES = (
    "_googlecast._tcp.local",
    "_spotify-connect._tcp.local",
    "_airplay._tcp.local",
    "_raop._tcp.local",
    "_companion-link._tcp.local",
    "_ipp._tcp.local",
    "_printer._tcp.local",
    "_sleep-proxy._udp.local",
    "_homekit._tcp.local",
    "brother hl-l2350dw series._ipp._tcp.local",
    "meeting room tv._airplay._tcp.local",
    "_services._dns-sd._udp.local",
)


def mdns_names(rng: np.random.Generator, count: int) -> Named:
    named: Named = [("_dns.resolver.arpa", "ddr")]  # RFC 9462 resolver discovery (SVCB)
    named += [(name, "mdns") for name in MDNS_NAMES]
    return named[: max(count, 2)]
