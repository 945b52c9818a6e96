"""The scheduled loader's step: merge Firehose's staging table, drain the entity queue, then
report COPY load errors.

:func:`run_loader` takes its configuration, executor, schema resolver and the current time
as arguments and returns a typed summary; the Lambda adapter is :mod:`load.redshift_handler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from load.redshift.entity_load import DrainSummary, drain_entities, prepare_tables
from load.redshift.executor import Executor, merge_once
from load.redshift.identifiers import RedshiftTables
from load.redshift.load_errors import LoadErrorDetail, load_errors_since
from load.redshift.merge import MergeStats, staged_count, stream_merge_plan
from pipeline.config import PipelineConfig
from pipeline.iglu import Resolver


@dataclass(frozen=True, slots=True)
class StreamLoadResult:
    """What one run of the scheduled loader did."""

    stats: MergeStats
    merged: bool
    load_errors: tuple[LoadErrorDetail, ...] = ()
    entities: DrainSummary = DrainSummary()

    def metrics(self) -> dict[str, int]:
        """Counters for CloudWatch (one metric each)."""
        return {
            "RowsStaged": self.stats.staged,
            "RowsInserted": self.stats.inserted,
            "NaturalDuplicates": self.stats.natural_duplicates,
            "SyntheticDuplicates": self.stats.synthetic_duplicates,
            "RowsRejected": self.stats.rejected,
            "LoadErrors": len(self.load_errors),
            "EntitiesTyped": self.entities.typed,
            "EntitiesFallback": self.entities.fallback,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "merged": self.merged,
            **self.stats.to_json(),
            **self.entities.to_json(),
            "load_errors": [e.to_json() for e in self.load_errors],
        }


def run_loader(config: PipelineConfig, executor: Executor, resolver: Resolver, now: datetime) -> StreamLoadResult:
    """Merge Firehose's staging table into the events table, move the inserted events'
    entities to their tables, then report recent COPY errors.

    The drain runs every time, merged or not, so entities a failed drain left queued are
    moved by the next run.  ``now`` (aware, UTC) bounds the load-error window: the COPY
    errors of Firehose's files from the last ``redshift.load_error_window_minutes``.
    """
    tables = RedshiftTables.from_config(config.redshift)
    prepare_tables(executor, tables)
    staged = executor.execute(staged_count(tables)).rows
    merged = bool(staged and staged[0] and int(staged[0][0] or 0) > 0)
    stats = merge_once(executor, stream_merge_plan(tables)) if merged else MergeStats.empty()
    entities = drain_entities(executor, tables, resolver)
    errors: tuple[LoadErrorDetail, ...] = ()
    window = config.redshift.load_error_window_minutes
    if window:
        since = (now - timedelta(minutes=window)).strftime("%Y-%m-%d %H:%M:%S")
        files = f"s3://{config.resources.output_bucket}/{config.resources.firehose_prefix}"
        rows = executor.execute(load_errors_since(since, files)).rows
        errors = tuple(LoadErrorDetail.from_row(row) for row in rows)
    return StreamLoadResult(stats, merged, errors, entities)
