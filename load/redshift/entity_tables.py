"""Self-describing entities into Snowplow's shredded tables: the queue, the plan, the SQL.

Snowplow's web models read entities from one table per schema family and major version
(``atomic.com_snowplowanalytics_snowplow_web_page_1``), keyed to the event by ``root_id`` and
``root_tstamp``.  Loading them takes two steps, each one transaction:

1. **Queue** (inside the events merge, :func:`queue_statement`).  Every entity of every event
   the merge inserts -- the unstruct event, each context and each derived context -- becomes
   one row of the entity queue, with its schema URI and its data as JSON text, unnested in
   SQL from the staged JSON columns through a table of array positions
   (:data:`ENTITY_SLOTS` of them).  It commits with the events, so an entity is queued
   exactly once per loaded event: a replayed or already-loaded event queues nothing.  What
   cannot be read as entities (an envelope that is not JSON, more than :data:`ENTITY_SLOTS`
   contexts) is queued whole, with the problem, for the fallback table.
2. **Drain** (:func:`plan_drain`, then :func:`drain_transactions`, run by
   :mod:`load.redshift.entity_load`).  The queue's schema URIs are resolved through the Iglu
   resolver and turned into tables the way Snowplow's loader derives them
   (:mod:`pipeline.entities`: typed columns, new nullable columns for later minor versions,
   wider VARCHARs, a recovery table for a breaking version).  The tables are created or
   evolved first (DDL outside any transaction, as Redshift requires for ``ALTER COLUMN``);
   then each chunk of URIs moves, in one locked transaction, from the queue to its typed
   table -- or, when its schema cannot be resolved or a value does not fit its column, to
   :data:`~pipeline.entities.UNRESOLVED_ENTITY_TABLE` with the reason and the entity as
   ``SUPER`` -- and leaves the queue.  Nothing is dropped; a URI first seen after the plan
   stays queued for the next drain.

Values reach the typed columns through Redshift's text JSON functions
(``JSON_EXTRACT_PATH_TEXT`` and friends, always with ``null_if_invalid``, so that no text,
however malformed, can fail a statement; an engine may evaluate a guarded expression before
its guard) and guarded casts: a value is cast only after a pattern has shown
that the cast succeeds (integers and their range, numbers, decimals, booleans, calendar
dates and timestamps), so one odd value sends its entity to the fallback table instead of
failing the transaction.  Data API batches hold at most :data:`MAX_BATCH_STATEMENTS`
statements, so drains are chunked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from load.redshift.identifiers import RedshiftTables, identifier, quote
from load.redshift.statements import Statement, Transaction
from pipeline.entities import (
    ARRAY_VARCHAR_SIZE,
    SHRED_METADATA_COLUMNS,
    UNRESOLVED_ENTITY_TABLE,
    EntityModelError,
    RedshiftType,
    ShredColumn,
    ShredModel,
    column_definitions,
    redshift_identifier_problem,
    shred_family,
)
from pipeline.iglu import Resolver, SchemaKey, family_versions

ENTITY_SOURCE_COLUMNS: Final = ("unstruct_event", "contexts", "derived_contexts")
"""The canonical JSON columns entities come from (staging tables carry them)."""
ENTITY_SLOTS: Final = 1024
"""Array positions unnested per envelope; an envelope with more entities is queued whole."""
MAX_BATCH_STATEMENTS: Final = 40
"""The Data API's limit on statements in one BatchExecuteStatement."""
MAX_SQL_CHARS: Final = 90_000
"""Below the Data API's 100,000-character limit on one statement."""
_TABLES_PER_DRAIN: Final = MAX_BATCH_STATEMENTS - 8
_DRAIN_TEMP: Final = "clk_entity_drain"
_IGLU_URI_PATTERN: Final = "^iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z][a-zA-Z0-9_-]*/[0-9]+-[0-9]+-[0-9]+$"
_REASON_WIDTH: Final = 1024


# =========================================================================== names and DDL
def entity_queue_table(tables: RedshiftTables) -> str:
    return identifier(f"{tables.events}_entity_queue", "entity queue table")


def slots_table(tables: RedshiftTables) -> str:
    return identifier(f"{tables.events}_entity_slots", "entity slots table")


