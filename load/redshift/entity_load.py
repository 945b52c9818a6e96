"""Run the entity tables' steps on an executor: prepare the tables, then drain the queue.

:func:`prepare_tables` brings a schema created by an older version up to date (the entity
queue, its position table, the fallback table, the staging tables' JSON columns) and is
cheap when there is nothing to do (one ``information_schema`` read).  :func:`drain_entities`
resolves what the merges queued, creates or evolves the typed tables and moves every queued
entity to its table (see :mod:`load.redshift.entity_tables`).  Both take their executor and
resolver as arguments and return typed values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from load.errors import StatementFailedError
from load.redshift.ddl import upgrade_statements
from load.redshift.entity_tables import (
    DrainPlan,
    drain_transactions,
    entity_ddl_statements,
    entity_queue_table,
    junk_count_statement,
    live_columns_statement,
    live_tables,
    plan_drain,
    queue_census_statement,
    slots_table,
)
from load.redshift.executor import Executor
from load.redshift.identifiers import RedshiftTables
from pipeline.entities import UNRESOLVED_ENTITY_TABLE
from pipeline.iglu import Resolver


def prepare_tables(executor: Executor, tables: RedshiftTables) -> int:
    """Create the entity queue, position and fallback tables when absent, and add the JSON
    columns to staging and rejects tables of an older version.  Returns the statements run."""
    live = live_tables(executor.execute(live_columns_statement(tables)).rows)
    statements = list(upgrade_statements(tables, live))
    needed = {entity_queue_table(tables), slots_table(tables), UNRESOLVED_ENTITY_TABLE}
    if not needed <= live.keys():
        statements = [*entity_ddl_statements(tables), *statements]
    for statement in statements:
        executor.execute(statement)
    return len(statements)


@dataclass(frozen=True, slots=True)
class DrainSummary:
    """What one drain did."""

    typed: int = 0
    """Entities written to their typed tables."""
    fallback: int = 0
    """Entities written to the fallback table (unresolved, unreadable, or a value that does not fit)."""
    tables: tuple[str, ...] = ()
    """The typed tables written to."""
    ddl: int = 0
    """CREATE / ALTER / COMMENT statements run."""
    fallback_reasons: tuple[tuple[str, str], ...] = ()
    """(schema URI, why) for every URI the plan sent to the fallback table as a whole."""

    def to_json(self) -> dict[str, Any]:
        return {
            "entities_typed": self.typed,
            "entities_fallback": self.fallback,
            "entity_tables": list(self.tables),
            "entity_ddl": self.ddl,
            "fallback_schemas": [{"schema": uri, "reason": why} for uri, why in self.fallback_reasons],
        }


def _plan(executor: Executor, tables: RedshiftTables, uris: list[str], resolver: Resolver) -> DrainPlan:
    live = live_tables(executor.execute(live_columns_statement(tables)).rows)
    return plan_drain(uris, resolver, live, tables)


def drain_entities(executor: Executor, tables: RedshiftTables, resolver: Resolver) -> DrainSummary:
    """Move every queued entity to its typed table or the fallback table.

    The tables' DDL runs first, one statement at a time (Redshift cannot widen a VARCHAR
    inside a transaction).  A DDL statement that fails because another loader changed the
    table at the same moment is planned again once from the tables as they now are.  Raises
    :class:`~pipeline.iglu.RegistryUnavailableError` (retryable) when a registry cannot be
    asked; the queue keeps its rows for the next run.
    """
    census = executor.execute(queue_census_statement(tables)).rows
    uris = [str(row[0]) for row in census]
    junk = executor.execute(junk_count_statement(tables)).rows
    if not uris and not (junk and junk[0] and int(junk[0][0] or 0) > 0):
        return DrainSummary()
    plan = _plan(executor, tables, uris, resolver)
    ddl = 0
    for attempt in (1, 2):
        try:
            for table in plan.ddl:
                for statement in table.statements:
                    executor.execute(statement)
                    ddl += 1
            break
        except StatementFailedError:
            if attempt == 2:
                raise
            plan = _plan(executor, tables, uris, resolver)
    typed = fallback = 0
    for chunk in drain_transactions(tables, plan):
        results = executor.execute_transaction(chunk.transaction)
        for result in results:
            if result.label == "drain_stats" and result.rows:
                typed += int(result.rows[0][0] or 0)
                fallback += int(result.rows[0][1] or 0)
    return DrainSummary(typed, fallback, plan.tables, ddl, plan.fallback)
