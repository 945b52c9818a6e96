"""The cost model's measured inputs: CPU time per event of each stage's core, and bytes per event.

``clickstream-etl cost --measure`` runs this and prints the figures; ``config/prices.toml``
(``[measured]``) keeps the last ones with the machine they came from.  It generates CloudFront
logs with the testing kit (the same generator as ``benchmarks/run.py``), then times, with
``time.process_time`` (CPU, not wall), best of ``repeat``, the work each Lambda does between
its AWS calls:

* **extract**: gunzip, split and bind the lines (the CloudFront reader), pack them into stream-1
  records of ``stream.record_target_bytes`` and encode them (Avro);
* **transform**: decode each stream-1 record, canonicalize and enrich its lines, encode and pack
  the events (JSON lines) into stream-2 chunks (:func:`transform.stage.transform_raw_record`);
* **sink**: decode a Kinesis batch of those chunks, screen it, plan the hour objects and encode
  the Parquet (:mod:`load.sink_plan`, :func:`load.parquet.encode_parquet`);
* **firehose**: the Firehose transformation of the same chunks (:func:`load.firehose.transform_records`);
* **direct**: the file core on the gzipped object (:func:`pipeline.app.process.process_stream`)
  and the Parquet encoding: what the direct mode's one function does.

Figures are per *event*: a stage's CPU over the whole log divided by the events it yields, so
the cost of the lines that are skipped (not tracker hits) or bad is carried by the events.
"""

from __future__ import annotations

import io
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Measured:
    """Per event: CPU microseconds of each stage's core, and bytes on each hop."""

    extract_cpu_us: float
    transform_cpu_us: float
    sink_cpu_us: float
    firehose_cpu_us: float
    direct_cpu_us: float
    raw_bytes: float
    """Decompressed log bytes."""
    stream1_bytes: float
    stream2_bytes: float
    parquet_bytes: float
    lines_per_event: float
    events: int
    machine: str

    def to_toml(self) -> str:
        """The ``[measured]`` table of config/prices.toml for these figures."""
        lines = ["[measured]"]
        for key, value in asdict(self).items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, float):
                lines.append(f"{key} = {value:.1f}" if value >= 10 else f"{key} = {value:.3f}")
            else:
                lines.append(f"{key} = {value}")
        return "\n".join(lines) + "\n"


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def measure(lines: int = 20000, repeat: int = 3) -> Measured:  # noqa: PLR0915 - one timed step per stage
    """Generate ``lines`` log lines and time each stage's core on them (best of ``repeat``)."""
    from load.firehose import transform_records
    from load.parquet import encode_parquet
    from load.sink_plan import plan_objects, records_from_event, screen_batch
    from pipeline.app.process import process_stream
    from pipeline.badrows import SourceRef
    from pipeline.config import load_config
    from pipeline.formats import get_format, read_limits
    from pipeline.formats.base import LogLine, ReadStats
    from pipeline.records import RawBatch, encode_raw
    from pipeline.summary import FileSummary
    from pipeline.testing.generate import GenerateOptions, generate_logs
    from pipeline.testing.lambda_events import KinesisRecord, kinesis_event
    from transform.canonicalize import Canonicalizer
    from transform.stage import transform_raw_record

    config = load_config(environ={})
    target = config.stream.record_target_bytes
    limits = read_limits(config.extract)
    with tempfile.TemporaryDirectory() as tmp:
        [path] = generate_logs(Path(tmp), GenerateOptions(files=1, lines_per_file=lines, malformed_ratio=0.002))
        gz = path.read_bytes()
    source = SourceRef(f"s3://bucket/{path.name}", etag="etag")

    def extract() -> tuple[list[bytes], int]:
        records: list[bytes] = []
        numbers: list[int] = []
        texts: list[str] = []
        size = 0
        fields = ""
        raw = 0

        def seal() -> None:
            nonlocal size
            if texts:
                batch = RawBatch("bucket", path.name, "etag", 0, fields, tuple(numbers), tuple(texts), "cloudfront")
                records.append(encode_raw(batch))
                numbers.clear()
                texts.clear()
                size = 0

        for item in get_format().read(io.BytesIO(gz), source, limits, ReadStats()):
            if type(item) is LogLine:
                line_size = len(item.text) + 10
                raw += line_size - 9
                if texts and size + line_size > target:
                    seal()
                if item.layout is not None:
                    fields = " ".join(item.layout.names)
                numbers.append(item.line_no)
                texts.append(item.text)
                size += line_size
        seal()
        return records, raw

    extract_s, (stream1, raw_bytes) = _best(extract, repeat)

    def transform() -> list[bytes]:
        canonicalizer = Canonicalizer(config.transform)
        chunks: list[bytes] = []
        for index, record in enumerate(stream1):
            out = transform_raw_record(record, canonicalizer, target, origin=f"shard:{index}", arrival_ms=0)
            chunks.extend(data for _, data in out.chunks)
        return chunks

    transform_s, stream2 = _best(transform, repeat)
    kinesis = [KinesisRecord(data, f"chunk-{i}", f"{i:056d}") for i, data in enumerate(stream2)]
    event = kinesis_event(kinesis)

    def sink() -> tuple[int, int]:
        shard, records = records_from_event(event)
        screened = screen_batch(records, range(len(records)), origin="stream-2")
        plan = plan_objects(screened, "batch", config.resources.events_prefix)
        encoded = [encode_parquet(events, config.load) for events in plan.objects.values()]
        return sum(len(e) for e in plan.objects.values()), sum(map(len, encoded))

    sink_s, (events, parquet_bytes) = _best(sink, repeat)
    firehose_input = [{"recordId": str(i), "data": r["kinesis"]["data"]} for i, r in enumerate(event["Records"])]
    firehose_s, _ = _best(lambda: transform_records(firehose_input), repeat)

    def direct() -> int:
        canonicalizer = Canonicalizer(config.transform)
        summary = FileSummary(path.name)
        out = [
            item
            for item in process_stream(io.BytesIO(gz), source, get_format(), canonicalizer, limits, summary, 0)
            if isinstance(item, dict)
        ]
        encode_parquet(out, config.load)
        return len(out)

    direct_s, _ = _best(direct, repeat)
    per = 1e6 / events
    return Measured(
        extract_cpu_us=extract_s * per,
        transform_cpu_us=transform_s * per,
        sink_cpu_us=sink_s * per,
        firehose_cpu_us=firehose_s * per,
        direct_cpu_us=direct_s * per,
        raw_bytes=raw_bytes / events,
        stream1_bytes=sum(map(len, stream1)) / events,
        stream2_bytes=sum(map(len, stream2)) / events,
        parquet_bytes=parquet_bytes / events,
        lines_per_event=lines / events,
        events=events,
        machine=f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    )