def _literal(text: str) -> str:
    """A SQL string literal.  Batched statements take no parameters; every text written here
    is a schema URI (its characters checked by the Iglu pattern), a column or table name
    (checked), or a fixed message -- quotes are doubled all the same."""
    if "\\" in text or "\x00" in text:
        raise ValueError(f"{text[:60]!r} cannot be written as a SQL literal here")
    return "'" + text.replace("'", "''") + "'"


def entity_ident(name: str) -> str:
    """A shredded table's column or table name, double-quoted (schema-ddl's names hold dots)."""
    problem = redshift_identifier_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return f'"{name}"'


QUEUE_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("root_id", "VARCHAR(65535)"),
    ("root_tstamp", "TIMESTAMP"),
    ("source", "VARCHAR(16)"),
    ("position", "INTEGER"),
    ("uri", f"VARCHAR({ARRAY_VARCHAR_SIZE})"),
    ("data", f"VARCHAR({ARRAY_VARCHAR_SIZE})"),
    ("entity", f"VARCHAR({ARRAY_VARCHAR_SIZE})"),
    ("problem", "VARCHAR(256)"),
    ("queued_tstamp", "TIMESTAMP"),
)

FALLBACK_COLUMNS: Final[tuple[tuple[str, str, bool], ...]] = (
    ("schema_uri", "VARCHAR(1024)", True),
    ("root_id", "VARCHAR(65535)", False),
    ("root_tstamp", "TIMESTAMP", False),
    ("ref_root", "VARCHAR(255)", False),
    ("ref_parent", "VARCHAR(255)", False),
    ("source", "VARCHAR(16)", False),
    ("position", "INTEGER", True),
    ("reason", f"VARCHAR({_REASON_WIDTH})", False),
    ("entity", "SUPER", True),
    ("entity_text", f"VARCHAR({ARRAY_VARCHAR_SIZE})", True),
    ("load_tstamp", "TIMESTAMP", False),
)
"""The fallback table (not Snowplow's, whose loader rejects such an event): one row per entity
that could not be typed, with why; ``entity`` holds it as SUPER when it is a JSON object,
``entity_text`` holds the text otherwise (an envelope that is not JSON, say)."""


def entity_ddl_statements(tables: RedshiftTables) -> tuple[Statement, ...]:
    """The queue, the array-position table (filled once) and the fallback table (idempotent)."""
    queue = tables.qualified(entity_queue_table(tables))
    slots = tables.qualified(slots_table(tables))
    queue_body = ",\n".join(f"    {quote(name)} {kind} ENCODE ZSTD" for name, kind in QUEUE_COLUMNS)
    fallback_body = ",\n".join(
        f"    {quote(name)} {kind} ENCODE ZSTD{'' if nullable else ' NOT NULL'}"
        for name, kind, nullable in FALLBACK_COLUMNS
    )
    positions = "SELECT 0 AS i" + "".join(f" UNION ALL SELECT {i}" for i in range(1, ENTITY_SLOTS))
    return (
        Statement("create_entity_queue", f"CREATE TABLE IF NOT EXISTS {queue} (\n{queue_body}\n)\nDISTSTYLE EVEN"),
        Statement("create_entity_slots", f'CREATE TABLE IF NOT EXISTS {slots} ("i" INTEGER NOT NULL)\nDISTSTYLE ALL'),
        Statement(
            "fill_entity_slots",
            f'INSERT INTO {slots} ("i")\nSELECT s."i" FROM ({positions}) AS s'
            f"\nWHERE NOT EXISTS (SELECT 1 FROM {slots})",
        ),
        Statement(
            "create_unresolved_entities",
            f"CREATE TABLE IF NOT EXISTS {tables.qualified(UNRESOLVED_ENTITY_TABLE)} (\n{fallback_body}\n)\n"
            f'DISTSTYLE KEY\nDISTKEY ("root_id")\nSORTKEY ("root_tstamp")',
        ),
    )


# =========================================================================== step 1: the queue
def _valid_object(expr: str) -> str:
    return f"IS_VALID_JSON({expr})"


def _array_length(envelope: str) -> str:
    """The length of ``envelope``'s data array, or NULL when it is not an object holding one."""
    data = f"JSON_EXTRACT_PATH_TEXT({envelope}, 'data', true)"
    return (
        f"CASE WHEN {_valid_object(envelope)} THEN CASE WHEN IS_VALID_JSON_ARRAY({data}) "
        f"THEN JSON_ARRAY_LENGTH({data}, true) END END"
    )


