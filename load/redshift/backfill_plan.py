"""The backfill's plan: the dataset's hour partitions on S3, their manifests, COPY and merge.

:func:`plan_backfill` groups the Parquet files under a root by partition and decides, from
the load ledger (:mod:`load.redshift.ledger`), which to load; :func:`backfill_plan_for` is
one partition's transaction.  COPY takes no bind parameters, so its manifest URL and IAM
role ARN come from configuration and S3 listing and are checked against strict patterns
(no quotes, backslashes or spaces) before they are written as literals.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

from load.partitions import PartitionKey
from load.redshift.columns import staging_type
from load.redshift.identifiers import RedshiftTables, quote
from load.redshift.merge import lock_statement, merge_statements
from load.redshift.statements import Statement, Transaction
from pipeline.errors import ConfigError
from pipeline.schema import FIELDS

TEMP_COPY: Final = "clk_copy"

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SAFE_KEY = re.compile(r"[A-Za-z0-9!_.*()/=-]+")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")

# Every Parquet file of the dataset layout: the backfill's part-NNNNN files, the Parquet sink's
# <shard>-<first>-<last> objects, the direct mode's direct-... parts and the compactor's outputs;
# hidden and temporary files are not data.
# ASCII digits only: str patterns let \d match any Unicode digit ("event_hour=٠٩" would be hour 9).
_PART = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})/event_hour=(\d{2})/[A-Za-z0-9][A-Za-z0-9_.-]*\.parquet", re.ASCII)


@dataclass(frozen=True, slots=True)
class S3Location:
    """An ``s3://bucket/prefix/`` URL (the prefix empty or ending in ``/``)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Parse ``s3://bucket[/prefix]``; raises ConfigError (terminal) for anything else."""
        if not url.startswith("s3://"):
            raise ConfigError(f"{url!r} is not an s3://bucket/prefix URL")
        bucket, _, prefix = url[5:].partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(f"{url!r}: {bucket!r} is not a valid S3 bucket name")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if prefix.startswith("/") or "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
            raise ConfigError(f"{url!r}: the prefix has empty, '.' or '..' segments")
        return cls(bucket, prefix)

    def format(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    size: int
    etag: str
    extra_columns: tuple[str, ...] = ()
    """The file's columns after the canonical ones (the typed entity columns of
    :mod:`load.lake`), as its Parquet footer lists them; read before the load."""


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """One hour partition of the dataset: its files, identity, and what the load will do."""

    prefix: str
    """The partition's URL, ``s3://bucket/events/event_date=YYYY-MM-DD/event_hour=HH/``."""
    event_date: str
    event_hour: int
    files: tuple[S3Object, ...]
    content_hash: str
    """SHA-256 of the sorted (key, size, ETag) of its files: a rewritten partition changes it."""
    manifest_key: str
    action: Literal["load", "skip"]
    reason: str
    problem: str = ""
    """Why the partition cannot be loaded as it is (a file that is not the canonical layout),
    found by reading its files' footers; such a partition is reported, never COPYed."""

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def layout_groups(self) -> tuple[tuple[tuple[str, ...], tuple[S3Object, ...]], ...]:
        """The files grouped by their extra columns: COPY from Parquet maps columns by position
        and needs exactly as many table columns as a file has, so each group is one COPY.
        The canonical layout (no extra columns) comes first."""
        groups: dict[tuple[str, ...], list[S3Object]] = {}
        for f in self.files:
            groups.setdefault(f.extra_columns, []).append(f)
        return tuple((extra, tuple(files)) for extra, files in sorted(groups.items(), key=lambda g: (len(g[0]), g[0])))

    def manifest_keys(self) -> tuple[str, ...]:
        """One manifest per layout group: :attr:`manifest_key`, then ``...-1.manifest``, ..."""
        base = self.manifest_key.removesuffix(".manifest")
        return tuple(self.manifest_key if n == 0 else f"{base}-{n}.manifest" for n in range(len(self.layout_groups())))

    def manifests(self, bucket: str) -> tuple[tuple[str, dict[str, Any]], ...]:
        """(key, COPY manifest) per layout group (Parquet needs each file's content_length)."""
        return tuple(
            (
                key,
                {
                    "entries": [
                        {"url": f"s3://{bucket}/{f.key}", "mandatory": True, "meta": {"content_length": f.size}}
                        for f in files
                    ]
                },
            )
            for key, (_, files) in zip(self.manifest_keys(), self.layout_groups(), strict=True)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "files": len(self.files),
            "bytes": self.bytes,
            "content_hash": self.content_hash,
            "manifest_key": self.manifest_key,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    root: S3Location
    partitions: tuple[PartitionPlan, ...]
    ignored_keys: int = 0
    """Objects under the root that are not ``event_date=…/event_hour=…/<name>.parquet``."""

    @property
    def to_load(self) -> tuple[PartitionPlan, ...]:
        return tuple(p for p in self.partitions if p.action == "load")

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root.format(),
            "partitions": [p.to_json() for p in self.partitions],
            "to_load": len(self.to_load),
            "to_skip": len(self.partitions) - len(self.to_load),
            "ignored_keys": self.ignored_keys,
        }


def validate_manifest_prefix(prefix: str) -> str:
    """``redshift.manifest_prefix`` must be a plain key prefix ending in ``/``."""
    if not prefix.endswith("/") or not _SAFE_KEY.fullmatch(prefix) or prefix.startswith("/"):
        raise ConfigError(
            f"redshift.manifest_prefix {prefix!r} must be a key prefix ending in '/', made of letters, "
            "digits and !_.*()/=-"
        )
    return prefix


def content_hash(files: Iterable[S3Object]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda o: o.key):
        digest.update(f"{f.key}\t{f.size}\t{f.etag}\n".encode())
    return digest.hexdigest()


def group_partitions(
    root: S3Location, objects: Iterable[S3Object], since: date | None = None, until: date | None = None
) -> tuple[dict[PartitionKey, list[S3Object]], int]:
    """The dataset's Parquet files under ``root`` by hour partition (dates bounded by ``since``
    and ``until``, inclusive), and how many objects are not ``event_date=…/event_hour=…/<name>.parquet``.

    Every reader of an S3 dataset listing (the Redshift backfill, the compactor) groups with this.
    """
    groups: dict[PartitionKey, list[S3Object]] = {}
    ignored = 0
    for obj in objects:
        rest = obj.key[len(root.prefix) :] if obj.key.startswith(root.prefix) else None
        match = _PART.fullmatch(rest) if rest is not None else None
        if match is None:
            ignored += 1
            continue
        day, hour = match.group(1), int(match.group(2))
        if (since and day < since.isoformat()) or (until and day > until.isoformat()):
            continue
        groups.setdefault(PartitionKey(day, hour), []).append(obj)
    return groups, ignored


def plan_backfill(
    root: S3Location,
    objects: Iterable[S3Object],
    ledger: Mapping[str, frozenset[str]],
    manifest_prefix: str,
    since: date | None = None,
    until: date | None = None,
) -> BackfillPlan:
    """Group the dataset's Parquet files by hour partition and decide what to load.

    ``ledger`` maps partition URLs to the content hashes already loaded.  A partition whose
    current hash is in the ledger is skipped; a new or rewritten one (late events rewrite
    an old partition) is loaded -- the merge inserts only what the table lacks.  ``since``
    and ``until`` bound the partition dates, inclusive.
    """
    validate_manifest_prefix(manifest_prefix)
    groups, ignored = group_partitions(root, objects, since, until)
    partitions = []
    for (day, hour), files in sorted(groups.items()):
        prefix = root.url_of(f"{root.prefix}event_date={day}/event_hour={hour:02d}/")
        digest = content_hash(files)
        loaded = ledger.get(prefix, frozenset())
        if digest in loaded:
            action: Literal["load", "skip"] = "skip"
            reason = "loaded before with the same files"
        else:
            action, reason = "load", ("files changed since the last load" if loaded else "not loaded yet")
        partitions.append(
            PartitionPlan(
                prefix=prefix,
                event_date=day,
                event_hour=hour,
                files=tuple(sorted(files, key=lambda o: o.key)),
                content_hash=digest,
                manifest_key=f"{manifest_prefix}event_date={day}/event_hour={hour:02d}/{digest}.manifest",
                action=action,
                reason=reason,
            )
        )
    return BackfillPlan(root, tuple(partitions), ignored)


def _copy_literal(text: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(text):
        raise ConfigError(f"{what} {text!r} is not safe to write into a COPY statement")
    return f"'{text}'"


def copy_parquet(
    tables: RedshiftTables, bucket: str, manifest_key: str, role_arn: str, *, into: str = "", nested: bool = False
) -> Statement:
    """COPY one partition's Parquet files (by manifest) into the backfill staging table, or
    into the table ``into`` (``nested``: load nested columns into SUPER, ``SERIALIZETOJSON``).

    COPY takes no bind parameters, so the manifest URL and the role ARN are checked
    against strict patterns before they become literals; ``role_arn`` ``""`` uses the
    cluster's default IAM role.
    """
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{bucket!r} is not a valid S3 bucket name")
    url = _copy_literal(
        f"s3://{bucket}/{manifest_key}", re.compile(r"s3://[a-z0-9.-]+/[A-Za-z0-9!_.*()/=-]+"), "manifest URL"
    )
    role = _copy_literal(role_arn, _ROLE_ARN, "redshift.copy_role_arn") if role_arn else "default"
    target = quote(into) if into else tables.qualified(tables.backfill_staging)
    options = "FORMAT AS PARQUET SERIALIZETOJSON" if nested else "FORMAT AS PARQUET"
    return Statement("copy", f"COPY {target}\nFROM {url}\nIAM_ROLE {role}\n{options}\nMANIFEST")


def _copy_group(
    tables: RedshiftTables, bucket: str, key: str, role_arn: str, extra: tuple[str, ...], n: int
) -> tuple[Statement, ...]:
    """The statements that COPY one layout group into the staging table."""
    if not extra:
        return (copy_parquet(tables, bucket, key, role_arn),)
    # Files with typed entity columns: COPY into a table of their own shape (the entity
    # columns as SUPER, which the merge ignores: it reads the entities' JSON columns), then
    # keep the canonical columns.
    temp = f"{TEMP_COPY}_{n}"
    canonical = ",\n".join(f"    {quote(f.name)} {staging_type(f, parquet=True)}" for f in FIELDS)
    extras = ",\n".join(f"    {quote(f'clk_extra_{i}')} SUPER" for i in range(len(extra)))
    names = ", ".join(quote(f.name) for f in FIELDS)
    return (
        Statement(f"copy_table_{n}", f"CREATE TEMP TABLE {quote(temp)} (\n{canonical},\n{extras}\n)"),
        copy_parquet(tables, bucket, key, role_arn, into=temp, nested=True),
        Statement(
            f"copy_keep_{n}",
            f"INSERT INTO {tables.qualified(tables.backfill_staging)} ({names})\nSELECT {names} FROM {quote(temp)}",
        ),
        Statement(f"copy_drop_{n}", f"DROP TABLE {quote(temp)}"),
    )


def backfill_plan_for(tables: RedshiftTables, bucket: str, partition: PartitionPlan, role_arn: str) -> Transaction:
    """One partition's transaction: lock, empty the staging table, COPY each layout group, merge."""
    copies = [
        statement
        for n, (key, (extra, _)) in enumerate(zip(partition.manifest_keys(), partition.layout_groups(), strict=True))
        for statement in _copy_group(tables, bucket, key, role_arn, extra, n)
    ]
    return Transaction(
        f"backfill {partition.prefix}",
        (
            lock_statement(tables, "backfill"),
            Statement("clear_backfill_staging", f"DELETE FROM {tables.qualified(tables.backfill_staging)}"),
            *copies,
            *merge_statements(tables, "backfill"),
        ),
    )


def manifest_bodies(plan: PartitionPlan, bucket: str) -> tuple[tuple[str, bytes], ...]:
    """(key, body) of each of the partition's manifests."""
    return tuple(
        (key, json.dumps(manifest, indent=1, sort_keys=True).encode()) for key, manifest in plan.manifests(bucket)
    )
