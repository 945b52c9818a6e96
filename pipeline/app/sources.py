"""What a backfill reads and what it has read: S3 listings, CloudFront key-name selection, the resume ledger.

Plan, then execute: :func:`parse_s3_url`, :class:`Selection` and :func:`select_names` are
pure values and decisions; :func:`list_s3` is the one adapter that pages through an S3
listing (``ListObjectsV2`` through boto3's paginator, with a client from
:func:`pipeline.aws.clients.make_client`, so ``AWS_ENDPOINT_URL`` points it at a moto
server); :class:`Ledger` is the resume ledger beside a local DEST.

Selection works on CloudFront's key names, ``<distribution>.YYYY-MM-DD-HH.<id>[.gz]``:
CloudFront names a file by the hour of its requests and may deliver it up to 24 hours
late, so the name, not the object's ``LastModified``, says which hours a file covers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from pipeline.errors import InputError

S3_SCHEME: Final = "s3://"
LEDGER_FILE: Final = "_backfill_ledger.jsonl"

# <distribution>.YYYY-MM-DD-HH.<unique id>[.gz]: distribution ids are upper-case letters and digits.
_CLOUDFRONT_NAME: Final = re.compile(
    r"^(?P<distribution>[A-Z0-9]+)\.(?P<date>\d{4}-\d{2}-\d{2})-(?P<hour>\d{2})\.(?P<id>[A-Za-z0-9]+)(?:\.gz)?$"
)
_DATE_HOUR: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:T(\d{2}))?$")


def is_s3(source: str) -> bool:
    return source.startswith(S3_SCHEME)


@dataclass(frozen=True)
class S3Url:
    """``s3://bucket/prefix``; :meth:`parse` refuses what could escape the prefix."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """Raise InputError for a URL without a bucket, or with ``.``/``..`` or empty inner segments."""
        if not is_s3(url):
            raise InputError(f"{url} is not an s3://bucket/prefix URL")
        bucket, _, prefix = url[len(S3_SCHEME) :].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or ".." in bucket:
            raise InputError(f"{url}: {bucket!r} is not an S3 bucket name")
        segments = prefix.split("/")
        inner = segments[:-1] if segments[-1] == "" else segments
        if prefix and any(segment in ("", ".", "..") for segment in inner):
            raise InputError(
                f"{url}: a prefix with '.', '..' or empty segments is refused (it may not mean what it says)"
            )
        return cls(bucket, prefix)

    def format(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"

    def contains(self, other: S3Url) -> bool:
        """Does ``other`` lie under this prefix (the same bucket, this prefix a folder-wise start of it)?"""
        if self.bucket != other.bucket:
            return False
        mine = self.prefix if self.prefix.endswith("/") or not self.prefix else self.prefix + "/"
        theirs = other.prefix if other.prefix.endswith("/") or not other.prefix else other.prefix + "/"
        return theirs.startswith(mine)


def parse_date_hour(value: str) -> datetime:
    """``2026-01-01`` (midnight UTC) or ``2026-01-01T05`` (that hour, UTC); raise InputError otherwise."""
    match = _DATE_HOUR.match(value)
    if not match:
        raise InputError(f"{value!r} is neither a date (2026-01-01) nor a date-hour (2026-01-01T05)")
    try:
        day = datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise InputError(f"{value!r}: {exc}") from exc
    hour = int(match.group(2) or 0)
    if hour > 23:  # noqa: PLR2004 - hours of a day
        raise InputError(f"{value!r}: the hour must be 00..23")
    return day + timedelta(hours=hour)


@dataclass(frozen=True)
class CloudFrontName:
    distribution: str
    hour: datetime
    """The request hour the name carries (UTC)."""

    @classmethod
    def parse(cls, key: str) -> CloudFrontName | None:
        """The distribution and hour of a CloudFront log name (the key's last segment), or None."""
        match = _CLOUDFRONT_NAME.match(key.rsplit("/", 1)[-1])
        if not match:
            return None
        try:
            day = datetime.strptime(match.group("date"), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return None
        hour = int(match.group("hour"))
        if hour > 23:  # noqa: PLR2004 - hours of a day
            return None
        return cls(match.group("distribution"), day + timedelta(hours=hour))


@dataclass(frozen=True)
class Selection:
    """Which files a backfill takes: ``since <= hour < until``, of ``distributions`` (empty: any).

    Without any filter (:attr:`active` false) every file is a source, as in a local folder.
    """

    since: datetime | None = None
    until: datetime | None = None
    distributions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, since: str | None, until: str | None, distributions: Iterable[str] = ()) -> Selection:
        """From the command's ``--since``/``--until``/``--distribution`` (raise InputError when they are bad)."""
        start = parse_date_hour(since) if since else None
        end = parse_date_hour(until) if until else None
        if start is not None and end is not None and end <= start:
            raise InputError(f"--until {until} must come after --since {since} (--until is exclusive)")
        return cls(start, end, frozenset(distributions))

    @property
    def active(self) -> bool:
        return self.since is not None or self.until is not None or bool(self.distributions)

    def verdict(self, key: str) -> bool | None:
        """True: selected; False: a CloudFront name outside the selection; None: not a CloudFront name."""
        name = CloudFrontName.parse(key)
        if name is None:
            return None
        if self.distributions and name.distribution not in self.distributions:
            return False
        if self.since is not None and name.hour < self.since:
            return False
        return not (self.until is not None and name.hour >= self.until)


@dataclass(frozen=True)
class Listed:
    """One object or file a listing found."""

    uri: str
    size: int
    mtime_ms: int
    etag: str = ""


@dataclass
class Listing:
    """What a listing selected, and the keys it left out (ignored: not CloudFront names)."""

    selected: list[Listed] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    out_of_range: int = 0
    pages: int = 0


def select_names(items: Iterable[Listed], selection: Selection, listing: Listing) -> None:
    """Add ``items`` to ``listing`` as ``selection`` decides (everything when the selection is inactive)."""
    for item in items:
        if not selection.active:
            listing.selected.append(item)
            continue
        verdict = selection.verdict(item.uri)
        if verdict is None:
            listing.ignored.append(item.uri)
        elif verdict:
            listing.selected.append(item)
        else:
            listing.out_of_range += 1


def list_s3(client: Any, url: S3Url, selection: Selection, listing: Listing) -> None:
    """Page through ``url``'s objects (ListObjectsV2) into ``listing``.

    "Folder" placeholders (keys ending in ``/``) and our own outputs (a segment starting
    with ``_`` or ``.``, as a local folder's) are never sources.  Raises SourceUnreadableError
    naming the bucket when the listing is refused.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from extract.errors import SourceUnreadableError

    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=url.bucket, Prefix=url.prefix):
            listing.pages += 1
            items = []
            for item in page.get("Contents", ()):
                key: str = item["Key"]
                if key.endswith("/") or _hidden(key[len(url.prefix) :]):
                    continue
                modified: datetime = item["LastModified"]
                items.append(
                    Listed(
                        f"{S3_SCHEME}{url.bucket}/{key}",
                        int(item["Size"]),
                        int(modified.timestamp() * 1000),
                        str(item.get("ETag", "")).strip('"'),
                    )
                )
            select_names(items, selection, listing)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise SourceUnreadableError(f"cannot list {url.format()}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise SourceUnreadableError(f"cannot list {url.format()}: {exc}") from exc


def _hidden(relative: str) -> bool:
    return any(segment.startswith((".", "_")) for segment in relative.split("/"))


def split_s3_key(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    return bucket, key


# ---------------------------------------------------------------------------- the resume ledger
def identity(uri: str, size: int, mtime_ms: int, etag: str) -> str:
    """What makes a source the same object on a rerun: its ETag on S3, its size and mtime on disk."""
    return f"etag:{etag}" if is_s3(uri) else f"file:{size}:{mtime_ms}"


@dataclass(frozen=True)
class LedgerEntry:
    source: str
    identity: str
    state: str
    """``staged`` (fragments durable in ``DEST/_staging``) or ``done`` (finalized into ``DEST/events``)."""
    partitions: tuple[str, ...] = ()
    fragment: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def _record(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "source": entry.source,
        "identity": entry.identity,
        "state": entry.state,
        "partitions": list(entry.partitions),
        "fragment": entry.fragment,
        "summary": entry.summary,
    }


STAGED: Final = "staged"
DONE: Final = "done"


class Ledger:
    """``DEST/_backfill_ledger.jsonl``: one JSON line per source state change, and one per finished run.

    Lines are appended and fsynced by the parent process only, after the source's
    fragments are durable; reading keeps the last line per source (a torn last line, from
    a kill mid-write, is ignored).  ``staged`` means the source's fragments are in
    ``DEST/_staging`` and its bad rows in ``DEST/bad``; ``done`` means finalize has merged them
    into ``DEST/events``.  A ``run`` line records the rate a run measured (compressed bytes/s).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, LedgerEntry] = {}
        self.last_rate: float | None = None
        self._handle: Any = None

    @classmethod
    def read(cls, path: Path) -> Ledger:
        ledger = cls(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ledger
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line: its source was not recorded, so it is redone
            if record.get("run"):
                rate = record.get("bytes_per_second")
                ledger.last_rate = float(rate) if rate else ledger.last_rate
                continue
            ledger.entries[record["source"]] = LedgerEntry(
                record["source"],
                record["identity"],
                record["state"],
                tuple(record.get("partitions", ())),
                record.get("fragment", ""),
                record.get("summary", {}),
            )
        return ledger

    def state(self, source: str, ident: str) -> str | None:
        """``done``, ``staged`` or None (never recorded, or recorded for another version of the object)."""
        entry = self.entries.get(source)
        return entry.state if entry is not None and entry.identity == ident else None

    def append(self, entries: Sequence[LedgerEntry]) -> None:
        """Record ``entries`` durably (written, flushed and fsynced before returning)."""
        self._write([_record(e) for e in entries])
        for entry in entries:
            self.entries[entry.source] = entry

    def compact(self) -> None:
        """Rewrite the file with the last line of each source and the last rate only (atomically).

        Called at the end of a finished run, so that the file grows with the sources, not the runs.
        """
        self.close()
        records = [_record(e) for _, e in sorted(self.entries.items())]
        if self.last_rate:
            records.append({"run": True, "bytes_per_second": round(self.last_rate, 1)})
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def record_run(self, bytes_per_second: float, lines_per_second: float) -> None:
        """Record the rate of a run's reading (compressed bytes/s and lines/s, per worker)."""
        self.last_rate = bytes_per_second
        self._write(
            [
                {
                    "run": True,
                    "bytes_per_second": round(bytes_per_second, 1),
                    "lines_per_second": round(lines_per_second, 1),
                }
            ]
        )

    def _write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        self._handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