def queue_statement(tables: RedshiftTables, new_rows: str) -> Statement:
    """Queue the entities of ``new_rows`` (a subquery of the rows the merge inserts, with their
    final ``event_id``, ``collector_tstamp`` and the three JSON columns)."""
    queue = tables.qualified(entity_queue_table(tables))
    slots = tables.qualified(slots_table(tables))
    columns = ", ".join(quote(name) for name, _ in QUEUE_COLUMNS)
    branches = []
    for source in ("derived_contexts", "contexts"):
        col = f"r.{quote(source)}"
        # The array and its length are computed once per row, so the join with the positions
        # compares integers only (a cross join would parse the envelope once per position).
        arrays = (
            f'SELECT r."event_id", r."collector_tstamp", JSON_EXTRACT_PATH_TEXT({col}, \'data\', true) AS "items", '
            f'{_array_length(col)} AS "length"\n        FROM {new_rows} AS r\n        WHERE {col} IS NOT NULL'
        )
        element = 'JSON_EXTRACT_ARRAY_ELEMENT_TEXT(a."items", n."i", true)'
        branches.append(
            f"""SELECT a."event_id" AS "root_id", a."collector_tstamp" AS "root_tstamp", '{source}' AS "source",
        n."i" AS "position", {element} AS "entity", CAST(NULL AS VARCHAR(256)) AS "problem"
    FROM (
        {arrays}
    ) AS a
    JOIN {slots} AS n ON n."i" < a."length"
    WHERE a."length" <= {ENTITY_SLOTS}"""
        )
        branches.append(
            f"""SELECT r."event_id", r."collector_tstamp", '{source}', CAST(NULL AS INTEGER), {col},
        CASE WHEN {_array_length(col)} IS NULL THEN '{source} is not a JSON object with a data array'
            ELSE '{source} holds more than {ENTITY_SLOTS} entities' END
    FROM {new_rows} AS r
    WHERE {col} IS NOT NULL AND COALESCE({_array_length(col)}, {ENTITY_SLOTS} + 1) > {ENTITY_SLOTS}"""
        )
    unstruct = 'r."unstruct_event"'
    unstruct_entity = f"CASE WHEN {_valid_object(unstruct)} THEN JSON_EXTRACT_PATH_TEXT({unstruct}, 'data', true) END"
    branches.append(
        f"""SELECT r."event_id", r."collector_tstamp", 'unstruct_event', 0, {unstruct_entity},
        CAST(NULL AS VARCHAR(256))
    FROM {new_rows} AS r
    WHERE {unstruct_entity} IS NOT NULL"""
    )
    branches.append(
        f"""SELECT r."event_id", r."collector_tstamp", 'unstruct_event', CAST(NULL AS INTEGER), {unstruct},
        'unstruct_event is not a JSON object with a data member'
    FROM {new_rows} AS r
    WHERE {unstruct} IS NOT NULL AND ({unstruct_entity}) IS NULL"""
    )
    union = "\n    UNION ALL\n    ".join(branches)
    entity = 'e."entity"'
    readable = f'e."problem" IS NULL AND {_valid_object(entity)}'
    return Statement(
        "queue_entities",
        f"""INSERT INTO {queue} ({columns})
SELECT e."root_id", e."root_tstamp", e."source", e."position",
    CASE WHEN {readable} THEN JSON_EXTRACT_PATH_TEXT({entity}, 'schema', true) END,
    CASE WHEN {readable} THEN JSON_EXTRACT_PATH_TEXT({entity}, 'data', true) END,
    {entity}, e."problem", GETDATE()
FROM (
    {union}
) AS e""",
    )


# =========================================================================== step 2: the plan
@dataclass(frozen=True, slots=True)
class LiveColumn:
    name: str
    data_type: str
    """As ``information_schema.columns`` spells it (engine-specific; compared by kind)."""
    max_length: int | None


LiveTables = Mapping[str, Mapping[str, LiveColumn]]
"""Table name -> column name -> column, for the load schema (from :func:`live_columns_statement`)."""


def live_columns_statement(tables: RedshiftTables) -> Statement:
    """Every column of the load schema's tables (to create and evolve the entity tables)."""
    return Statement(
        "live_columns",
        'SELECT "table_name", "column_name", "data_type", "character_maximum_length"\n'
        'FROM "information_schema"."columns"\nWHERE "table_schema" = :schema',
        (("schema", tables.schema),),
    )


