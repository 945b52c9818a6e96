"""PutRecords request planning (F04) and stream-1 record sizes: always within Kinesis' limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aws.kinesis import MAX_BYTES_PER_CALL, MAX_RECORD_BYTES, MAX_RECORDS_PER_CALL, OutRecord, plan_requests
from pipeline.records import RawBatch, decode_raw, encode_raw

keys = st.text(min_size=1, max_size=256)  # non-ASCII keys count in UTF-8 bytes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_RECORD_BYTES - 1024), keys), max_size=1200))
def test_f04_requests_stay_within_limits_keep_order_and_lose_nothing(specs: list[tuple[int, str]]) -> None:
    records = [OutRecord(b"x" * size, key) for size, key in specs]
    requests = list(plan_requests(records))
    assert [i for request in requests for i in request] == list(range(len(records)))
    for request in requests:
        assert 1 <= len(request) <= MAX_RECORDS_PER_CALL
        assert sum(records[i].size for i in request) <= MAX_BYTES_PER_CALL
        assert all(records[i].size <= MAX_RECORD_BYTES for i in request)


def test_f04_a_record_over_one_mib_with_its_key_is_refused_not_dropped() -> None:
    key = "ü" * 10  # 20 bytes in UTF-8
    fits = OutRecord(b"x" * (MAX_RECORD_BYTES - 20), key)
    over = OutRecord(b"x" * (MAX_RECORD_BYTES - 19), key)
    assert list(plan_requests([fits])) == [[0]]
    with pytest.raises(ValueError, match="limit"):
        list(plan_requests([fits, over]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=50), st.text(max_size=40))
def test_raw_batches_round_trip_through_their_codec(lines: list[str], key: str) -> None:
    batch = RawBatch(
        "bucket", key, "etag", 1_700_000_000_000, "date time c-ip", tuple(range(3, 3 + len(lines))), tuple(lines)
    )
    assert decode_raw(encode_raw(batch)) == batch


@pytest.mark.parametrize(
    "data", [b"", b"\x02abc", b"\x01", b"\x01\xff\xff\xff\xff\xff", b"\x01" + b"\x00" * 3 + b"junk"]
)
def test_undecodable_raw_records_raise_a_terminal_decode_error(data: bytes) -> None:
    """Reliability catalogue A14: garbage and truncated Avro raise only the terminal RecordDecodeError."""
    from pipeline.records import RecordDecodeError

    with pytest.raises(RecordDecodeError):
        decode_raw(data)
