"""Transform audit: timestamps every store can represent, and IPv6 addresses that embed an IPv4 address.

GIVEN timestamps at and beyond the edges of 1970..9999, or IPv6 addresses carrying an IPv4 address
WHEN they are validated, transformed, encoded to Parquet or anonymized
THEN no good event holds an unrepresentable timestamp, and no output reveals more than the IPv4 prefix.
"""

from __future__ import annotations

import io
import ipaddress
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from load.parquet import encode_parquet
from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.formats import get_format
from pipeline.formats.base import LogLine, Request
from pipeline.schema import FIELDS, format_tstamp, to_json_record, validate
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import ETL_TSTAMP, make_config, run_core
from transform.canonicalize import Canonicalizer
from transform.enrichments.ip import IpAnonymizer

MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
TSTAMP_FIELDS = tuple(f.name for f in FIELDS if f.type == "tstamp")
V2_FIELDS = ("timestamp(ms)", "c-ip", "cs-method", "cs-uri-stem", "sc-status", "cs-uri-query")
SOURCE = SourceRef("s3://bucket/logs/E2EXAMPLE.2024-11-15-19.abcd1234.gz")


# =========================================================================== 1. timestamps
@pytest.mark.parametrize("name", TSTAMP_FIELDS)
@pytest.mark.parametrize("value", [-1, MAX_EPOCH_MS + 1, 2**63 - 1])
def test_given_tstamp_outside_1970_to_9999_when_validated_then_reported(name: str, value: int) -> None:
    [problem] = validate({name: value})
    assert problem.startswith(f"{name}: ") and "9999" in problem


@pytest.mark.parametrize("name", TSTAMP_FIELDS)
@pytest.mark.parametrize("value", [0, MAX_EPOCH_MS])
def test_given_tstamp_at_the_edges_of_1970_to_9999_when_validated_then_valid(name: str, value: int) -> None:
    assert validate({name: value}) == []


@pytest.mark.parametrize("param", ["dtm", "stm", "ttm"])
@pytest.mark.parametrize("value", [str(MAX_EPOCH_MS + 1), "999999999999999", "9" * 20, "-1"])
def test_given_tracker_tstamp_beyond_the_range_when_transformed_then_protocol_bad_row_naming_it(
    param: str, value: str
) -> None:
    run = run_core(LogBuilder().add(query=tracker_query({"e": "pv", param: value})).to_bytes())
    assert not run.events
    [bad] = run.bad
    assert bad.kind is FailureKind.TRACKER_PROTOCOL
    assert any(m.startswith(f"{param}: ") for m in bad.messages), bad.messages


@pytest.mark.parametrize(
    ("params", "derived"),
    [
        ({"dtm": "0", "stm": str(MAX_EPOCH_MS)}, 0),  # skew larger than the collector time: clamped at 1970
        ({"ttm": str(MAX_EPOCH_MS)}, MAX_EPOCH_MS),
        ({"dtm": "1000", "stm": "2000"}, 1_731_699_951_000 - 1000),
    ],
)
def test_given_device_timestamps_when_derived_then_derived_tstamp_in_range(
    params: dict[str, str], derived: int
) -> None:
    run = run_core(LogBuilder().add(query=tracker_query({"e": "pv", **params})).to_bytes())
    assert run.event["derived_tstamp"] == derived


def _request(query: str | None, stem: str = "/i") -> Request:
    text = LogBuilder().line(query=query or "-", uri_stem=stem)
    fmt = get_format()
    line = next(item for item in fmt.read(io.BytesIO(LogBuilder().to_bytes() + text.encode() + b"\n"), SOURCE)
                if isinstance(item, LogLine))  # fmt: skip
    request = fmt.parse(line, SOURCE)
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize("collector", [-1, MAX_EPOCH_MS + 1])
@pytest.mark.parametrize("policy", ["skip", "page_view"])
def test_given_request_with_collector_tstamp_out_of_range_when_transformed_then_bad_row(
    collector: int, policy: str
) -> None:
    # Another format, or an extract record written by another version, may carry such a time.
    canon = Canonicalizer(make_config({"transform.non_tracker_policy": policy}).transform)
    for request in (_request(tracker_query({"e": "pv"})), _request(None, "/index.html")):
        if policy == "skip" and request.path != "/i":
            continue
        result = canon.process(request._replace(collector_tstamp=collector), SOURCE, ETL_TSTAMP)
        assert isinstance(result, BadRow), result
        assert any(m.startswith("collector_tstamp: ") for m in result.messages)


def _mixed_batch() -> bytes:
    v2 = LogBuilder(fields=V2_FIELDS)
    for millis in ("0", "1731699951183", str(MAX_EPOCH_MS), str(MAX_EPOCH_MS + 1), "999999999999999"):
        v2.add({"timestamp(ms)": millis}, query=tracker_query({"e": "pv"}))
    legacy = LogBuilder()
    for params in (
        {"dtm": "99999999999999"},  # 5138-11-16: late, but every store represents it
        {"dtm": str(MAX_EPOCH_MS), "stm": str(MAX_EPOCH_MS)},
        {"dtm": str(MAX_EPOCH_MS + 1)},
        {"ttm": str(MAX_EPOCH_MS)},
        {"ttm": "999999999999999"},
        {"dtm": "0", "stm": str(MAX_EPOCH_MS)},
        {"stm": "1"},
    ):
        legacy.add(query=tracker_query({"e": "pv", **params}))
    legacy.add(date="9999-12-31", time="23:59:59.999", query=tracker_query({"e": "pv"}))
    legacy.add(date="9999-12-31", time="23:59:60.999", query=tracker_query({"e": "pv"}))
    return v2.to_bytes() + legacy.to_bytes()