def live_tables(rows: Iterable[Sequence[object]]) -> dict[str, dict[str, LiveColumn]]:
    found: dict[str, dict[str, LiveColumn]] = {}
    for table, column, data_type, length in rows:
        size = int(str(length)) if length not in (None, "") else None
        found.setdefault(str(table), {})[str(column)] = LiveColumn(str(column), str(data_type).lower(), size)
    return found


def queue_census_statement(tables: RedshiftTables) -> Statement:
    """The queue's schema URIs (valid Iglu URIs only; everything else drains to the fallback)."""
    queue = tables.qualified(entity_queue_table(tables))
    return Statement(
        "entity_census",
        f'SELECT q."uri", COUNT(*) FROM {queue} AS q\n'
        f'WHERE q."problem" IS NULL AND q."uri" ~ \'{_IGLU_URI_PATTERN}\'\nGROUP BY q."uri"\nORDER BY q."uri"',
    )


def junk_count_statement(tables: RedshiftTables) -> Statement:
    """How many queued rows are not entities with an Iglu URI (they drain to the fallback)."""
    queue = tables.qualified(entity_queue_table(tables))
    return Statement("entity_junk", f"SELECT COUNT(*) FROM {queue} AS q\nWHERE {_junk_filter('q')}")


def _junk_filter(alias: str) -> str:
    """Queued rows that are not an entity with an Iglu URI (``alias`` "" for no qualifier)."""
    p = f"{alias}." if alias else ""
    return f'({p}"problem" IS NOT NULL OR {p}"uri" IS NULL OR NOT ({p}"uri" ~ \'{_IGLU_URI_PATTERN}\'))'


@dataclass(frozen=True, slots=True)
class TypedTarget:
    """Where entities of one schema version go: a table, with that version's columns."""

    key: SchemaKey
    table: str
    model: ShredModel
    """The version's own model (for a recovery version, its recovery model)."""


@dataclass(frozen=True, slots=True)
class TableDdl:
    table: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """What a drain does: typed targets per URI, fallback reasons per URI, and the DDL first."""

    targets: tuple[TypedTarget, ...]
    fallback: tuple[tuple[str, str], ...]
    """(schema URI, reason) of URIs whose entities go to the fallback table."""
    ddl: tuple[TableDdl, ...]
    drain_junk: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(sorted({t.table for t in self.targets}))


_KINDS: Final = {
    "varchar": "string",
    "character varying": "string",
    "char": "string",
    "character": "string",
    "bpchar": "string",
    "text": "string",
    "smallint": "integer",
    "integer": "integer",
    "int": "integer",
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "bigint": "integer",
    "double": "float",
    "double precision": "float",
    "float8": "float",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "numeric": "decimal",
    "decimal": "decimal",
}


def _kind_of_live(data_type: str) -> str:
    base = data_type.split("(", maxsplit=1)[0].strip()
    return _KINDS.get(base, "decimal" if base.startswith(("decimal", "numeric")) else base)


def _kind_of(column_type: RedshiftType) -> str:
    return {
        "VARCHAR": "string",
        "CHAR": "string",
        "SMALLINT": "integer",
        "INT": "integer",
        "BIGINT": "integer",
        "DOUBLE PRECISION": "float",
        "BOOLEAN": "boolean",
        "DATE": "date",
        "TIMESTAMP": "timestamp",
        "DECIMAL": "decimal",
    }[column_type.name]


