"""Typed entity columns in Parquet, as Snowplow's lake loader writes them.

The canonical ``unstruct_event``, ``contexts`` and ``derived_contexts`` columns keep each entity
as JSON text.  Next to them, one typed column per entity family and major version:

* ``unstruct_event_{vendor}_{name}_{model}``: a struct, set on events whose unstruct event is
  of that family;
* ``contexts_{vendor}_{name}_{model}``: a list of structs, ``_schema_version`` first, one item
  per context of that family (the ``contexts`` first, then the ``derived_contexts``, each in
  its envelope's order), as common-streams' ``Transform.forContexts`` lists them.

:mod:`pipeline.entities` models the columns (``lake_family``); this module decides which
families a set of rows needs (:func:`add_entity_versions`, :func:`entity_layout`), turns the
model into Arrow (:func:`arrow_field`) and casts the JSON into it (:func:`with_entity_columns`).

Versions
    A column merges every version of its family from ``M-0-0`` up to the newest one the rows
    hold, as the lake loader does; registries cannot list their schemas, so
    :func:`pipeline.iglu.family_versions` probes them through the (caching) resolver.  The
    column therefore depends on the newest version present, not on which older ones happen to
    be, and two files whose newest version is the same have the same column; a file with a
    newer version has a column with more (nullable) struct members, which readers that unify
    schemas by name (``pyarrow.unify_schemas``, DuckDB's ``union_by_name``) merge.  A version
    that cannot merge (a breaking change) gets the ``..._recovered_...`` column of
    ``lake_family``.
Casting (schema-ddl's ``parquet.Caster``)
    Strings, booleans, whole numbers in range for ``int``/``long``, any number for ``double``,
    numbers that fit the scale and precision exactly for decimals (``decimal128``), ISO dates
    (``date32``), ISO date-times with an offset (``timestamp[us, UTC]``, truncated to
    microseconds as Spark's timestamps are), anything as compact JSON text for ``json``.
Not Snowplow's, on purpose
    The lake loader makes an event a bad row when an entity's schema cannot be resolved or one
    of its values does not cast.  Here the JSON columns keep every entity, so nothing is lost:
    an entity whose schema no registry has, or whose schema cannot be modelled
    (:class:`~pipeline.entities.EntityModelError`), gets no typed value, and a value that does
    not cast becomes null at the nearest level that may be null (a nullable member, else its
    struct, up to the column).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Context, Decimal, InvalidOperation
from functools import partial
from typing import Any, Final, NamedTuple

import pyarrow as pa

from pipeline.cache import BoundedCache
from pipeline.entities import (
    SCHEMA_VERSION_FIELD,
    EntityModelError,
    LakeDecimal,
    LakeEntityKind,
    LakeField,
    LakeList,
    LakeScalar,
    LakeStruct,
    LakeType,
    SubVersion,
    entity_items,
    lake_family,
)
from pipeline.iglu import Resolver, SchemaKey, family_versions

JSON_COLUMNS: Final = ("unstruct_event", "contexts", "derived_contexts")
"""The canonical columns the typed columns are derived from."""


class EntityFamily(NamedTuple):
    """An entity kind, schema family and major version: one typed column (and its recoveries)."""

    kind: LakeEntityKind
    vendor: str
    name: str
    format: str
    model: int

    def key(self, version: SubVersion) -> SchemaKey:
        return SchemaKey(self.vendor, self.name, self.format, self.model, *version)


EntityVersions = dict[EntityFamily, set[SubVersion]]
"""The versions of each family that a set of rows holds."""


# ------------------------------------------------------------------------------ reading entities
class _Entity(NamedTuple):
    family: EntityFamily
    version: SubVersion
    data: Any


def _entities(
    unstruct_event: str | None = None, contexts: str | None = None, derived_contexts: str | None = None
) -> list[_Entity]:
    """An event's entities: the unstruct event, then its contexts, then its derived contexts.

    Envelopes or entities that cannot be read are left out (the JSON columns keep them).
    """
    found, _ = entity_items(unstruct_event=unstruct_event, contexts=contexts, derived_contexts=derived_contexts)
    # entity_items lists derived contexts before contexts (rdb-loader's order); the lake loader
    # lists `contexts ::: derived_contexts`, so contexts come first here (a stable sort).
    order = {"unstruct_event": 0, "contexts": 1, "derived_contexts": 2}
    return [
        _Entity(
            EntityFamily(
                "unstruct_event" if source == "unstruct_event" else "contexts",
                key.vendor,
                key.name,
                key.format,
                key.model,
            ),
            (key.revision, key.addition),
            data,
        )
        for key, data, source, _ in sorted(found, key=lambda item: order[item[2]])
    ]


_ENTITY_READER_ENTRIES: Final = 20_000


class EntityReader:
    """Reads the entities of the JSON column texts, remembering the texts it read last (bounded).

    A partition's finalize reads every kept row twice, once for the layout and once for the
    typed values; with one reader for both, each distinct text is parsed once (until the memo
    fills, see :class:`~pipeline.cache.BoundedCache`).  An event's entities are its columns'
    entities in column order (:func:`_entities` reads the three envelopes independently).
    """

    def __init__(self, max_entries: int = _ENTITY_READER_ENTRIES) -> None:
        self._columns: dict[str, BoundedCache[str, list[_Entity]]] = {
            column: BoundedCache(max_entries, partial(_column_entities, column)) for column in JSON_COLUMNS
        }

    def column(self, column: str, text: str) -> list[_Entity]:
        return self._columns[column][text]

    def row(self, texts: tuple[str | None, str | None, str | None]) -> list[_Entity]:
        """The entities of an event given by its (unstruct_event, contexts, derived_contexts) texts."""
        found: list[_Entity] = []
        for column, text in zip(JSON_COLUMNS, texts, strict=True):
            if text:
                found += self._columns[column][text]
        return found


def _column_entities(column: str, text: str) -> list[_Entity]:
    return _entities(**{column: text})


def add_entity_versions(
    into: EntityVersions,
    unstruct_event: Iterable[str | None],
    contexts: Iterable[str | None],
    derived_contexts: Iterable[str | None],
    *,
    reader: EntityReader | None = None,
) -> None:
    """Add the families and versions of the entities in these JSON texts to ``into``.

    Only the texts matter, not which row holds them, so each distinct text is read once.
    """
    reader = reader or EntityReader()
    columns = (("unstruct_event", unstruct_event), ("contexts", contexts), ("derived_contexts", derived_contexts))
    for column, texts in columns:
        for text in {t for t in texts if t}:
            for entity in reader.column(column, text):
                into.setdefault(entity.family, set()).add(entity.version)


# ------------------------------------------------------------------------------ the layout
@dataclass(frozen=True, slots=True)
class EntityColumn:
    """One typed column: the family it holds, which of its versions, and its type."""

    family: EntityFamily
    versions: frozenset[SubVersion]
    """The versions whose entities this column holds (the merged ones, or one recovered version)."""
    field: LakeField

    @property
    def name(self) -> str:
        return self.field.name


@dataclass(frozen=True, slots=True)
class EntityLayout:
    """The typed columns of a file, sorted by name (they follow the canonical columns)."""

    columns: tuple[EntityColumn, ...] = ()

    def schema(self, canonical: pa.Schema) -> pa.Schema:
        """``canonical`` followed by the typed columns (``canonical`` itself when there are none)."""
        if not self.columns:
            return canonical
        return pa.schema([*canonical, *(arrow_field(c.field) for c in self.columns)], metadata=canonical.metadata)


def entity_layout(resolver: Resolver, versions: Mapping[EntityFamily, Iterable[SubVersion]]) -> EntityLayout:
    """The typed columns for rows holding ``versions`` of these families.

    Each family merges its versions up to the newest one present (probed through ``resolver``).
    A family none of whose present versions resolves, or whose schemas cannot be modelled, has
    no column.  When two columns would have the same name (vendors ``com.acme`` and
    ``com_acme`` normalise alike), the family that sorts first keeps it.  Raises
    :class:`~pipeline.iglu.RegistryUnavailableError` when a registry cannot be asked (retry).
    """
    columns: dict[str, EntityColumn] = {}
    for family in sorted(versions):
        present = set(versions[family])
        if not present:
            continue
        schemas = family_versions(resolver, [family.key(v) for v in present])
        if not schemas:
            continue
        try:
            modelled = lake_family(family.kind, schemas, present)
        except EntityModelError:
            continue  # the JSON column keeps these entities; fix the schema with a new version
        if modelled is None:
            continue
        # Versions below the newest that no row has still shape the merged column, but a merged
        # column that none of the rows' versions reaches (those present did not resolve) would
        # only hold nulls: it is left out.
        candidates = [EntityColumn(family, frozenset({v}), field) for v, field in modelled.recoveries]
        if present & modelled.merged_versions:
            candidates.insert(0, EntityColumn(family, modelled.merged_versions, modelled.field))
        for column in candidates:
            columns.setdefault(column.name, column)
    return EntityLayout(tuple(columns[name] for name in sorted(columns)))


# ------------------------------------------------------------------------------ Arrow types
_SCALAR_TYPES: Final[dict[str, pa.DataType]] = {
    "string": pa.string(),
    "json": pa.string(),  # Spark, DuckDB and Athena read JSON text as a string
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),  # Spark's TimestampType: microseconds
}


def arrow_type(lake_type: LakeType) -> pa.DataType:
    """The Arrow type of a lake-loader type (lists name their item ``element``, as Parquet does)."""
    if isinstance(lake_type, LakeScalar):
        return _SCALAR_TYPES[lake_type.kind]
    if isinstance(lake_type, LakeDecimal):
        return pa.decimal128(lake_type.precision, lake_type.scale)
    if isinstance(lake_type, LakeStruct):
        return pa.struct([arrow_field(f) for f in lake_type.fields])
    return pa.list_(pa.field("element", arrow_type(lake_type.element), nullable=lake_type.element_nullable))


def arrow_field(field: LakeField) -> pa.Field:
    """The Arrow field of a lake-loader field, keeping Iglu's nullability (the lake loader's default)."""
    return pa.field(field.name, arrow_type(field.type), nullable=field.nullable)


# ------------------------------------------------------------------------------ casting
_FAIL: Final = object()
"""A value that does not cast to its type."""

_Cast = Callable[[Any], Any]
"""A non-null JSON value to the Python value Arrow takes for the type, or ``_FAIL``."""

_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)
# Exact arithmetic for quantize: 38 digits and a scale up to 38 fit in 80.
_DECIMAL_CONTEXT: Final = Context(prec=80)
# Java's DateTimeFormatter.ISO_LOCAL_DATE and ISO_DATE_TIME (case-insensitive T and Z; an
# offset is required, because Instant.from needs one); [0-9], not \d, which matches other digits.
_ISO_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_ISO_DATE_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{0,9}))?)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)(?:\[[^\]]+\])?\Z"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _utf8(text: str) -> bool:
    """Whether Arrow can store the text (a JSON ``\\ud800`` escape decodes to a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(value: Any) -> Any:
    return value if type(value) is str and _utf8(value) else _FAIL


def _boolean(value: Any) -> Any:
    return value if type(value) is bool else _FAIL


def _whole(bounds: tuple[int, int]) -> _Cast:
    low, high = bounds

    def cast(value: Any) -> Any:
        # circe's toInt / toLong: any whole number in range, 1.0 and 1e2 included
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is int and low <= value <= high:
            return value
        return _FAIL

    return cast


def _double(value: Any) -> Any:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return _FAIL
    return _FAIL


def _decimal(lake_type: LakeDecimal) -> _Cast:
    exponent = Decimal(1).scaleb(-lake_type.scale)

    def cast(value: Any) -> Any:
        if type(value) is int:
            number = Decimal(value)
        elif type(value) is float and math.isfinite(value):
            number = Decimal(repr(value))  # the shortest text of the float: how it was most likely written
        else:
            return _FAIL
        try:
            scaled = number.quantize(exponent, context=_DECIMAL_CONTEXT)
        except InvalidOperation:
            return _FAIL
        # schema-ddl: setScale(scale, UNNECESSARY), so no rounding; and the value must fit the
        # precision (checked on the scaled value: Arrow stores that one).
        if scaled != number or len(scaled.as_tuple().digits) > lake_type.precision:
            return _FAIL
        return scaled

    return cast


def _date(value: Any) -> Any:
    match = _ISO_DATE.match(value) if type(value) is str else None
    if match is None:
        return _FAIL
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return _FAIL


def _timestamp(value: Any) -> Any:
    match = _ISO_DATE_TIME.match(value) if type(value) is str else None
    if match is None:
        return _FAIL
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m, off_s = match.groups()
    try:
        offset = timedelta(0)
        if not zulu:
            if int(off_m) > 59 or int(off_s or 0) > 59:
                return _FAIL
            offset = timedelta(hours=int(off_h), minutes=int(off_m), seconds=int(off_s or 0))
            if offset > timedelta(hours=18):  # java.time.ZoneOffset's range
                return _FAIL
            offset = -offset if sign == "-" else offset
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int(((fraction or "") + "000000")[:6]),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return _FAIL
    return (moment - _EPOCH) // _MICROSECOND


def _json_text(value: Any) -> str:
    """circe's ``noSpaces``: compact, non-ASCII kept (escaped only where Arrow could not store it)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if _utf8(text) else json.dumps(value, separators=(",", ":"))


_SCALAR_CASTS: Final[dict[str, _Cast]] = {
    "string": _string,
    "json": _json_text,
    "boolean": _boolean,
    "int": _whole(_INT32),
    "long": _whole(_INT64),
    "double": _double,
    "date": _date,
    "timestamp": _timestamp,
}


def _null(nullable: bool, lake_type: LakeType) -> Any:
    """What a JSON null (or an absent key) becomes: null, or the text ``null`` for a required JSON value."""
    if nullable:
        return None
    return "null" if lake_type == LakeScalar("json") else _FAIL


def _compile(lake_type: LakeType) -> _Cast:
    if isinstance(lake_type, LakeScalar):
        return _SCALAR_CASTS[lake_type.kind]
    if isinstance(lake_type, LakeDecimal):
        return _decimal(lake_type)
    if isinstance(lake_type, LakeStruct):
        return _struct(lake_type)
    return _list(lake_type)


def _struct(lake_type: LakeStruct) -> _Cast:
    # Accessors sorted: with several keys for one member (names that collide once normalised),
    # schema-ddl takes the first that casts in its set's order; a fixed order keeps files stable.
    members = tuple((f.name, tuple(sorted(f.accessors)), _compile(f.type), f.nullable) for f in lake_type.fields)

    def cast(value: Any) -> Any:
        if type(value) is not dict:
            return _FAIL
        row: dict[str, Any] = {}
        for name, accessors, member_cast, nullable in members:
            result = _FAIL
            for key in accessors:
                item = value.get(key)
                # schema-ddl's castStructField: a null or absent key is "observed null", never cast
                if item is not None:
                    result = member_cast(item)
                    if result is not _FAIL:
                        break
            if result is _FAIL:
                if not nullable:
                    return _FAIL
                result = None
            row[name] = result
        return row

    return cast


def _list(lake_type: LakeList) -> _Cast:
    element_cast = _compile(lake_type.element)
    nullable = lake_type.element_nullable
    on_null = _null(nullable, lake_type.element)

    def cast(value: Any) -> Any:
        if type(value) is not list:
            return _FAIL
        items = []
        for item in value:
            result = on_null if item is None else element_cast(item)
            if result is _FAIL:
                if not nullable:
                    return _FAIL
                result = None
            items.append(result)
        return items

    return cast


def column_caster(field: LakeField) -> Callable[[Any], Any]:
    """A JSON value to the column's value; None for JSON null and for a value that does not cast."""
    cast = _compile(field.type)

    def column_value(value: Any) -> Any:
        if value is None:
            return None
        result = cast(value)
        return None if result is _FAIL else result

    return column_value


def _context_value(version: SubVersion, model: int, data: Any) -> Any:
    """common-streams' ``jsonForContext``: an object gets ``_schema_version``, which overrides its own."""
    if type(data) is not dict:
        return data
    return {**data, SCHEMA_VERSION_FIELD: f"{model}-{version[0]}-{version[1]}"}


# ------------------------------------------------------------------------------ columns
class _Compiled:
    """A layout's casters and where each family version's entities go."""

    def __init__(self, layout: EntityLayout) -> None:
        self.casters = [column_caster(c.field) for c in layout.columns]
        self.types = [arrow_type(c.field.type) for c in layout.columns]
        self.target: dict[tuple[EntityFamily, SubVersion], int] = {
            (c.family, version): index for index, c in enumerate(layout.columns) for version in c.versions
        }


def entity_arrays(
    layout: EntityLayout,
    unstruct_event: Sequence[str | None],
    contexts: Sequence[str | None],
    derived_contexts: Sequence[str | None],
    *,
    reader: EntityReader | None = None,
) -> list[pa.Array]:
    """The typed columns of rows given by their three JSON texts, one array per layout column.

    An entity whose family and version have no column in ``layout`` is left out.
    """
    compiled = _Compiled(layout)
    reader = reader or EntityReader()
    values: list[list[Any]] = [[None] * len(unstruct_event) for _ in layout.columns]
    # Rows often repeat their entities (a page's pings carry its web_page context): each
    # distinct triple of texts is read and cast once.  Bounded by the rows given (a chunk).
    seen: dict[tuple[str | None, str | None, str | None], list[tuple[int, Any]]] = {}
    for row, texts in enumerate(zip(unstruct_event, contexts, derived_contexts, strict=True)):
        if not any(texts):
            continue
        typed = seen.get(texts)
        if typed is None:
            typed = seen[texts] = _typed_values(compiled, reader.row(texts))
        for index, value in typed:
            values[index][row] = value
    return [pa.array(column, type=arrow) for column, arrow in zip(values, compiled.types, strict=True)]


def _typed_values(compiled: _Compiled, entities: Sequence[_Entity]) -> list[tuple[int, Any]]:
    """(column index, value) of each typed column an event's entities fill."""
    typed: list[tuple[int, Any]] = []
    listed: dict[int, list[Any]] = {}
    for entity in entities:
        index = compiled.target.get((entity.family, entity.version))
        if index is None:
            continue
        if entity.family.kind == "unstruct_event":
            typed.append((index, compiled.casters[index](entity.data)))
        else:
            listed.setdefault(index, []).append(_context_value(entity.version, entity.family.model, entity.data))
    typed.extend((index, compiled.casters[index](items)) for index, items in listed.items())
    return typed


def with_entity_columns(
    batch: pa.RecordBatch, layout: EntityLayout, reader: EntityReader | None = None
) -> pa.RecordBatch:
    """``batch`` (canonical columns) with the typed columns of ``layout`` appended; ``batch``
    itself when the layout has none."""
    if not layout.columns:
        return batch
    texts = [batch.column(name).to_pylist() for name in JSON_COLUMNS]
    arrays = entity_arrays(layout, texts[0], texts[1], texts[2], reader=reader)
    return pa.RecordBatch.from_arrays([*batch.columns, *arrays], schema=layout.schema(batch.schema))


def batch_entity_versions(batch: pa.RecordBatch | pa.Table) -> EntityVersions:
    """The families and versions the entities of ``batch`` hold."""
    found: EntityVersions = {}
    add_entity_versions(found, *(batch.column(name).to_pylist() for name in JSON_COLUMNS))
    return found