def test_given_mixed_batch_when_good_events_encoded_to_parquet_and_datetime_then_nothing_raises() -> None:
    run = run_core(_mixed_batch())
    assert run.events and run.bad
    table = pq.read_table(io.BytesIO(encode_parquet(run.events, make_config().load)))
    rows = table.to_pylist()  # timestamps become Python datetimes here
    assert len(rows) == len(run.events)
    for event in run.events:
        to_json_record(event)
        for name in TSTAMP_FIELDS:
            if name in event:
                datetime.fromtimestamp(event[name] / 1000, UTC)
                format_tstamp(event[name])
                assert 0 <= event[name] <= MAX_EPOCH_MS, (name, event[name])
    assert {row["collector_tstamp"].year for row in rows} >= {1970, 2024, 9999}


def test_given_mixed_batch_when_transformed_then_out_of_range_lines_are_bad_rows() -> None:
    run = run_core(_mixed_batch())
    assert len(run.bad) == 5  # two v2 timestamps, dtm and ttm beyond 9999, the leap second of 9999-12-31
    assert sorted(b.kind.value for b in run.bad) == sorted(
        [FailureKind.FIELD_INVALID.value] * 3 + [FailureKind.TRACKER_PROTOCOL.value] * 2
    )


# =========================================================================== 4. IPv6 embedding IPv4
V4_NET = ipaddress.IPv4Network("203.0.113.0/24")
SERVERS = ipaddress.IPv4Network("192.0.2.0/24")


def _six_to_four(v4: int, rng: random.Random) -> int:
    return (0x2002 << 112) | (v4 << 80) | rng.getrandbits(80)


def _teredo(v4: int, rng: random.Random) -> int:
    server = int(SERVERS[rng.randrange(256)])
    flags_port = rng.getrandbits(32)
    return (0x20010000 << 96) | (server << 64) | (flags_port << 32) | (~v4 & 0xFFFFFFFF)


def _nat64(v4: int, rng: random.Random) -> int:
    return (0x0064FF9B << 96) | v4


def _mapped(v4: int, rng: random.Random) -> int:
    return (0xFFFF << 32) | v4


EMBEDDINGS: dict[str, Callable[[int, random.Random], int]] = {
    "6to4": _six_to_four,
    "teredo": _teredo,
    "nat64": _nat64,
    "ipv4-mapped": _mapped,
}


@pytest.mark.parametrize("ipv6_prefix", [48, 64, 128])
@pytest.mark.parametrize("embedding", sorted(EMBEDDINGS))
def test_given_ipv6_embedding_ipv4_when_anonymized_then_every_address_of_a_24_gives_the_24(
    embedding: str, ipv6_prefix: int
) -> None:
    """Reliability catalogue S06: IPv6 that embeds IPv4 is masked as that IPv4's /24."""
    anonymizer = IpAnonymizer(24, ipv6_prefix)
    rng = random.Random(embedding)
    outputs = set()
    for v4 in V4_NET:
        address = ipaddress.IPv6Address(EMBEDDINGS[embedding](int(v4), rng))
        outputs.add(anonymizer.user_ipaddress(str(address)))
        outputs.add(anonymizer.mask(address))
    assert outputs == {"203.0.113.0"}


@pytest.mark.parametrize("ipv6_prefix", [48, 64, 96, 128])
def test_given_local_use_nat64_when_anonymized_then_masked_to_its_48(ipv6_prefix: int) -> None:
    # 64:ff9b:1::/48 (RFC 8215) places the IPv4 address anywhere after bit 48 (RFC 6052 formats).
    anonymizer = IpAnonymizer(24, ipv6_prefix)
    outputs = {
        anonymizer.mask(ipaddress.IPv6Address((0x0064FF9B0001 << 80) | (int(v4) << shift)))
        for v4 in V4_NET
        for shift in (0, 8, 24, 40)
    }
    assert outputs == {"64:ff9b:1::"}


def test_given_ipv6_embedding_ipv4_with_a_16_prefix_when_anonymized_then_the_16() -> None:
    anonymizer = IpAnonymizer(16, 48)
    assert anonymizer.mask(ipaddress.IPv6Address("2002:cb00:7147:1::1")) == "203.0.0.0"


@pytest.mark.parametrize("address", ["2002:cb00:7147:1::1", "2001:0:c000:201:0:ffff:34ff:8eb2", "64:ff9b::cb00:7147"])
def test_given_ipv6_embedding_ipv4_in_a_log_when_transformed_then_user_ipaddress_is_the_masked_ipv4(
    address: str,
) -> None:
    run = run_core(LogBuilder().add(query=tracker_query({"e": "pv"}), client_ip=address).to_bytes())
    assert run.event["user_ipaddress"] == "203.0.113.0"


@pytest.mark.parametrize("address", ["2002:cb00:7147:1::1", "2001:0:c000:201:0:ffff:34ff:8eb2", "64:ff9b::cb00:7147"])
def test_given_anonymization_off_when_ipv6_embeds_ipv4_then_address_kept(address: str) -> None:
    assert IpAnonymizer(None, None).mask(ipaddress.IPv6Address(address)) == address


def test_given_plain_ipv6_when_anonymized_then_still_its_48() -> None:
    assert IpAnonymizer(24, 48).mask(ipaddress.IPv6Address("2001:db8:85a3:8d3:1319:8a2e:370:7348")) == "2001:db8:85a3::"