def _table_ddl(tables: RedshiftTables, table: ShredModel, live: Mapping[str, LiveColumn] | None) -> TableDdl:
    """CREATE TABLE for a missing table; for a live one, the new columns and wider VARCHARs."""
    name = table.table_name
    qualified = f"{quote(tables.schema)}.{entity_ident(name)}"
    if live is None:
        body = column_definitions(table.columns)
        return TableDdl(
            name,
            (
                Statement(
                    f"create_entity_table {name}",
                    f"CREATE TABLE IF NOT EXISTS {qualified} (\n{body}\n)\n"
                    f'DISTSTYLE KEY\nDISTKEY ("root_id")\nSORTKEY ("root_tstamp")',
                ),
                Statement(f"comment_entity_table {name}", f"COMMENT ON TABLE {qualified} IS {_literal(table.key.uri)}"),
            ),
        )
    statements: list[Statement] = []
    for column in table.columns:
        present = live.get(column.name)
        if present is None:
            statements.append(
                Statement(
                    f"add_entity_column {name}.{column.name}",
                    f"ALTER TABLE {qualified} ADD COLUMN {entity_ident(column.name)} {column.type.sql} "
                    f"ENCODE {column.encoding}",
                )
            )
        elif (
            column.type.name == "VARCHAR"
            and present.max_length is not None
            and column.type.size is not None
            and column.type.size > present.max_length
        ):
            statements.append(
                Statement(
                    f"widen_entity_column {name}.{column.name}",
                    f"ALTER TABLE {qualified} ALTER COLUMN {entity_ident(column.name)} TYPE {column.type.sql}",
                )
            )
    return TableDdl(name, tuple(statements))


def _conflicts(model: ShredModel, live: Mapping[str, LiveColumn] | None) -> list[str]:
    """Columns of ``model`` that a live table holds with a type of another kind."""
    if live is None:
        return []
    problems = []
    for column in (*SHRED_METADATA_COLUMNS, *model.columns):
        present = live.get(column.name)
        if present is not None and _kind_of_live(present.data_type) != _kind_of(column.type):
            problems.append(f"column {column.name} is {present.data_type}, the schema needs {column.type.sql}")
    return problems


def plan_drain(census: Iterable[str], resolver: Resolver, live: LiveTables, tables: RedshiftTables) -> DrainPlan:
    """Resolve the queued URIs and decide, per URI, its typed table or why it goes to the fallback.

    Raises :class:`~pipeline.iglu.RegistryUnavailableError` (retryable) when a registry
    cannot be asked: nothing is decided on a registry outage.
    """
    fallback: dict[str, str] = {}
    families: dict[tuple[str, str, str, int], list[SchemaKey]] = {}
    for uri in census:
        key = SchemaKey.parse(uri)
        if key is None:
            fallback[uri] = "not an Iglu schema URI"
            continue
        families.setdefault((key.vendor, key.name, key.format, key.model), []).append(key)
    targets: list[TypedTarget] = []
    ddl: dict[str, TableDdl] = {}
    for keys in families.values():
        known = family_versions(resolver, keys)
        known_keys = {k for k, _ in known}
        for key in keys:
            if key not in known_keys:
                fallback[key.uri] = "no registry has this schema"
        usable = [k for k in keys if k in known_keys]
        if not usable:
            continue
        try:
            family = shred_family(known)
        except EntityModelError as exc:
            for key in usable:
                fallback[key.uri] = f"the schema cannot be modelled as a table: {exc}"[:_REASON_WIDTH]
            continue
        for key in usable:
            model = family.model_for(key)
            table = family.table if not model.is_recovery else model
            problem = redshift_identifier_problem(table.table_name) or next(
                (p for c in table.columns if (p := redshift_identifier_problem(c.name)) is not None), None
            )
            if problem is not None:
                fallback[key.uri] = f"no Redshift table can hold it: {problem}"[:_REASON_WIDTH]
                continue
            conflicts = _conflicts(table, live.get(table.table_name))
            if conflicts:
                fallback[key.uri] = f"table {table.table_name}: " + "; ".join(conflicts)
                fallback[key.uri] = fallback[key.uri][:_REASON_WIDTH]
                continue
            if table.table_name not in ddl:
                ddl[table.table_name] = _table_ddl(tables, table, live.get(table.table_name))
            targets.append(TypedTarget(key, table.table_name, model))
    return DrainPlan(
        tuple(sorted(targets, key=lambda t: t.key.uri)),
        tuple(sorted(fallback.items())),
        tuple(ddl[name] for name in sorted(ddl)),
        drain_junk=True,
    )


