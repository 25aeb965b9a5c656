"""Domain normalisation (scalar and vectorised) and registered domains from the bundled PSL."""

from __future__ import annotations

import socket

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import domains
from client.domains import (
    REASON_PREFIX,
    normalise_domain,
    normalise_domain_array,
    normalise_domains,
    registered_domain,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WWW.Example.COM", "www.example.com"),
        ("www.example.com.", "www.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.de.", "xn--bcher-kva.de"),
        ("ＥＸＡＭＰＬＥ。com", "example.com"),  # full-width letters and dot (UTS46 mapping)
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),  # punycode passes through untouched
        ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("_sip._tcp.example.com", "_sip._tcp.example.com"),
        ("r3---sn-ab5l6nzr.googlevideo.com", "r3---sn-ab5l6nzr.googlevideo.com"),
        ("4.3.2.1.in-addr.arpa", "4.3.2.1.in-addr.arpa"),
        ("b.a.9.8.ip6.arpa.", "b.a.9.8.ip6.arpa"),
        ("localhost", "localhost"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (".".join(["a" * 63] * 3 + ["b" * 61]), ".".join(["a" * 63] * 3 + ["b" * 61])),  # 253
    ],
)
def test_valid_names(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        (None, "empty"),
        (".", "empty"),
        ("a..b.com", "empty-label"),
        (".example.com", "empty-label"),
        ("example.com..", "empty-label"),  # only one trailing dot is stripped
        ("a" * 64 + ".com", "label-too-long"),
        (".".join(["a" * 63] * 3 + ["b" * 62]), "name-too-long"),  # 254
        ("-leading.example.com", "hyphen"),
        ("trailing-.example.com", "hyphen"),
        ("example.com-", "hyphen"),
        ("1.2.3.4", "numeric-tld"),
        ("example.123", "numeric-tld"),
        ("a b.example.com", "bad-char"),
        ("*.example.com", "bad-char"),
        ("example.com\n", "bad-char"),
        ("a\tb.example", "bad-char"),
        ("i\u2764.ws", "idna"),  # emoji: not IDNA 2008
        ("a\u200db.example", "idna"),  # zero-width joiner out of context
    ],
)
def test_invalid_names(raw: str | None, reason: str) -> None:
    assert normalise_domain(raw) == (None, reason)
    assert (REASON_PREFIX + reason).startswith("invalid-domain:")


def test_bulk_matches_scalar() -> None:
    raw = ["A.com", None, "bücher.de", "a..b", "x.com.", "", "_srv._tcp.x.org", "1.2.3.4"]
    names, reasons = normalise_domains(raw)
    assert list(zip(names, reasons, strict=True)) == [normalise_domain(value) for value in raw]
    assert normalise_domains([]) == ([], [])


def test_arrow_form_accepts_chunked_arrays() -> None:
    chunked = pa.chunked_array([["A.example"], ["b..example", None]])
    names, reasons = normalise_domain_array(chunked)
    assert names.to_pylist() == ["a.example", None, None]
    assert reasons.to_pylist() == [None, "empty-label", "empty"]


_DOMAINISH = st.text(st.sampled_from("aZ09-_.xn\u00fc\u3002 \t\\*\u0661"), max_size=70)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _DOMAINISH, st.text(max_size=30)), max_size=30))
def test_vectorised_path_agrees_with_scalar(raw: list[str | None]) -> None:
    names, reasons = normalise_domains(raw)
    assert list(zip(names, reasons, strict=True)) == [normalise_domain(value) for value in raw]


@settings(max_examples=300, deadline=None)
@given(_DOMAINISH)
def test_normalised_names_are_fixed_points(raw: str) -> None:
    name, reason = normalise_domain(raw)
    assert (name is None) != (reason is None)
    if name is not None:
        assert normalise_domain(name) == (name, None)
        assert name.isascii() and name == name.lower() and len(name) <= 253
    else:
        assert reason in {
            "empty",
            "name-too-long",
            "empty-label",
            "label-too-long",
            "bad-char",
            "hyphen",
            "numeric-tld",
            "idna",
        }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.b.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("www.example.com", "example.com"),
        # ICANN section only: private suffixes group CDN and hosting names by provider
        ("d123.cloudfront.net", "cloudfront.net"),
        ("foo.bar.cloudfront.net", "cloudfront.net"),
        ("someone.github.io", "github.io"),
        ("co.uk", "co.uk"),  # itself a public suffix
        ("com", "com"),
        ("host.corp.zz", "corp.zz"),  # unknown TLD: the PSL default rule '*'
        ("4.3.2.1.in-addr.arpa", "1.in-addr.arpa"),
        ("shop.xn--p1ai", "shop.xn--p1ai"),  # .рф in punycode
        ("a.b.xn--fiqs8s", "b.xn--fiqs8s"),  # .中国
    ],
)
def test_registered_domain(name: str, expected: str) -> None:
    assert registered_domain(name) == expected


def test_public_suffix_list_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the public suffix list must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    domains._public_suffix_list.cache_clear()
    registered_domain.cache_clear()
    assert registered_domain("x.y.example.co.uk") == "example.co.uk"
    assert registered_domain.cache_info().currsize == 1
