"""The dotted-quad fast path of IP anonymization gives exactly what the ``ipaddress`` path gives."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transform.enrichments.ip import _NAT64_LOCAL, IpAnonymizer, _embedded_ipv4, _masked_dotted_quad, first_valid_ip

PREFIXES = (None, 0, 1, 8, 16, 23, 24, 31, 32)
octet_texts = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(256, 999).map(str),
    st.integers(0, 99).map(lambda n: f"0{n}"),  # a leading zero: refused by ipaddress
    st.text("0123456789٣", min_size=0, max_size=4),  # a non-ASCII digit, empty parts
)
candidates = st.one_of(
    st.lists(octet_texts, min_size=3, max_size=5).map(".".join),
    st.text("0123456789.:abcdef ,|[]-", max_size=20),
)


def _slow(text: str, prefix: int | None) -> str | None:
    address = first_valid_ip(text)
    return IpAnonymizer(prefix, 48).mask(address) if address is not None else None


@settings(max_examples=800, deadline=None)
@given(candidates, st.sampled_from(PREFIXES))
def test_the_fast_path_answers_only_what_ipaddress_answers_and_the_same(text: str, prefix: int | None) -> None:
    fast = _masked_dotted_quad(text, prefix)
    if fast is not None:
        assert fast == _slow(text, prefix)


@pytest.mark.parametrize(
    ("text", "prefix", "expected"),
    [
        ("203.0.113.77", 24, "203.0.113.0"),
        ("203.0.113.77", 16, "203.0.0.0"),
        ("203.0.113.77", None, "203.0.113.77"),
        ("255.255.255.255", 31, "255.255.255.254"),
        ("010.0.0.1", 24, None),  # octal-looking: the slow path decides (and refuses it)
        ("1.2.3", 24, None),
        ("1.2.3.4:443", 24, None),  # a port: the slow path strips it
    ],
)
def test_the_fast_path_on_known_texts(text: str, prefix: int | None, expected: str | None) -> None:
    assert _masked_dotted_quad(text, prefix) == expected
    anonymized = IpAnonymizer(prefix, 48).user_ipaddress(text)
    assert anonymized == _slow(text, prefix)


def _reference_masked(text: str, ipv4_prefix: int | None, ipv6_prefix: int | None) -> str | None:
    """The masking as ipaddress alone gives it: the first valid item, its embedded IPv4 if any,
    then the network address of its prefix (IpAnonymizer's rules, written the slow way)."""
    address = first_valid_ip(text)
    if address is None:
        return None
    prefix = ipv4_prefix
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (_embedded_ipv4(address) if ipv6_prefix is not None else None)
        if embedded is not None:
            address = embedded
        elif ipv6_prefix is not None and address in _NAT64_LOCAL:
            prefix = min(ipv6_prefix, _NAT64_LOCAL.prefixlen)
        else:
            prefix = ipv6_prefix
    if prefix is None:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


ipv6_texts = st.one_of(
    st.integers(0, (1 << 128) - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    st.sampled_from(
        ["::ffff:203.0.113.9", "2002:cb00:7109::1", "64:ff9b::203.0.113.9", "64:ff9b:1::1", "fe80::1%eth0"]
    ),
)
chains = st.lists(
    st.one_of(candidates, ipv6_texts, ipv6_texts.map(lambda a: f"[{a}]:443"), st.just("-")), min_size=1, max_size=4
).flatmap(lambda items: st.sampled_from([", ", ",", " ", "|"]).map(lambda sep: sep.join(items)))


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(chains, st.sampled_from(PREFIXES), st.sampled_from((None, 0, 1, 32, 47, 48, 64, 127, 128)))
def test_masking_a_chain_gives_what_ipaddress_gives(
    text: str, ipv4_prefix: int | None, ipv6_prefix: int | None
) -> None:
    """Item by item fast paths and the IPv6 mask by integer give exactly ipaddress's answer."""
    assert IpAnonymizer(ipv4_prefix, ipv6_prefix).user_ipaddress(text) == _reference_masked(
        text, ipv4_prefix, ipv6_prefix
    )


def _ip_address_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


ip_like_texts = st.one_of(
    st.text("0123456789.:abcdefABCDEF%/[]ﬀ٣ ", max_size=45),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda address: f"{address}%eth0"),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 99999)).map(lambda pair: f"{pair[0]}:{pair[1]}"),
)


@settings(max_examples=1500, deadline=None)
@given(ip_like_texts)
def test_parsing_one_address_is_exactly_ipaddress_ip_address(text: str) -> None:
    from transform.enrichments.ip import _parse

    expected = None if text in ("", "-") else _ip_address_or_none(text)
    parsed = _parse(text)
    assert parsed == expected
    assert type(parsed) is type(expected)
    if parsed is not None:
        assert str(parsed) == str(expected)