# --------------------------------------------------------------------------- value SQL
def _extract(data: str, path: Sequence[str | int]) -> str:
    """The text at ``path`` in the JSON object ``data`` (NULL when absent), 5 steps per call."""
    expr = data
    rest = list(path)
    while rest:
        if isinstance(rest[0], int):
            index = rest.pop(0)
            element = f"JSON_EXTRACT_ARRAY_ELEMENT_TEXT({expr}, {index}, true)"
            expr = f"CASE WHEN IS_VALID_JSON_ARRAY({expr}) THEN {element} END"
            continue
        keys: list[str] = []
        while rest and isinstance(rest[0], str) and len(keys) < 5:
            keys.append(str(rest.pop(0)))
        call = f"JSON_EXTRACT_PATH_TEXT({expr}, {', '.join(_literal(k) for k in keys)}, true)"
        expr = call if expr == data else f"CASE WHEN IS_VALID_JSON({expr}) THEN {call} END"
    return expr


_INTEGER_RANGES: Final = {
    "SMALLINT": (-(2**15), 2**15 - 1),
    "INT": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
}
_NUMBER_PATTERN: Final = "^-?(0|[1-9][0-9]{0,300})([.][0-9]{1,300})?([eE][+-]?[0-9]{1,2})?$"
_DATE_PATTERN: Final = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_TIMESTAMP_PATTERN: Final = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "([.][0-9]{1,6})?([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?$"
)


def _day_overflows(value: str) -> str:
    """True when the day of a ``YYYY-MM-DD...`` text is past the end of its month.

    Text comparisons only (two-digit fields compare as numbers do): a cast here could be
    evaluated, by an engine that hoists common subexpressions, for text that is no date.
    """
    month = f"SUBSTRING({value}, 6, 2)"
    day = f"SUBSTRING({value}, 9, 2)"
    century = f"SUBSTRING({value}, 1, 2)"
    years = f"SUBSTRING({value}, 3, 2)"
    multiples_of_four = "(" + ", ".join(f"'{n:02d}'" for n in range(0, 100, 4)) + ")"
    leap = (
        f"(({years} <> '00' AND {years} IN {multiples_of_four}) "
        f"OR ({years} = '00' AND {century} IN {multiples_of_four}))"
    )
    last = (
        f"CASE WHEN {month} = '02' THEN CASE WHEN {leap} THEN '29' ELSE '28' END "
        f"WHEN {month} IN ('04', '06', '09', '11') THEN '30' ELSE '31' END"
    )
    return f"{day} > {last}"


def _value_text(column: ShredColumn, data: str) -> str:
    text = _extract(data, column.path) if column.path else data
    return text if column.type.name in ("VARCHAR", "CHAR") else f"NULLIF({text}, '')"


def _violations(column: ShredColumn, data: str) -> list[tuple[str, str]]:
    """(condition, reason) pairs, in the order they must be tested: a later condition may cast,
    because the earlier ones have shown the text has the right shape."""
    v = _value_text(column, data)
    name = column.name
    t = column.type
    checks: list[tuple[str, str]] = []
    if not column.nullable:
        checks.append((f"{v} IS NULL", f"{name}: required, but absent or null"))
    if t.name == "VARCHAR":
        checks.append((f"OCTET_LENGTH({v}) > {t.size}", f"{name}: longer than {t.size} bytes"))
    elif t.name == "CHAR":
        checks.append(
            (f"OCTET_LENGTH({v}) > {t.size} OR OCTET_LENGTH({v}) <> LENGTH({v})", f"{name}: not {t.size} ASCII chars")
        )
    elif t.name in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[t.name]
        checks.append((f"NOT ({v} ~ '^-?[0-9]{{1,19}}$')", f"{name}: not an integer"))
        checks.append((f"CAST({v} AS DECIMAL(38, 0)) NOT BETWEEN {low} AND {high}", f"{name}: out of {t.name} range"))
    elif t.name == "DOUBLE PRECISION":
        checks.append((f"NOT ({v} ~ '{_NUMBER_PATTERN}')", f"{name}: not a number a double holds"))
    elif t.name == "DECIMAL":
        precision = t.precision if t.precision is not None else 18
        scale = t.scale or 0
        fraction = f"([.][0-9]{{1,{scale}}})?" if scale else ""
        checks.append((f"NOT ({v} ~ '^-?[0-9]{{1,{precision - scale}}}{fraction}$')", f"{name}: does not fit {t.sql}"))
    elif t.name == "BOOLEAN":
        checks.append((f"{v} NOT IN ('true', 'false')", f"{name}: not a boolean"))
    elif t.name == "DATE":
        checks.append((f"NOT ({v} ~ '{_DATE_PATTERN}')", f"{name}: not a date"))
        checks.append((_day_overflows(v), f"{name}: not a date"))
    elif t.name == "TIMESTAMP":
        checks.append((f"NOT ({v} ~ '{_TIMESTAMP_PATTERN}')", f"{name}: not an ISO 8601 date-time"))
        checks.append((_day_overflows(v), f"{name}: not an ISO 8601 date-time"))
    return checks


