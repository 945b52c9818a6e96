"""The load ledger in Redshift: which version (content hash) of each partition is loaded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from load.redshift.backfill_plan import PartitionPlan, S3Location
from load.redshift.ddl import LEDGER_COLUMNS
from load.redshift.identifiers import RedshiftTables, quote
from load.redshift.merge import MergeStats
from load.redshift.statements import Statement


def ledger_lookup(tables: RedshiftTables, root: S3Location) -> Statement:
    """Ledger rows under ``root`` (LIKE may match a few more; callers compare exactly)."""
    return Statement(
        "ledger_lookup",
        f'SELECT "prefix", "content_hash" FROM {tables.ledger_q} WHERE "prefix" LIKE :root_pattern',
        (("root_pattern", root.format() + "%"),),
    )


def ledger_from_rows(root: S3Location, rows: Iterable[Sequence[Any]]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for prefix, digest in rows:
        if isinstance(prefix, str) and prefix.startswith(root.format()):
            found.setdefault(prefix, set()).add(str(digest).strip())
    return {k: frozenset(v) for k, v in found.items()}


_NONE: Final = "none"


def ledger_insert(tables: RedshiftTables, bucket: str, partition: PartitionPlan, stats: MergeStats) -> Statement:
    """Record a loaded partition; every value is a parameter."""
    names = [name for name, _ in LEDGER_COLUMNS]
    values = {
        "prefix": partition.prefix,
        "content_hash": partition.content_hash,
        "manifest_url": f"s3://{bucket}/{partition.manifest_key}",
        "files": str(len(partition.files)),
        "bytes": str(partition.bytes),
        "rows_staged": str(stats.staged),
        "rows_rejected": str(stats.rejected),
        "natural_duplicates": str(stats.natural_duplicates),
        "synthetic_duplicates": str(stats.synthetic_duplicates),
        "rows_inserted": str(stats.inserted),
        "min_collector_tstamp": stats.min_collector_tstamp or _NONE,
        "max_collector_tstamp": stats.max_collector_tstamp or _NONE,
    }
    kinds = dict(LEDGER_COLUMNS)
    exprs = []
    for name in names[:-1]:
        kind = kinds[name]
        if kind in ("INTEGER", "BIGINT"):
            exprs.append(f"CAST(:{name} AS {kind})")
        elif kind == "TIMESTAMP":
            exprs.append(f"CAST(NULLIF(:{name}, '{_NONE}') AS TIMESTAMP)")
        else:
            exprs.append(f":{name}")
    exprs.append("GETDATE()")
    return Statement(
        "ledger_insert",
        f"INSERT INTO {tables.ledger_q} ({', '.join(quote(n) for n in names)})\nVALUES ({', '.join(exprs)})",
        tuple(values.items()),
    )
