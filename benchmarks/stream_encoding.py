"""Stream-2 encodings, measured: JSON lines against per-event Avro, beside the transform itself.

    python benchmarks/stream_encoding.py [--lines 20000]

Generates logs, runs the canonical core to get real events, then times per event (best of
--repeat): the transform (read + canonicalize), compact JSON encoding (what stream 2 carries),
fastavro schemaless encoding of the canonical record, and the decoding of each.  Ratios are
against the transform's own cost per event, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.app.process import process_stream  # noqa: E402
from pipeline.badrows import SourceRef  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.formats import get_format, read_limits  # noqa: E402
from pipeline.records import decode_events, encode_event  # noqa: E402
from pipeline.schema import avro_schema  # noqa: E402
from pipeline.summary import FileSummary  # noqa: E402
from pipeline.testing.generate import GenerateOptions, generate_logs  # noqa: E402
from transform.canonicalize import Canonicalizer  # noqa: E402


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import fastavro

    config = load_config(environ={})
    with tempfile.TemporaryDirectory() as tmp:
        [path] = generate_logs(Path(tmp), GenerateOptions(files=1, lines_per_file=args.lines, malformed_ratio=0))
        data = path.read_bytes()

    def transform() -> list[Any]:
        canonicalizer = Canonicalizer(config.transform)
        out = process_stream(
            io.BytesIO(data),
            SourceRef(path.name),
            get_format(),
            canonicalizer,
            read_limits(config.extract),
            FileSummary("b"),
            0,
        )
        return [e for e in out if isinstance(e, dict)]

    events = transform()
    n = len(events)
    schema = fastavro.parse_schema(avro_schema())
    avro_records = [{f: e.get(f) for f in (x["name"] for x in avro_schema()["fields"])} for e in events]
    json_blob = [encode_event(e) for e in events]

    def avro_encode() -> list[bytes]:
        out = []
        for record in avro_records:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, schema, record)
            out.append(buffer.getvalue())
        return out

    avro_blob = avro_encode()

    def avro_decode() -> None:
        for blob in avro_blob:
            fastavro.schemaless_reader(io.BytesIO(blob), schema, None)

    results = {
        "transform (read + canonicalize)": best(transform, args.repeat),
        "JSON encode (stream 2)": best(lambda: [encode_event(e) for e in events], args.repeat),
        "JSON decode": best(lambda: decode_events(b"\n".join(json_blob)), args.repeat),
        "Avro encode, per event (fastavro)": best(avro_encode, args.repeat),
        "Avro decode, per event": best(avro_decode, args.repeat),
    }
    base = results["transform (read + canonicalize)"]
    json_size, avro_size = sum(map(len, json_blob)) / n, sum(map(len, avro_blob)) / n
    print(f"{n} events; sizes per event: JSON {json_size:.0f} B, Avro {avro_size:.0f} B")
    print(f"{'step':38} {'µs/event':>9} {'vs transform':>13}")
    for name, seconds in results.items():
        print(f"{name:38} {seconds / n * 1e6:9.1f} {seconds / base:12.2f}x")
    print(json.dumps({k: round(v / n * 1e6, 2) for k, v in results.items()}))


if __name__ == "__main__":
    main()