def _value(column: ShredColumn, data: str) -> str:
    v = _value_text(column, data)
    t = column.type
    if t.name in ("VARCHAR", "CHAR"):
        return v
    if t.name == "TIMESTAMP":
        # an offset is honoured: the instant is stored in UTC, as Snowplow's loader stores it
        return f"CAST(CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"CAST({v} AS {t.sql})"


def _reason_case(plan: DrainPlan, uris: Sequence[str], alias: str) -> str:
    data = f'{alias}."data"'
    whens = [f"WHEN {_junk_filter(alias)} THEN COALESCE({alias}.\"problem\", 'not a self-describing entity')"]
    by_uri = {t.key.uri: t for t in plan.targets}
    reasons = dict(plan.fallback)
    for uri in uris:
        if uri in reasons:
            whens.append(f'WHEN {alias}."uri" = {_literal(uri)} THEN {_literal(reasons[uri])}')
            continue
        target = by_uri[uri]
        checks = [c for column in target.model.columns for c in _violations(column, data)]
        if any(column.path for column in target.model.columns):
            checks.insert(0, (f"NOT IS_VALID_JSON({data})", "the entity's data is not a JSON object"))
        inner = " ".join(f"WHEN {cond} THEN {_literal(reason)}" for cond, reason in checks)
        whens.append(
            f'WHEN {alias}."uri" = {_literal(uri)} THEN '
            + (f"CASE {inner} ELSE NULL END" if inner else "CAST(NULL AS VARCHAR(1024))")
        )
    return "CASE\n        " + "\n        ".join(whens) + "\n    END"


def _typed_insert(tables: RedshiftTables, table: str, targets: Sequence[TypedTarget]) -> Statement:
    """One INSERT per table: each version writes its own columns (others NULL), as Snowplow's
    loader COPYs each version with its own column list."""
    columns: list[ShredColumn] = []
    for target in targets:
        for column in target.model.columns:
            if all(c.name != column.name for c in columns):
                columns.append(column)
    meta = ", ".join(entity_ident(c.name) for c in SHRED_METADATA_COLUMNS)
    names = ", ".join([meta, *(entity_ident(c.name) for c in columns)])
    data = 'd."data"'
    uri_list = ", ".join(_literal(t.key.uri) for t in targets)
    values = []
    for column in columns:
        having = [t.key.uri for t in targets if any(c.name == column.name for c in t.model.columns)]
        value = _value(column, data)
        if len(having) == len(targets):
            values.append(value)
        else:
            values.append(f'CASE WHEN d."uri" IN ({", ".join(_literal(u) for u in having)}) THEN {value} END')
    name = targets[0].key.name
    ref_tree = _literal(f'["events","{name}"]') if all(t.key.name == name for t in targets) else "'[\"events\"]'"
    # schema_vendor/name/format/version come from the URI (checked by SchemaKey.parse)
    version = "SPLIT_PART(d.\"uri\", '/', 4)"
    selected = ",\n    ".join(
        [
            _literal(targets[0].key.vendor),
            _literal(targets[0].key.name),
            _literal(targets[0].key.format),
            version,
            'd."root_id"',
            'd."root_tstamp"',
            "'events'",
            ref_tree,
            "'events'",
            *values,
        ]
    )
    return Statement(
        f"insert_entities {table}",
        f"INSERT INTO {quote(tables.schema)}.{entity_ident(table)} ({names})\nSELECT\n    {selected}\n"
        f'FROM {quote(_DRAIN_TEMP)} AS d\nWHERE d."reason" IS NULL AND d."uri" IN ({uri_list})',
    )


