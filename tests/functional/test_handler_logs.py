"""The handlers keep the AWS SDK's loggers quiet and their own logs free of raw payloads (audit item 13)."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest

from pipeline.testing import FakeLambdaContext, FirehoseInputRecord, firehose_event

RAW_IP = "203.0.113.77"


def _records() -> list[FirehoseInputRecord]:
    event = {"event_id": "0b9a8e3c-7f4d-4c1e-9a2b-3d4e5f607182", "collector_tstamp": 1731699951000,
             "user_ipaddress": RAW_IP, "page_url": "https://shop.example/?email=a@b.c"}  # fmt: skip
    return [FirehoseInputRecord(record_id=f"r{i}", data=json.dumps(event).encode()) for i in range(3)]


@pytest.fixture
def debug_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKSTREAM_ETL_LIBRARY_LOG_LEVEL", raising=False)
    for name in ("botocore", "boto3", "urllib3"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.DEBUG)


def test_a_load_handler_sets_the_sdk_loggers_to_warning_and_logs_no_payload(debug_everywhere: None) -> None:
    """GIVEN botocore at DEBUG WHEN the Firehose transformation Lambda runs THEN botocore is at WARNING
    and the handler's own log names counts, never an address or URL of the events.

    Reliability catalogue S09: no payload, address or URL in a handler's logs.
    """
    from load import firehose_handler

    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(firehose_handler.logger.registered_formatter)
    firehose_handler.logger.addHandler(capture)
    firehose_handler.tracer._decorated.clear()  # a fresh container
    try:
        response = firehose_handler.handler(firehose_event(_records()), FakeLambdaContext())
    finally:
        firehose_handler.logger.removeHandler(capture)
    assert [r["result"] for r in response["records"]] == ["Ok"] * 3
    assert base64.b64decode(response["records"][0]["data"])  # the payload goes to Firehose, not to the log
    for name in ("botocore", "boto3", "urllib3"):
        assert logging.getLogger(name).level == logging.WARNING
    logged = stream.getvalue()
    assert "firehose records transformed" in logged
    assert RAW_IP not in logged and "shop.example" not in logged


def test_the_sdk_log_level_can_be_asked_for_explicitly(debug_everywhere: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.observability import quiet_library_loggers

    monkeypatch.setenv("CLICKSTREAM_ETL_LIBRARY_LOG_LEVEL", "debug")
    assert quiet_library_loggers() == "DEBUG"
    assert logging.getLogger("botocore").level == logging.DEBUG
    assert quiet_library_loggers({"CLICKSTREAM_ETL_LIBRARY_LOG_LEVEL": "loud"}) == "WARNING"
