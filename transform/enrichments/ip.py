"""Client IP selection and anonymization (IPv4 /24, IPv6 /48 by default).

IPv6 addresses that carry an IPv4 address -- IPv4-mapped (``::ffff:0:0/96``), 6to4
(``2002::/16``, RFC 3056), Teredo (``2001::/32``, RFC 4380) and NAT64's well-known prefix
(``64:ff9b::/96``, RFC 6052) -- are anonymized as that IPv4 address: a /48 of 6to4 is a
whole IPv4 address, and a longer configured IPv6 prefix would keep the address Teredo and
NAT64 carry.  The local-use NAT64 prefix (``64:ff9b:1::/48``, RFC 8215) places the IPv4
address wherever its operator chooses after bit 48, so it is never kept beyond its /48.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Final

from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent
from transform.enrichments.base import EnrichmentSetup, Hit, Part

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.IPv6Network("64:ff9b:1::/48")


def first_valid_ip(candidates: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The first valid address of a list (X-Forwarded-For), else None.

    Addresses are separated by commas, ``|`` or spaces, the separators Snowplow's Enrich splits
    the tracker's ``ip`` on.  Enrich keeps the first item whatever it is; here an item that is
    not an address is passed over (README, "Snowplow compatibility").
    """
    for item in _items(candidates):
        address = _parse(item)
        if address is not None:
            return address
    return None


def _items(candidates: str) -> list[str]:
    """The address texts of a candidate list: split on commas, ``|`` and spaces, ports and brackets removed."""
    return [_address_text(item.strip()) for item in candidates.replace("|", ",").replace(" ", ",").split(",")]


def _address_text(text: str) -> str:
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        return text[1 : text.index("]")]
    if text.count(":") == 1:  # "203.0.113.7:443"
        return text.split(":", 1)[0]
    return text


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text or text == "-":
        return None
    # ipaddress.ip_address, without its failed IPv4 attempt (an exception) on every IPv6 text:
    # IPv4 texts never hold a colon, IPv6 texts always do.
    try:
        return ipaddress.IPv6Address(text) if ":" in text else ipaddress.IPv4Address(text)
    except ValueError:
        return None


class IpAnonymizer:
    """Select the viewer address and mask it.  ``None`` prefixes keep the full address."""

    def __init__(self, ipv4_prefix: int | None = 24, ipv6_prefix: int | None = 48) -> None:
        if ipv4_prefix is not None and not 0 <= ipv4_prefix <= 32:
            raise ValueError(f"ipv4_prefix must be 0..32, got {ipv4_prefix}")
        if ipv6_prefix is not None and not 0 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be 0..128, got {ipv6_prefix}")
        self._v4 = ipv4_prefix
        self._v6 = ipv6_prefix
        # A visitor's address repeats over its session's hits; 50,000 covers the visitors active at once.
        self.memo: BoundedCache[str, str | None] = BoundedCache(50_000, self._masked)
        """A candidate (one address or a comma list) -> its first valid address, masked (None: none valid)."""

    def user_ipaddress(self, *candidates: str | None) -> str | None:
        """The first valid IP among the candidates (each may be a comma list), masked.

        Candidates are tried in order (tracker ``ip`` param, X-Forwarded-For, c-ip); an
        unparsable value never passes through.
        """
        for candidate in candidates:
            if not candidate or candidate == "-":
                continue
            masked = self.memo[candidate]
            if masked is not None:
                return masked  # else: nothing valid in this candidate, try the next one
        return None

    def _masked(self, candidate: str) -> str | None:
        """The first valid address of ``candidate``, masked (:func:`first_valid_ip`, then :meth:`mask`).

        Each item tries the dotted-quad fast path before ``ipaddress``: an X-Forwarded-For
        chain usually starts with a plain IPv4 address.
        """
        fast = _masked_dotted_quad(candidate, self._v4)
        if fast is not None:
            return fast
        for item in _items(candidate):
            fast = _masked_dotted_quad(item, self._v4)
            if fast is not None:
                return fast
            address = _parse(item)
            if address is not None:
                return self.mask(address)
        return None

    def mask(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        """The address masked to its configured prefix, as text.

        An IPv6 address embedding an IPv4 address becomes that IPv4 address masked to the
        IPv4 prefix when IPv6 addresses are masked (see the module docstring); an
        IPv4-mapped address always becomes its IPv4 address.
        """
        prefix: int | None
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or (_embedded_ipv4(address) if self._v6 is not None else None)
            if embedded is not None:
                address = embedded
                prefix = self._v4
            elif self._v6 is not None and address in _NAT64_LOCAL:
                prefix = min(self._v6, _NAT64_LOCAL.prefixlen)
            else:
                prefix = self._v6
        else:
            prefix = self._v4
        if prefix is None:
            return str(address)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is None:
            # The network address of address/prefix, without building the network (ip_network
            # decides for a scoped address, "fe80::1%eth0": it keeps the scope at /128 only).
            host_bits = 128 - prefix
            return str(ipaddress.IPv6Address(int(address) >> host_bits << host_bits))
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        return str(network.network_address)


_OCTET_CHARS: Final = frozenset("0123456789")


def _masked_dotted_quad(text: str, prefix: int | None) -> str | None:
    """A plain IPv4 address (most client IPs) masked with integer arithmetic; None for anything else.

    Exactly what ``ipaddress`` gives for the texts it accepts here: four decimal octets of at
    most three ASCII digits, none above 255 and none with a leading zero (which ``ipaddress``
    refuses as ambiguous octal); anything else goes the ``ipaddress`` way.  A test compares
    the two on random and malformed texts.
    """
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part or len(part) > 3 or not _OCTET_CHARS.issuperset(part) or (part[0] == "0" and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    if prefix is None:
        return text
    value &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4, Teredo (the client's, deobfuscated) or NAT64 address carries, else None."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class IpEnrichment:
    """user_ipaddress: the tracker's ``ip``, else X-Forwarded-For, else the client address; masked.

    Configured by ``[transform.ip]``.
    """

    name: ClassVar[str] = "ip"

    def __init__(self, anonymizer: IpAnonymizer) -> None:
        self._anonymizer = anonymizer
        self._masked = anonymizer.memo

    @classmethod
    def from_config(cls, config: TransformConfig, setup: EnrichmentSetup) -> IpEnrichment:
        ip = config.ip
        return cls(IpAnonymizer(ip.ipv4_prefix, ip.ipv6_prefix) if ip.anonymize else IpAnonymizer(None, None))

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        # IpAnonymizer.user_ipaddress, inlined: this runs for every event.
        request = hit.request
        masked = self._masked
        for candidate in (hit.tracker_ip, request.forwarded_for, request.client_ip):
            if candidate and candidate != "-":
                address = masked[candidate]
                if address is not None:
                    event["user_ipaddress"] = address
                    return None
        return None