def _fallback_insert(tables: RedshiftTables) -> Statement:
    names = ", ".join(quote(name) for name, _, _ in FALLBACK_COLUMNS)
    entity = 'd."entity"'
    return Statement(
        "insert_unresolved_entities",
        f"""INSERT INTO {tables.qualified(UNRESOLVED_ENTITY_TABLE)} ({names})
SELECT CASE WHEN OCTET_LENGTH(d."uri") <= 1024 THEN d."uri" END, d."root_id", d."root_tstamp", 'events', 'events',
    d."source", d."position", d."reason",
    CASE WHEN {_valid_object(entity)} THEN JSON_PARSE({entity}) END,
    CASE WHEN {_valid_object(entity)} THEN NULL ELSE {entity} END,
    GETDATE()
FROM {quote(_DRAIN_TEMP)} AS d
WHERE d."reason" IS NOT NULL""",
    )


@dataclass(frozen=True, slots=True)
class DrainChunk:
    uris: tuple[str, ...]
    junk: bool
    transaction: Transaction


def _chunk_filter(uris: Sequence[str], junk: bool, alias: str) -> str:
    p = f"{alias}." if alias else ""
    parts = []
    if uris:
        parts.append(f'({p}"problem" IS NULL AND {p}"uri" IN ({", ".join(_literal(u) for u in uris)}))')
    if junk:
        parts.append(_junk_filter(alias))
    return " OR ".join(parts) if parts else "1 = 0"


def _drain_transaction(tables: RedshiftTables, plan: DrainPlan, uris: Sequence[str], junk: bool) -> Transaction:
    queue = tables.qualified(entity_queue_table(tables))
    by_table: dict[str, list[TypedTarget]] = {}
    for target in plan.targets:
        if target.key.uri in uris:
            by_table.setdefault(target.table, []).append(target)
    locked = ", ".join(
        [queue, tables.qualified(UNRESOLVED_ENTITY_TABLE)]
        + [f"{quote(tables.schema)}.{entity_ident(t)}" for t in sorted(by_table)]
    )
    statements = [
        Statement("lock", f"LOCK {locked}"),
        Statement(
            "drain_batch",
            f'CREATE TEMP TABLE {quote(_DRAIN_TEMP)} AS\nSELECT q.*, {_reason_case(plan, uris, "q")} AS "reason"\n'
            f"FROM {queue} AS q\nWHERE {_chunk_filter(uris, junk, 'q')}",
        ),
        *(_typed_insert(tables, table, by_table[table]) for table in sorted(by_table)),
        _fallback_insert(tables),
        Statement(
            "drain_stats",
            f'SELECT COALESCE(SUM(CASE WHEN d."reason" IS NULL THEN 1 ELSE 0 END), 0), '
            f'COALESCE(SUM(CASE WHEN d."reason" IS NULL THEN 0 ELSE 1 END), 0)\nFROM {quote(_DRAIN_TEMP)} AS d',
        ),
        Statement("drain_delete", f"DELETE FROM {queue}\nWHERE {_chunk_filter(uris, junk, '')}"),
        Statement("drop_drain_batch", f"DROP TABLE {quote(_DRAIN_TEMP)}"),
    ]
    label = f"drain entities ({len(uris)} schemas{' and unreadable entities' if junk else ''})"
    return Transaction(label, tuple(statements))


def drain_transactions(tables: RedshiftTables, plan: DrainPlan) -> tuple[DrainChunk, ...]:
    """The drain as transactions of at most :data:`MAX_BATCH_STATEMENTS` statements and
    :data:`MAX_SQL_CHARS` characters each; the first also drains what is not an entity."""
    table_of = {t.key.uri: t.table for t in plan.targets}
    uris = sorted({*table_of, *(u for u, _ in plan.fallback)})
    chunks: list[DrainChunk] = []
    current: list[str] = []

    def fits(candidate: list[str], junk: bool) -> bool:
        tables_used = {table_of[u] for u in candidate if u in table_of}
        if len(tables_used) > _TABLES_PER_DRAIN:
            return False
        transaction = _drain_transaction(tables, plan, candidate, junk)
        return all(len(s.sql) <= MAX_SQL_CHARS for s in transaction.statements)

    for uri in uris:
        junk = not chunks
        if current and not fits([*current, uri], junk):
            chunks.append(DrainChunk(tuple(current), junk, _drain_transaction(tables, plan, current, junk)))
            current = []
            junk = False
        if not fits([uri], junk):
            raise ValueError(f"{uri}: its table has too many columns for one Data API statement")
        current.append(uri)
    junk = not chunks
    if current or junk:
        chunks.append(DrainChunk(tuple(current), junk, _drain_transaction(tables, plan, current, junk)))
    return tuple(chunks)
