"""The bad-rows sink on S3: ``<bad_prefix><kind>/date=YYYY-MM-DD/<stage>-<batch>.jsonl``.

Keys are a pure function of the input (the stage, a deterministic batch id, the failure
kind and the source's date), and bad rows are serialised with the source's timestamp, so a
retried batch overwrites its own object instead of adding a copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.aws.errors import aws_exceptions, classify
from pipeline.badrows import BadRow
from pipeline.errors import TerminalError, TransientError


class BadRowSinkError(TransientError):
    """Bad rows could not be written; the input must not be acknowledged."""


class BadRowSinkAccessError(TerminalError):
    """The bad-rows bucket refused the write for a reason retries will not fix; the input must not be acknowledged."""


def plan_bad_objects(
    rows: Sequence[BadRow], *, prefix: str, stage: str, batch_id: str, etl_tstamp: int
) -> dict[str, bytes]:
    """The objects (key -> JSON lines) holding ``rows``: one per failure kind."""
    moment = datetime.fromtimestamp(etl_tstamp / 1000, UTC)
    date = moment.strftime("%Y-%m-%d")
    by_kind: defaultdict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind.value].append(row.to_json_line(timestamp=moment))
    return {
        f"{prefix}{kind}/date={date}/{stage}-{batch_id}.jsonl": ("\n".join(lines) + "\n").encode("utf-8")
        for kind, lines in sorted(by_kind.items())
    }


class BadRowWriter(Protocol):
    """Writes bad rows under deterministic keys; returns the keys once durable (else raises)."""

    def write(self, rows: Sequence[BadRow], *, stage: str, batch_id: str, etl_tstamp: int) -> list[str]: ...


class S3BadRowSink:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self.objects_written = 0
        self.rows_written = 0

    def write(self, rows: Sequence[BadRow], *, stage: str, batch_id: str, etl_tstamp: int) -> list[str]:
        if not rows:
            return []
        objects = plan_bad_objects(rows, prefix=self._prefix, stage=stage, batch_id=batch_id, etl_tstamp=etl_tstamp)
        for key, body in objects.items():
            try:
                self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/x-ndjson")
            except aws_exceptions() as exc:
                failure = classify(exc)
                error = BadRowSinkError if failure.retryable else BadRowSinkAccessError
                raise error(f"cannot write bad rows to s3://{self._bucket}/{key}: {failure}") from exc
        self.objects_written += len(objects)
        self.rows_written += len(rows)
        return list(objects)
