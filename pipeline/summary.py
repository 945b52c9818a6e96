"""Typed summaries that stages return and the CLI prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FileSummary:
    """What became of every line of one source: ``lines_read == good + bad + skipped``."""

    source: str
    lines_read: int = 0
    good: int = 0
    bad: int = 0
    skipped: int = 0
    bytes_read: int = 0
    bad_by_kind: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)
    """Good events worth a look: ``redacted_url_parameters``, ``email_shaped_user_id``."""
    lines_without_layout: int = 0
    """Lines no header said how to split (bad rows): a file of only these is probably not a log."""

    @property
    def not_a_log(self) -> bool:
        """Every line read was either a skip or a bad row for want of a layout."""
        return self.lines_without_layout > 0 and self.lines_without_layout + self.skipped == self.lines_read

    @property
    def conserved(self) -> bool:
        return self.lines_read == self.good + self.bad + self.skipped

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "lines_read": self.lines_read,
            "good": self.good,
            "bad": self.bad,
            "skipped": self.skipped,
            "bytes_read": self.bytes_read,
            "bad_by_kind": dict(sorted(self.bad_by_kind.items())),
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
            "notices": dict(sorted(self.notices.items())),
            "lines_without_layout": self.lines_without_layout,
        }


@dataclass
class RunSummary:
    """Totals of a backfill run."""

    files: int = 0
    failed_files: int = 0
    lines_read: int = 0
    good: int = 0
    bad: int = 0
    skipped: int = 0
    bytes_read: int = 0
    rows_written: int = 0
    duplicates_dropped: int = 0
    seconds: float = 0.0
    bad_by_kind: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    not_logs: list[str] = field(default_factory=list)
    """Sources whose lines all lacked a layout (no ``#Fields`` header): probably not logs."""
    s3_objects: int = 0
    """Of ``files``, how many were S3 objects (streamed, never downloaded to disk)."""
    s3_bytes: int = 0
    """Their compressed size, as listed."""
    skipped_files: int = 0
    """Sources the resume ledger says an earlier run finished (not read again)."""
    resumed_files: int = 0
    """Of ``files``, those an interrupted run had staged (counted from the ledger, not read again)."""
    ignored_keys: list[str] = field(default_factory=list)
    """Listed keys that are not CloudFront log names, left out by ``--since/--until/--distribution``."""
    out_of_range: int = 0
    """CloudFront log names outside ``--since/--until/--distribution``."""

    def add(self, file: FileSummary) -> None:
        self.files += 1
        self.lines_read += file.lines_read
        self.good += file.good
        self.bad += file.bad
        self.skipped += file.skipped
        self.bytes_read += file.bytes_read
        self.bad_by_kind.update(file.bad_by_kind)
        self.skipped_by_reason.update(file.skipped_by_reason)
        self.notices.update(file.notices)
        if file.not_a_log:
            self.not_logs.append(file.source)

    @property
    def lines_per_second(self) -> float:
        return self.lines_read / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "failed_files": self.failed_files,
            "lines_read": self.lines_read,
            "good": self.good,
            "bad": self.bad,
            "skipped": self.skipped,
            "rows_written": self.rows_written,
            "duplicates_dropped": self.duplicates_dropped,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
            "lines_per_second": round(self.lines_per_second, 1),
            "bad_by_kind": dict(sorted(self.bad_by_kind.items())),
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
            "notices": dict(sorted(self.notices.items())),
            "errors": self.errors,
            "not_logs": sorted(self.not_logs),
            "s3_objects": self.s3_objects,
            "s3_bytes": self.s3_bytes,
            "skipped_files": self.skipped_files,
            "resumed_files": self.resumed_files,
            "ignored_keys": sorted(self.ignored_keys),
            "out_of_range": self.out_of_range,
        }
