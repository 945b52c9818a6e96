"""In-memory sinks: a record writer and a bad-row sink that keep what the stages hand them.

Both implement the stages' injection points (:class:`~pipeline.aws.kinesis.RecordWriter`,
:class:`~pipeline.aws.badsink.BadRowWriter`), so a test swaps them into ``ExtractDeps`` or
``TransformDeps`` with :func:`dataclasses.replace` and reads typed values back instead of
S3 objects or Kinesis records.  Given an ``inner`` sink they also pass everything on to it
(a recording tee in front of the real sink).

They keep what was made durable by key, as the real destinations do: a record by its partition
key (the pipeline's are deterministic ids) and bad rows by stage and batch, so a batch that is
delivered again replaces its own output instead of adding a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.aws.badsink import BadRowWriter, plan_bad_objects
from pipeline.aws.kinesis import KinesisPutError, OutRecord, RecordWriter
from pipeline.badrows import BadRow
from pipeline.records import RawBatch, decode_events, decode_raw
from pipeline.schema import CanonicalEvent


@dataclass
class MemoryRecordWriter:
    """A :class:`~pipeline.aws.kinesis.RecordWriter` keeping records by partition key, in first-put order.

    ``fail_puts`` makes the next that many calls of :meth:`put` raise
    :class:`~pipeline.aws.kinesis.KinesisPutError` (transient, as a throttled stream would) before
    anything is kept, to test what a stage does when its output is not durable.
    """

    __test__ = False  # not a pytest test class

    inner: RecordWriter | None = None
    """Also put every record there (after keeping it), e.g. the real KinesisWriter."""
    fail_puts: int = 0
    by_key: dict[str, OutRecord] = field(default_factory=dict)
    """The records kept, by partition key; a record put again replaces the earlier one."""
    puts: int = 0
    """Calls of :meth:`put` that succeeded."""

    def put(self, records: Sequence[OutRecord]) -> None:
        """Keep ``records`` (durable on return), or raise KinesisPutError while ``fail_puts`` lasts."""
        if self.fail_puts > 0:
            self.fail_puts -= 1
            raise KinesisPutError(f"injected failure of a put of {len(records)} records (MemoryRecordWriter)")
        for record in records:
            self.by_key[record.partition_key] = record
        if self.inner is not None:
            self.inner.put(records)
        self.puts += 1

    @property
    def records(self) -> list[OutRecord]:
        """Every record kept, in the order their keys were first put."""
        return list(self.by_key.values())

    def raw_batches(self) -> list[RawBatch]:
        """The records decoded as stream-1 batches (what Extract writes)."""
        return [decode_raw(record.data) for record in self.by_key.values()]

    def events(self) -> list[CanonicalEvent]:
        """The records decoded as stream-2 chunks of canonical events (what Transform writes)."""
        return [event for record in self.by_key.values() for event in decode_events(record.data)]

    def clear(self) -> None:
        """Forget every record kept (``fail_puts`` and ``inner`` stay)."""
        self.by_key.clear()
        self.puts = 0


@dataclass
class MemoryBadRowSink:
    """A :class:`~pipeline.aws.badsink.BadRowWriter` keeping bad rows by stage and batch, in first-write order.

    :meth:`write` returns the keys the S3 sink would have written (under ``prefix``), or the
    ``inner`` sink's keys when there is one.
    """

    __test__ = False  # not a pytest test class

    inner: BadRowWriter | None = None
    """Also write every bad row there (after keeping it), e.g. the real S3BadRowSink."""
    prefix: str = "bad/"
    by_batch: dict[tuple[str, str], tuple[BadRow, ...]] = field(default_factory=dict)
    """The rows kept, by (stage, batch id); a batch written again replaces its earlier rows."""

    def write(self, rows: Sequence[BadRow], *, stage: str, batch_id: str, etl_tstamp: int) -> list[str]:
        """Keep ``rows`` of one batch; returns the keys of their objects (none for no rows)."""
        if not rows:
            return []
        self.by_batch[(stage, batch_id)] = tuple(rows)
        if self.inner is not None:
            return self.inner.write(rows, stage=stage, batch_id=batch_id, etl_tstamp=etl_tstamp)
        return list(plan_bad_objects(rows, prefix=self.prefix, stage=stage, batch_id=batch_id, etl_tstamp=etl_tstamp))

    @property
    def rows(self) -> list[BadRow]:
        """Every bad row kept, batch by batch in first-write order."""
        return [row for rows in self.by_batch.values() for row in rows]

    def clear(self) -> None:
        """Forget every bad row kept."""
        self.by_batch.clear()
