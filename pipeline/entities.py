"""Self-describing entities in the warehouse, derived the way Snowplow's loaders derive them.

An event carries entities (``unstruct_event``, ``contexts``, ``derived_contexts``), each naming an
Iglu schema.  This module turns a schema into the storage model Snowplow would give it, and an
event into the entity rows to store.  It is pure (stdlib only): the loaders in :mod:`load` turn
the models into DDL, COPY and Parquet.

Redshift, the shredded layout (schema-ddl 0.27.0 ``redshift`` package, as rdb-loader 6.x uses it)
    One table per schema family and major version, ``{vendor}_{name}_{model}`` in snake case
    (:attr:`ShredModel.table_name`), holding nine metadata columns
    (:data:`SHRED_METADATA_COLUMNS`) and then one typed column per leaf of the flattened schema
    (``FlatSchema``): nested objects unfold into ``parent.child`` columns, arrays, unions and
    untyped values stay JSON text.  Columns are ordered NOT NULL first, then by name.  Later minor
    versions merge into the table (:func:`merge_shred_models`): new columns are appended as
    nullable and VARCHARs widen; a change schema-ddl calls breaking (a type it cannot widen, a
    NOT NULL column made nullable or dropped) sends that version to a "recovery" table of its own.
Parquet, the lake loader (schema-ddl ``parquet`` package as common-streams' ``TypedTabledEntity``)
    One column per family and major version: ``contexts_{vendor}_{name}_{model}`` (a list of
    structs, each with ``_schema_version`` first) and ``unstruct_event_{vendor}_{name}_{model}``
    (a struct), typed by :func:`lake_field`; minor versions merge by :func:`merge_lake_fields` and
    a breaking version gets a ``..._recovered_{version}_{hash}`` column.
Rows (rdb-loader's ``Hierarchy`` and ``EventUtils``)
    :func:`entity_rows` lists an event's entities (unstruct event, derived contexts, contexts, in
    that order) with the hierarchy columns Snowplow writes: ``root_id`` = event_id,
    ``root_tstamp`` = collector_tstamp, ``ref_root`` = ``ref_parent`` = ``events`` and
    ``ref_tree`` = ``["events","{schema name}"]``.

Every rule names the Scala source it follows; where Snowplow's result depends on something this
module cannot see (Scala hash-set iteration order), the docstring says what is done instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from pipeline.errors import TerminalError
from pipeline.iglu import SchemaKey
from pipeline.schema import format_tstamp

JsonValue: TypeAlias = Any
"""A value as :func:`json.loads` returns it."""

Number: TypeAlias = int | Decimal
"""A JSON Schema number: ``int`` when whole (schema-ddl's ``Integer*`` cases), else ``Decimal``."""

TypeSpec: TypeAlias = str | tuple[str, ...]
"""A JSON Schema ``type``: one name, or a union (a tuple, even of one name, as schema-ddl's ``Union``)."""

EntitySource = Literal["unstruct_event", "derived_contexts", "contexts"]
LakeEntityKind = Literal["unstruct_event", "contexts"]


class EntityModelError(TerminalError):
    """A schema or a set of schemas cannot be turned into a storage model.

    Terminal: the same schema fails the same way.  Snowplow's loaders make the entities of such a
    schema bad rows; fix the schema in its registry (a new version) or route it to the fallback.
    """


# =========================================================================== JSON Schema AST
# schema-ddl's jsonschema.Schema and its circe decoders (jsonschema/circe/*Codecs.scala): the
# keywords that schema-ddl reads, each decoded as circe would, so a schema schema-ddl rejects
# is rejected here too (a present keyword of the wrong shape fails the whole schema).

_JSON_TYPES: Final = frozenset({"null", "boolean", "string", "integer", "number", "array", "object"})
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class JsonSchema:
    """A JSON Schema node with the keywords schema-ddl models (``Schema.scala``), in its order."""

    multiple_of: Number | None = None
    minimum: Number | None = None
    maximum: Number | None = None
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    format: str | None = None
    schema_uri: str | None = None
    items: JsonSchema | tuple[JsonSchema, ...] | None = None
    """A schema for every item, or a tuple of per-position schemas."""
    additional_items: bool | JsonSchema | None = None
    min_items: int | None = None
    max_items: int | None = None
    properties: tuple[tuple[str, JsonSchema], ...] | None = None
    additional_properties: bool | JsonSchema | None = None
    required: tuple[str, ...] | None = None
    pattern_properties: tuple[tuple[str, JsonSchema], ...] | None = None
    type: TypeSpec | None = None
    enum: tuple[JsonValue, ...] | None = None
    one_of: tuple[JsonSchema, ...] | None = None
    any_of: tuple[JsonSchema, ...] | None = None
    description: str | None = None


def parse_json_schema(document: Mapping[str, Any]) -> JsonSchema:
    """The schema-ddl view of an Iglu schema document (``self`` and unknown keywords are ignored).

    Raises :class:`EntityModelError` where schema-ddl's decoder fails: a schema that is not an
    object, an unknown type name, a keyword of the wrong shape.
    """
    try:
        return _parse_node(document, "#")
    except RecursionError as exc:
        raise EntityModelError("the schema nests too deeply to derive a model from") from exc


def _parse_node(node: Any, where: str) -> JsonSchema:
    if not isinstance(node, Mapping):
        raise EntityModelError(f"{where}: a schema must be a JSON object")

    def present(keyword: str) -> Any:
        # circe decodes an explicit null as an absent keyword
        return node.get(keyword)

    def text(keyword: str) -> str | None:
        value = present(keyword)
        if value is None or isinstance(value, str):
            return value
        raise EntityModelError(f"{where}/{keyword}: expected a string")

    def schemas(keyword: str) -> tuple[JsonSchema, ...] | None:
        value = present(keyword)
        if value is None:
            return None
        if not isinstance(value, list):
            raise EntityModelError(f"{where}/{keyword}: expected an array of schemas")
        return tuple(_parse_node(item, f"{where}/{keyword}/{index}") for index, item in enumerate(value))

    def schema_map(keyword: str) -> tuple[tuple[str, JsonSchema], ...] | None:
        value = present(keyword)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise EntityModelError(f"{where}/{keyword}: expected an object of schemas")
        return tuple((name, _parse_node(sub, f"{where}/{keyword}/{name}")) for name, sub in value.items())

    def schema_or_bool(keyword: str) -> bool | JsonSchema | None:
        value = present(keyword)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            return _parse_node(value, f"{where}/{keyword}")
        raise EntityModelError(f"{where}/{keyword}: expected a schema or a boolean")

    items_value = present("items")
    items: JsonSchema | tuple[JsonSchema, ...] | None
    if items_value is None:
        items = None
    elif isinstance(items_value, list):
        items = schemas("items")
    else:
        items = _parse_node(items_value, f"{where}/items")

    required = present("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise EntityModelError(f"{where}/required: expected an array of property names")
    enum = present("enum")
    if enum is not None and not isinstance(enum, list):
        raise EntityModelError(f"{where}/enum: expected an array")

    return JsonSchema(
        multiple_of=_multiple_of(present("multipleOf"), f"{where}/multipleOf"),
        minimum=_bound(present("minimum"), f"{where}/minimum"),
        maximum=_bound(present("maximum"), f"{where}/maximum"),
        max_length=_big_int(present("maxLength"), f"{where}/maxLength", strings=True),
        min_length=_big_int(present("minLength"), f"{where}/minLength", strings=True),
        pattern=text("pattern"),
        format=text("format"),
        schema_uri=text("$schema"),
        items=items,
        additional_items=schema_or_bool("additionalItems"),
        min_items=_big_int(present("minItems"), f"{where}/minItems", strings=False),
        max_items=_big_int(present("maxItems"), f"{where}/maxItems", strings=False),
        properties=schema_map("properties"),
        additional_properties=schema_or_bool("additionalProperties"),
        required=None if required is None else tuple(required),
        pattern_properties=schema_map("patternProperties"),
        type=_type_spec(present("type"), f"{where}/type"),
        enum=None if enum is None else tuple(enum),
        one_of=schemas("oneOf"),
        any_of=schemas("anyOf"),
        description=text("description"),
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def _as_decimal(value: int | float | Decimal) -> Decimal:
    # repr() is the shortest text that round-trips, which is how the number was most likely
    # written; circe keeps the written text, so 3.0 has scale 1 there as here.
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)


def _whole(value: int | float | Decimal) -> int | None:
    """The integer a whole number equals (circe's ``toBigInt``), else None."""
    if isinstance(value, int):
        return value
    number = _as_decimal(value)
    try:
        return int(number) if number == number.to_integral_value() else None
    except (InvalidOperation, OverflowError):
        return None


def _numeric_text(value: Any) -> int | float | Decimal | None:
    """A JSON number, or a string holding one (circe's numeric decoders accept both)."""
    if isinstance(value, int | float | Decimal) and _is_number(value):
        return value
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        return Decimal(value)
    return None


def _multiple_of(value: Any, where: str) -> Number | None:
    if value is None:
        return None
    number = _numeric_text(value)
    if number is None:
        raise EntityModelError(f"{where}: expected a number")
    whole = _whole(number)
    return whole if whole is not None else _as_decimal(number)


def _bound(value: Any, where: str) -> Number | None:
    if value is None:
        return None
    if not _is_number(value):
        raise EntityModelError(f"{where}: expected a number")
    whole = _whole(value)
    return whole if whole is not None else _as_decimal(value)


def _big_int(value: Any, where: str, *, strings: bool) -> int | None:
    if value is None:
        return None
    number = _numeric_text(value) if strings else (value if _is_number(value) else None)
    whole = None if number is None else _whole(number)
    if whole is None:
        raise EntityModelError(f"{where}: expected a whole number")
    return whole


def _type_spec(value: Any, where: str) -> TypeSpec | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EntityModelError(f"{where}: expected a type name or an array of them")
    unknown = [n for n in names if n not in _JSON_TYPES]
    if unknown:
        verb = "is an invalid type" if len(unknown) == 1 else "are invalid types"
        raise EntityModelError(f"{where}: {', '.join(unknown)} {verb}")
    if len(names) == 1:
        # a name, or a one-element list: CommonProperties.Type.fromProduct makes both that type
        return str(names[0])
    return tuple(str(n) for n in dict.fromkeys(names))


# --------------------------------------------------------------------------- type predicates
# jsonschema/package.scala (TypeMatcher, SchemaOps) and CommonProperties.Type.


def _members(spec: TypeSpec) -> frozenset[str]:
    return frozenset((spec,) if isinstance(spec, str) else spec)


def _union_of(names: Iterable[str]) -> TypeSpec:
    ordered = tuple(dict.fromkeys(names))
    return ordered[0] if len(ordered) == 1 else ordered


def _with_null(spec: TypeSpec | None) -> TypeSpec:
    if spec is None or spec == "null":
        return "null"
    if isinstance(spec, str):
        return ("null", spec)
    return spec if "null" in spec else (*spec, "null")


def _possibly_with_null(spec: TypeSpec, name: str) -> bool:
    """``spec`` is exactly ``name``, or exactly the union ``[name, null]``."""
    if isinstance(spec, str):
        return spec == name
    return set(spec) == {name, "null"}


def _explicitly_nullable(spec: TypeSpec) -> bool:
    return "null" in _members(spec)


def _is_union(spec: TypeSpec | None) -> bool:
    """At least two non-null types, [number, integer] excepted."""
    if not isinstance(spec, tuple):
        return False
    others = set(spec) - {"null"}
    return others != {"number", "integer"} and len(others) > 1


def _has_type(schema: JsonSchema, name: str) -> bool:
    return schema.type is not None and name in _members(schema.type)


def _can_be_null(schema: JsonSchema) -> bool:
    return (schema.enum is not None and any(v is None for v in schema.enum)) or _has_type(schema, "null")


# --------------------------------------------------------------------------- Java/Scala strings
# Scala compares, measures and hashes strings in UTF-16 code units, Python in code points.


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _utf16_order(text: str) -> bytes:
    """A sort key giving Java's ``String.compareTo`` order."""
    return text.encode("utf-16-be")


def _java_hash(text: str) -> int:
    """Java's ``String.hashCode`` as a signed 32-bit int."""
    units = text.encode("utf-16-be")
    value = 0
    for i in range(0, len(units), 2):
        value = (31 * value + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _java_int(value: int) -> int:
    """``BigInt.toInt``: the low 32 bits, signed (schema-ddl narrows lengths this way)."""
    return ((value + (1 << 31)) % (1 << 32)) - (1 << 31)


_CAPS_THEN_WORD: Final = re.compile(r"([A-Z]+)([A-Z][a-z])")
_LOWER_THEN_CAP: Final = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """schema-ddl's ``StringUtils.snakeCase``: ``sessionId`` -> ``session_id``, ``URLPath`` ->
    ``url_path``, hyphens to underscores, lower case."""
    spaced = _LOWER_THEN_CAP.sub(r"\1_\2", _CAPS_THEN_WORD.sub(r"\1_\2", name))
    return spaced.replace("-", "_").lower()


def _compact_json(value: JsonValue) -> str:
    """circe's ``noSpaces`` (non-ASCII kept, control characters escaped)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# =========================================================================== Redshift
# schema-ddl redshift/ShredModelEntry.scala (column types, encodings, the metadata columns).


@dataclass(frozen=True, slots=True)
class RedshiftType:
    """A column type of schema-ddl's ``ShredModelEntry.ColumnType``."""

    name: Literal[
        "TIMESTAMP", "DATE", "SMALLINT", "INT", "BIGINT", "DOUBLE PRECISION", "DECIMAL", "BOOLEAN", "VARCHAR", "CHAR"
    ]
    size: int | None = None
    """The width of a VARCHAR or CHAR."""
    precision: int | None = None
    scale: int | None = None

    @property
    def sql(self) -> str:
        """The type as schema-ddl writes it in DDL (``DECIMAL (36, 2)`` has its space)."""
        if self.name in ("VARCHAR", "CHAR"):
            return f"{self.name}({self.size})"
        if self.name == "DECIMAL" and self.precision is not None and self.scale is not None:
            return f"DECIMAL ({self.precision}, {self.scale})"
        return self.name

    @property
    def scala_name(self) -> str:
        """The Scala value's text, as schema-ddl's breaking-change reports print it."""
        if self.name == "DECIMAL":
            precision = "None" if self.precision is None else f"Some({self.precision})"
            scale = "None" if self.scale is None else f"Some({self.scale})"
            return f"RedshiftDecimal({precision},{scale})"
        if self.name in ("VARCHAR", "CHAR"):
            return f"Redshift{self.name.capitalize()}({self.size})"
        return _SCALA_TYPE_NAMES[self.name]


_SCALA_TYPE_NAMES: Final = {
    "TIMESTAMP": "RedshiftTimestamp",
    "DATE": "RedshiftDate",
    "SMALLINT": "RedshiftSmallInt",
    "INT": "RedshiftInteger",
    "BIGINT": "RedshiftBigInt",
    "DOUBLE PRECISION": "RedshiftDouble",
    "BOOLEAN": "RedshiftBoolean",
}

TIMESTAMP: Final = RedshiftType("TIMESTAMP")
DATE: Final = RedshiftType("DATE")
SMALLINT: Final = RedshiftType("SMALLINT")
INTEGER: Final = RedshiftType("INT")
BIGINT: Final = RedshiftType("BIGINT")
DOUBLE: Final = RedshiftType("DOUBLE PRECISION")
BOOLEAN: Final = RedshiftType("BOOLEAN")


def varchar(size: int) -> RedshiftType:
    return RedshiftType("VARCHAR", size=size)


def char(size: int) -> RedshiftType:
    return RedshiftType("CHAR", size=size)


def decimal(precision: int | None = None, scale: int | None = None) -> RedshiftType:
    return RedshiftType("DECIMAL", precision=precision, scale=scale)


DEFAULT_VARCHAR_SIZE: Final = 4096
"""schema-ddl's ``VARCHAR_SIZE``: strings without a bound, unions, untyped values."""
ARRAY_VARCHAR_SIZE: Final = 65535
"""schema-ddl's ``DefaultArraySize``: arrays, kept as JSON text."""


@dataclass(frozen=True, slots=True)
class ShredColumn:
    """One column of a shredded table."""

    name: str
    """The column name: the property path, each step snake-cased, joined with dots (``a_field.b_field``)."""
    type: RedshiftType
    nullable: bool
    encoding: Literal["ZSTD", "RAW", "RUNLENGTH"]
    path: tuple[str | int, ...] = ()
    """Where the value sits in the entity's data (object keys, array indexes).  Empty for the
    metadata columns, which do not come from the data (and, in schema-ddl's quirk, for the
    column ``""`` a schema without a root ``type`` gets, which holds the whole data)."""

    @property
    def definition(self) -> tuple[str, str, str, str]:
        """(quoted name, type, ``ENCODE ...``, ``NOT NULL`` or empty), as schema-ddl lays out DDL."""
        return f'"{self.name}"', self.type.sql, f"ENCODE {self.encoding}", "" if self.nullable else "NOT NULL"


def encoding_for(column_type: RedshiftType) -> Literal["ZSTD", "RAW", "RUNLENGTH"]:
    """The compression schema-ddl gives a column (``ShredModelEntry.compressionEncoding``)."""
    if column_type == BOOLEAN:
        return "RUNLENGTH"
    if column_type == DOUBLE:
        return "RAW"
    return "ZSTD"


SHRED_METADATA_COLUMNS: Final[tuple[ShredColumn, ...]] = (
    ShredColumn("schema_vendor", varchar(128), False, "ZSTD"),
    ShredColumn("schema_name", varchar(128), False, "ZSTD"),
    ShredColumn("schema_format", varchar(128), False, "ZSTD"),
    ShredColumn("schema_version", varchar(128), False, "ZSTD"),
    ShredColumn("root_id", char(36), False, "RAW"),
    ShredColumn("root_tstamp", TIMESTAMP, False, "ZSTD"),
    ShredColumn("ref_root", varchar(255), False, "ZSTD"),
    ShredColumn("ref_tree", varchar(1500), False, "ZSTD"),
    ShredColumn("ref_parent", varchar(255), False, "ZSTD"),
)
"""The columns every shredded table starts with (``ShredModelEntry.extraCols``)."""


# --------------------------------------------------------------------------- column types
# redshift/internal/ColumnTypeSuggestions.scala: the first suggestion that answers wins; a
# suggestion whose case matches but answers nothing still ends that suggestion.


def _json_length(value: JsonValue) -> int:
    # ColumnTypeSuggestions.jsonLength: strings unquoted, everything else as compact JSON
    if value is None:
        return 0
    if isinstance(value, bool):
        return 4 if value else 5
    if isinstance(value, str):
        return _utf16_len(value)
    return _utf16_len(_compact_json(value))


def _int_size(maximum: Number) -> RedshiftType:
    if isinstance(maximum, Decimal):  # Maximum.NumberMaximum
        return decimal()
    if maximum <= 32767:
        return SMALLINT
    if maximum <= 2147483647:
        return INTEGER
    return BIGINT


def _complex_enum(schema: JsonSchema) -> RedshiftType | None:
    if schema.enum is None:
        return None
    values = [v for v in schema.enum if v is not None]
    # somePredicates(numeric, non-numeric, boolean; 2): at least two of the three kinds present
    kinds = (
        any(_is_number(v) for v in values),
        any(not _is_number(v) for v in values),
        any(isinstance(v, bool) for v in values),
    )
    if sum(kinds) < 2:
        return None
    return varchar(max((_utf16_len(_compact_json(v)) for v in values), default=16))


def _product(schema: JsonSchema) -> RedshiftType | None:
    if not isinstance(schema.type, tuple) or not _is_union(schema.type):
        return None
    others = set(schema.type) - {"null"}
    # Int.MaxValue.toString.length: a boolean or an integer fits in ten characters
    return varchar(10) if others == {"boolean", "integer"} else varchar(DEFAULT_VARCHAR_SIZE)


def _string_format(schema: JsonSchema, fmt: str) -> bool:
    return schema.type is not None and schema.format == fmt and _possibly_with_null(schema.type, "string")


def _timestamp(schema: JsonSchema) -> RedshiftType | None:
    return TIMESTAMP if _string_format(schema, "date-time") else None


def _date(schema: JsonSchema) -> RedshiftType | None:
    return DATE if _string_format(schema, "date") else None


def _array(schema: JsonSchema) -> RedshiftType | None:
    if schema.type is not None and _possibly_with_null(schema.type, "array"):
        return varchar(ARRAY_VARCHAR_SIZE)
    return None


def _integer(schema: JsonSchema) -> RedshiftType | None:
    spec = schema.type
    if spec is not None and schema.maximum is not None and _possibly_with_null(spec, "integer"):
        return _int_size(schema.maximum)
    if schema.enum is not None and (spec is None or _possibly_with_null(spec, "integer")):
        # an enum of whole numbers sizes by its largest; any other member answers nothing
        wholes = [_whole(v) if _is_number(v) else None for v in schema.enum]
        if not wholes or any(w is None for w in wholes):
            return None
        return _int_size(max(w for w in wholes if w is not None))
    if spec is not None and _possibly_with_null(spec, "integer"):
        return BIGINT
    if isinstance(schema.multiple_of, int):
        return _int_size(schema.maximum) if schema.maximum is not None else INTEGER
    return None


def _number(schema: JsonSchema) -> RedshiftType | None:
    spec = schema.type
    if spec is None:
        return None
    if _possibly_with_null(spec, "number"):
        if isinstance(schema.multiple_of, Decimal) and schema.multiple_of == Decimal("0.01"):
            return decimal(36, 2)
        return DOUBLE
    if isinstance(spec, tuple) and set(spec) - {"null"} == {"integer", "number"}:
        return DOUBLE
    return None


def _boolean(schema: JsonSchema) -> RedshiftType | None:
    return BOOLEAN if schema.type is not None and _possibly_with_null(schema.type, "boolean") else None


def _char(schema: JsonSchema) -> RedshiftType | None:
    if (
        schema.type is not None
        and schema.min_length is not None
        and schema.min_length == schema.max_length
        and _possibly_with_null(schema.type, "string")
    ):
        return char(_java_int(schema.min_length))
    return None


def _uuid(schema: JsonSchema) -> RedshiftType | None:
    return char(36) if _string_format(schema, "uuid") else None


def _varchar(schema: JsonSchema) -> RedshiftType | None:  # noqa: PLR0911 - one return per Scala case
    spec = schema.type
    is_string = spec is not None and _possibly_with_null(spec, "string")
    # StringProperty.Format.fromString maps "ivp6" (sic) to Ipv6Format, so only that spelling
    # earns VARCHAR(39); "ipv6" is a custom format there and here.
    if is_string and schema.format == "ivp6":
        return varchar(39)
    if is_string and schema.format == "ipv4":
        return varchar(15)
    if is_string and schema.format == "email":
        return varchar(255)
    if is_string and schema.max_length is not None and schema.enum is None:
        return varchar(_java_int(schema.max_length))
    if schema.enum is not None:
        if not schema.enum:
            return None
        longest = max(_json_length(v) for v in schema.enum)
        return char(longest) if len(schema.enum) == 1 else varchar(longest)
    return None


_TYPE_SUGGESTIONS: Final = (
    _complex_enum,
    _product,
    _timestamp,
    _date,
    _array,
    _integer,
    _number,
    _boolean,
    _char,
    _uuid,
    _varchar,
)


def redshift_type(schema: JsonSchema) -> RedshiftType:
    """The column type schema-ddl suggests for a leaf schema (as flattened: optional leaves carry
    ``null`` in their type); VARCHAR(4096) when nothing suggests one."""
    for suggest in _TYPE_SUGGESTIONS:
        suggested = suggest(schema)
        if suggested is not None:
            return suggested
    return varchar(DEFAULT_VARCHAR_SIZE)


# --------------------------------------------------------------------------- flattening
# redshift/internal/FlatSchema.scala and jsonschema/Schema.traverse, Pointer.scala.


class _Cursor(NamedTuple):
    kind: Literal["field", "keyword", "index"]
    value: str | int


_Pointer: TypeAlias = tuple[_Cursor, ...]
_UNFLATTENED_KEYWORDS: Final = frozenset({"items", "patternProperties", "oneOf", "additionalProperties"})
"""Leaves below these are not columns (FlatSchema.shouldBeIgnored); ``additionalItems`` is not
among them in schema-ddl either."""


def _down(pointer: _Pointer, keyword: str, step: str | int | None = None) -> _Pointer:
    moved = (*pointer, _Cursor("keyword", keyword))
    if step is None:
        return moved
    return (*moved, _Cursor("index", step) if isinstance(step, int) else _Cursor("field", step))


def _data_path(pointer: _Pointer) -> tuple[str | int, ...]:
    """The steps into the data (ShredModelEntry.stringFactory skips schema keywords)."""
    return tuple(c.value for c in pointer if c.kind != "keyword")


def _column_name(pointer: _Pointer) -> str:
    """SchemaPointer.getName: the data fields (an index after ``oneOf`` dropped with it), snake-cased."""
    kept: list[_Cursor] = []
    for cursor in pointer:
        if cursor.kind == "field":
            kept.append(cursor)
        elif cursor.kind == "index":
            if kept and kept[-1] == _Cursor("keyword", "oneOf"):
                kept.pop()
            else:
                kept.append(cursor)
        elif cursor.value == "oneOf":
            kept.append(cursor)
    return ".".join(snake_case(str(c.value)) for c in kept if c.kind == "field")


def _is_heterogeneous_union(schema: JsonSchema) -> bool:
    one_of_types: set[str] = set()
    for option in schema.one_of or ():
        if option.type is not None:
            one_of_types |= _members(option.type)
    # `type.forall(isUnion)`: a schema without a type counts as a union too
    return len(one_of_types - {"null"}) > 1 or schema.type is None or _is_union(schema.type)


def _is_leaf(schema: JsonSchema) -> bool:
    nested = _has_type(schema, "object") and schema.properties is not None
    return _is_heterogeneous_union(schema) or not nested


class _Flattener:
    """FlatSchema.build: a pre-order walk saving leaves and the pointers whose ancestors are all required."""

    def __init__(self) -> None:
        self.leaves: dict[_Pointer, JsonSchema] = {}
        self.required: set[_Pointer] = set()

    def walk(self, pointer: _Pointer, schema: JsonSchema) -> None:
        self.save(pointer, schema)
        items = schema.items
        if isinstance(items, JsonSchema):
            self.walk(_down(pointer, "items"), items)
        elif items is not None:
            for index, item in enumerate(items):
                self.walk(_down(pointer, "items", index), item)
        if isinstance(schema.additional_items, JsonSchema):
            self.walk(_down(pointer, "additionalItems"), schema.additional_items)
        for name, sub in schema.properties or ():
            self.walk(_down(pointer, "properties", name), sub)
        if isinstance(schema.additional_properties, JsonSchema):
            self.walk(_down(pointer, "additionalProperties"), schema.additional_properties)
        for name, sub in schema.pattern_properties or ():
            self.walk(_down(pointer, "patternProperties", name), sub)
        for index, option in enumerate(schema.one_of or ()):
            self.walk(_down(pointer, "oneOf", index), option)

    def save(self, pointer: _Pointer, schema: JsonSchema) -> None:
        if self.ignored(pointer):
            return
        for name in schema.required or ():
            child = _down(pointer, "properties", name)
            if self.nested_required(child):
                self.required.add(child)
        if _is_leaf(schema):
            optional = (pointer != () and pointer not in self.required) or _can_be_null(schema)
            self.leaves[pointer] = replace(schema, type=_with_null(schema.type)) if optional else schema

    def ignored(self, pointer: _Pointer) -> bool:
        if any(c.kind == "keyword" and c.value in _UNFLATTENED_KEYWORDS for c in pointer):
            return True
        # below a saved union leaf (a [string, object] with properties, say) nothing is a column
        return any(pointer[: len(parent)] == parent and _is_union(leaf.type) for parent, leaf in self.leaves.items())

    def nested_required(self, pointer: _Pointer) -> bool:
        grandparent = pointer[:-2]
        if len(pointer) <= 2 or grandparent == ():
            return True
        return grandparent in self.required and self.nested_required(grandparent)


def _flatten(schema: JsonSchema) -> list[tuple[_Pointer, JsonSchema]]:
    """FlatSchema.extractProperties: the leaves, NOT NULL first, then by column name."""
    flattener = _Flattener()
    flattener.walk((), schema)
    leaves = sorted(flattener.leaves.items(), key=lambda kv: (_can_be_null(kv[1]), _utf16_order(_column_name(kv[0]))))
    if len(leaves) == 1 and leaves[0][0] == () and not leaves[0][1].properties:
        return []  # a schema with no properties has no columns
    return leaves


# --------------------------------------------------------------------------- shred models
# redshift/ShredModel.scala, redshift/internal/Migrations.scala, redshift/package.scala.


@dataclass(frozen=True, slots=True)
class ColumnAddition:
    """A column a later version adds (``ALTER TABLE ... ADD COLUMN``, nullable)."""

    key: SchemaKey
    """The version that adds it."""
    column: ShredColumn


@dataclass(frozen=True, slots=True)
class VarcharExtension:
    """A VARCHAR a later version widens (``ALTER TABLE ... ALTER COLUMN ... TYPE``, outside a transaction)."""

    key: SchemaKey
    old: ShredColumn
    new: ShredColumn


Migration: TypeAlias = ColumnAddition | VarcharExtension


@dataclass(frozen=True, slots=True)
class ShredModel:
    """A shredded table for one schema, or for a merged run of minor versions.

    A model with ``breaking_changes`` is schema-ddl's ``RecoveryModel``: the version ``key``
    could not merge into the table of its family, so its rows go to a table of their own.
    """

    key: SchemaKey
    """The schema the model was derived from; for a merged model, the latest version merged."""
    columns: tuple[ShredColumn, ...]
    """The entity's columns, after :data:`SHRED_METADATA_COLUMNS`."""
    migrations: tuple[Migration, ...] = ()
    """For a merged model, the changes each later version made, in version order."""
    breaking_changes: tuple[str, ...] = ()
    """For a recovery model, why ``key`` could not merge (schema-ddl's report texts)."""

    @property
    def is_recovery(self) -> bool:
        return bool(self.breaking_changes)

    @property
    def base_table_name(self) -> str:
        """``{vendor}_{name}_{model}``: dots and hyphens of the vendor to underscores, the name snake-cased."""
        vendor = self.key.vendor.replace(".", "_").replace("-", "_").lower()
        return f"{vendor}_{snake_case(self.key.name)}_{self.key.model}"

    @property
    def table_name(self) -> str:
        """The base name; a recovery table adds the version and a hash of its column layout."""
        if not self.is_recovery:
            return self.base_table_name
        # scala.math.abs of an Int leaves Int.MinValue negative, as here
        layout_hash = abs(_java_hash(column_definitions(self.columns)))
        if layout_hash == 1 << 31:
            layout_hash = -layout_hash
        return f"{self.base_table_name}_{self.key.revision}_{self.key.addition}_recovered_{layout_hash}"

    @property
    def all_columns(self) -> tuple[ShredColumn, ...]:
        """Metadata columns then entity columns: the table's layout and a COPY's column list."""
        return SHRED_METADATA_COLUMNS + self.columns


def shred_model(key: SchemaKey, schema: Mapping[str, Any] | JsonSchema) -> ShredModel:
    """The shredded table schema-ddl derives for one schema (``ShredModel.good``).

    Raises :class:`EntityModelError` when the schema cannot be decoded.
    """
    parsed = schema if isinstance(schema, JsonSchema) else parse_json_schema(schema)
    columns: list[ShredColumn] = []
    for pointer, leaf in _flatten(parsed):
        column_type = redshift_type(leaf)
        columns.append(
            ShredColumn(
                _column_name(pointer), column_type, _can_be_null(leaf), encoding_for(column_type), _data_path(pointer)
            )
        )
    return ShredModel(key, tuple(columns))


def column_definitions(columns: Sequence[ShredColumn]) -> str:
    """The column list of schema-ddl's CREATE TABLE (``Show[List[ShredModelEntry]]``): metadata
    and entity columns, aligned, one a line, comma-separated, without the trailing comma.

    Also what a recovery table's name hashes, so it is rendered exactly.
    """
    rows = [c.definition for c in (*SHRED_METADATA_COLUMNS, *columns)]
    name_width = max(2, *(_utf16_len(r[0]) for r in rows))
    type_width = max(_utf16_len(r[1]) for r in rows)
    encoding_width = max(_utf16_len(r[2]) for r in rows)

    def pad(text: str, width: int) -> str:
        return text + " " * (width - _utf16_len(text))

    lines = [
        f"  {pad(name, name_width)} {pad(sql_type, type_width)} {pad(encoding, encoding_width)} {null}".rstrip(
            " \t\n\x0b\f\r"
        )
        for name, sql_type, encoding, null in rows
    ]
    return ",\n".join(lines)


def _type_change(old: RedshiftType, new: RedshiftType) -> Literal["none", "widen", "breaking"]:  # noqa: PLR0911
    """ShredModel.GoodModel.merge: whether ``old``'s column can hold ``new``'s values."""

    def varchar_at_least(size: int) -> bool:
        return old.name == "VARCHAR" and old.size is not None and old.size >= size

    def decimal_digits_at_least(digits: int) -> bool:
        return old.name == "DECIMAL" and (old.precision or 18) - (old.scale or 0) >= digits

    if new.name == "VARCHAR":
        if old.name != "VARCHAR":
            return "breaking"
        return "widen" if (new.size or 0) > (old.size or 0) else "none"
    if new.name == "DECIMAL":
        fits = (
            old == DOUBLE
            or varchar_at_least(new.precision or 18)
            or (
                old.name == "DECIMAL"
                and (old.precision or 18) >= (new.precision or 18)
                and (old.scale or 0) >= (new.scale or 0)
            )
        )
        return "none" if fits else "breaking"
    if new.name == "CHAR":
        fits = old.name in ("VARCHAR", "CHAR") and (old.size or 0) >= (new.size or 0)
        return "none" if fits else "breaking"
    if new == old:
        return "none"
    wider: dict[str, tuple[frozenset[RedshiftType], int | None, int | None]] = {
        # new type: (old types that hold it, smallest VARCHAR that does, DECIMAL integer digits that do)
        "SMALLINT": (frozenset({INTEGER, BIGINT, DOUBLE}), 5, 5),
        "INT": (frozenset({BIGINT, DOUBLE}), 10, 10),
        "BIGINT": (frozenset({DOUBLE}), 19, 19),
        "DATE": (frozenset(), 10, None),
        "TIMESTAMP": (frozenset(), 25, None),
        "BOOLEAN": (frozenset(), 5, None),
    }
    if new.name not in wider:
        return "breaking"
    holders, varchar_size, digits = wider[new.name]
    fits = (
        old in holders
        or (varchar_size is not None and varchar_at_least(varchar_size))
        or (digits is not None and decimal_digits_at_least(digits))
    )
    return "none" if fits else "breaking"


def merge_shred_models(table: ShredModel, later: ShredModel) -> ShredModel:
    """The table ``table`` becomes when version ``later`` is loaded into it (``GoodModel.merge``).

    Columns only ``later`` has are appended as nullable, in ``later``'s column order (schema-ddl
    collects them in a Scala ``Set``, which keeps that order for up to four additions and hashes
    beyond; the order only decides where columns sit, COPY names its columns).  A wider VARCHAR
    replaces the old column.  When ``later`` would narrow a type, make a NOT NULL column nullable
    or drop one, the result is a recovery model of ``later`` alone, listing every reason.
    """
    if table.is_recovery or later.is_recovery:
        raise EntityModelError("only models derived from schemas (not recovery models) merge")
    current = {c.name: c for c in table.columns}
    incoming = {c.name: c for c in later.columns}
    additions = [replace(c, nullable=True) for c in later.columns if c.name not in current]
    breaking: list[str] = []
    widened: list[tuple[ShredColumn, ShredColumn]] = []
    for new in later.columns:
        old = current.get(new.name)
        if old is None:
            continue
        if not old.nullable and new.nullable:
            breaking.append(f"Making required column nullable {old.name}")
            continue
        change = _type_change(old.type, new.type)
        if change == "breaking":
            breaking.append(
                f"Incompatible types in column {old.name} old {old.type.scala_name} new {new.type.scala_name}"
            )
        elif change == "widen":
            widened.append((old, new))
    breaking += [
        f"Making required column nullable {c.name}" for c in table.columns if c.name not in incoming and not c.nullable
    ]
    if breaking:
        return ShredModel(later.key, later.columns, breaking_changes=tuple(breaking))
    replacements = {id(old): new for old, new in widened}
    columns = tuple(replacements.get(id(c), c) for c in table.columns) + tuple(additions)
    migrations = (
        *table.migrations,
        *(VarcharExtension(later.key, old, new) for old, new in widened),
        *(ColumnAddition(later.key, c) for c in additions),
    )
    return ShredModel(later.key, columns, migrations)


@dataclass(frozen=True, slots=True)
class ShredFamily:
    """The tables of one schema family and major version (``foldMapMergeRedshiftSchemas`` and
    ``foldMapRedshiftSchemas``, which rdb-loader uses together)."""

    table: ShredModel
    """The evolved table: the first version merged with every later one that merges."""
    models: tuple[tuple[SchemaKey, ShredModel], ...]
    """Per version, the model its rows are written with: its own columns (which COPY names)
    when it merged into :attr:`table`, else its recovery model (and table)."""

    def model_for(self, key: SchemaKey) -> ShredModel:
        """The model rows of version ``key`` are written with; KeyError when the family lacks it."""
        for version, model in self.models:
            if version == key:
                return model
        raise KeyError(key.uri)

    @property
    def recoveries(self) -> tuple[ShredModel, ...]:
        return tuple(m for _, m in self.models if m.is_recovery)


def _family_of(key: SchemaKey) -> tuple[str, str, str, int]:
    return key.vendor, key.name, key.format, key.model


def _sorted_family(schemas: Iterable[tuple[SchemaKey, Any]]) -> list[tuple[SchemaKey, Any]]:
    ordered = sorted(schemas, key=lambda pair: (pair[0].revision, pair[0].addition))
    if not ordered:
        raise EntityModelError("a schema family needs at least one schema")
    families = {_family_of(k) for k, _ in ordered}
    if len(families) > 1:
        raise EntityModelError(f"schemas of different families or major versions: {sorted(families)}")
    versions = [k.version for k, _ in ordered]
    if len(set(versions)) != len(versions):
        raise EntityModelError(f"a version appears twice in {ordered[0][0].vendor}/{ordered[0][0].name}: {versions}")
    return ordered


def shred_family(schemas: Iterable[tuple[SchemaKey, Mapping[str, Any] | JsonSchema]]) -> ShredFamily:
    """The evolved table of a family's versions (any order; one major version), and the model
    each version's rows use.  A version that cannot merge is skipped by the table and gets a
    recovery model; later versions merge on top of the last good table.

    Raises :class:`EntityModelError` for an empty list, mixed families or a repeated version.
    """
    ordered = _sorted_family(schemas)
    own = [shred_model(key, schema) for key, schema in ordered]
    table = own[0]
    models: list[tuple[SchemaKey, ShredModel]] = [(own[0].key, own[0])]
    for model in own[1:]:
        merged = merge_shred_models(table, model)
        if merged.is_recovery:
            models.append((model.key, merged))
        else:
            table = merged
            models.append((model.key, model))
    return ShredFamily(table, tuple(models))


# --------------------------------------------------------------------------- TSV cells
# rdb-loader EventUtils.buildMetadata and ShredModelEntry.stringFactory: what COPY reads.

NULL_CELL: Final = "\\N"
"""Redshift COPY's default NULL marker, which rdb-loader writes for an absent or null value."""

_MISSING: Final = object()


def _tsv_text(text: str) -> str:
    # ShredModelEntry.escapeTsv: a literal \N would read as NULL; tabs and newlines would split the row
    if text == NULL_CELL:
        return "\\\\N"
    return text.replace("\t", " ").replace("\n", " ")


def _cell(value: JsonValue) -> str:
    if value is _MISSING or value is None:
        return NULL_CELL
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | Decimal):
        return _compact_json(value) if not isinstance(value, Decimal) else str(value)
    if isinstance(value, str):
        return _tsv_text(value)
    return _tsv_text(_compact_json(value))


def _value_at(data: JsonValue, path: tuple[str | int, ...]) -> JsonValue:
    current = data
    for step in path:
        if isinstance(step, str) and isinstance(current, dict) and step in current:
            current = current[step]
        elif isinstance(step, int) and isinstance(current, list) and 0 <= step < len(current):
            current = current[step]
        else:
            return _MISSING
    return current


def entity_cells(model: ShredModel, data: JsonValue) -> tuple[str, ...]:
    """The entity columns of one row as rdb-loader writes them: ``\\N`` for an absent or null
    value, booleans as 1/0, numbers and strings as they are (tabs and newlines become spaces),
    arrays and objects as compact JSON."""
    return tuple(_cell(_value_at(data, column.path)) for column in model.columns)


# =========================================================================== entity rows


@dataclass(frozen=True, slots=True)
class EntityRow:
    """One entity of an event, with the hierarchy columns of its shredded row."""

    key: SchemaKey
    data: JsonValue
    source: EntitySource
    position: int
    """Its index in the envelope's ``data`` array (0 for the unstruct event)."""
    root_id: str
    """The event's event_id."""
    root_tstamp: int
    """The event's collector_tstamp, epoch milliseconds."""

    @property
    def ref_root(self) -> str:
        return "events"

    @property
    def ref_parent(self) -> str:
        """Top-level entities hang from the event itself."""
        return "events"

    @property
    def ref_tree(self) -> str:
        """``["events","{name}"]``, written as rdb-loader interpolates it (Iglu names need no escaping)."""
        return f'["events","{self.key.name}"]'

    @property
    def metadata_cells(self) -> tuple[str, ...]:
        """The values of :data:`SHRED_METADATA_COLUMNS` (``EventUtils.buildMetadata``)."""
        return (
            self.key.vendor,
            self.key.name,
            self.key.format,
            self.key.version,
            self.root_id,
            format_tstamp(self.root_tstamp),
            self.ref_root,
            self.ref_tree,
            self.ref_parent,
        )


@dataclass(frozen=True, slots=True)
class EntityRows:
    """An event's entities, and what in its envelopes could not be read as entities."""

    rows: tuple[EntityRow, ...]
    problems: tuple[str, ...]
    """One message per unreadable envelope or entity; Snowplow's loaders reject such an event whole."""


def _envelope_data(text: str | None, source: EntitySource, problems: list[str]) -> JsonValue:
    if not text:
        return None
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError):
        problems.append(f"{source}: not JSON")
        return None
    if not isinstance(envelope, dict):
        problems.append(f"{source}: the envelope is not a JSON object")
        return None
    # The analytics SDK reads only the envelope's data (an absent one is no entity at all).
    return envelope.get("data")


def _entity(item: JsonValue, where: str, problems: list[str]) -> tuple[SchemaKey, JsonValue] | None:
    if not isinstance(item, dict) or not isinstance(item.get("schema"), str) or "data" not in item:
        problems.append(f"{where}: not a self-describing entity (it needs a schema URI and data)")
        return None
    key = SchemaKey.parse(item["schema"])
    if key is None:
        problems.append(f"{where}: {item['schema'][:200]!r} is not an iglu: schema URI")
        return None
    return key, item["data"]


EntityItem = tuple[SchemaKey, JsonValue, EntitySource, int]
"""An entity as read from its envelope: schema key, data, envelope, index in the envelope's array."""


def entity_rows(
    event_id: str,
    collector_tstamp: int,
    *,
    unstruct_event: str | None = None,
    contexts: str | None = None,
    derived_contexts: str | None = None,
) -> EntityRows:
    """The entities of an event, in rdb-loader's order (unstruct event, derived contexts, contexts),
    from the JSON texts of its envelopes.  Derived contexts shred into the same tables as contexts.

    Never raises for bad input: each unreadable envelope or entity is a problem, the rest are rows.
    """
    found, problems = entity_items(unstruct_event=unstruct_event, contexts=contexts, derived_contexts=derived_contexts)
    rows = tuple(
        EntityRow(key, data, source, position, event_id, collector_tstamp) for key, data, source, position in found
    )
    return EntityRows(rows, tuple(problems))


def entity_items(
    *, unstruct_event: str | None = None, contexts: str | None = None, derived_contexts: str | None = None
) -> tuple[list[EntityItem], list[str]]:
    """:func:`entity_rows`'s entities as plain tuples, in the same order, and its problems.

    For readers that need no row per entity (the typed Parquet columns read every kept row's
    entities while a partition is finalized).
    """
    problems: list[str] = []
    found: list[EntityItem] = []
    unstruct = _envelope_data(unstruct_event, "unstruct_event", problems)
    if unstruct is not None:
        entity = _entity(unstruct, "unstruct_event", problems)
        if entity is not None:
            found.append((*entity, "unstruct_event", 0))
    arrays: tuple[tuple[EntitySource, str | None], ...] = (
        ("derived_contexts", derived_contexts),
        ("contexts", contexts),
    )
    for source, text in arrays:
        items = _envelope_data(text, source, problems)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(f"{source}: data must be an array")
            continue
        for index, item in enumerate(items):
            entity = _entity(item, f"{source}[{index}]", problems)
            if entity is not None:
                found.append((*entity, source, index))
    return found, problems


# --------------------------------------------------------------------------- the fallback table
# Not Snowplow's: its loaders make an event whose entity schema cannot be resolved a bad row.
# Here such entities keep their JSON in one table, so the event still loads.

UNRESOLVED_ENTITY_TABLE: Final = "unresolved_entities"
UNRESOLVED_ENTITY_COLUMNS: Final[tuple[ShredColumn, ...]] = (
    *SHRED_METADATA_COLUMNS,
    ShredColumn("data", varchar(ARRAY_VARCHAR_SIZE), False, "ZSTD"),
)
"""The metadata columns, then ``data``: the entity's data as compact JSON."""


def unresolved_entity_cells(row: EntityRow) -> tuple[str, ...]:
    """A row of :data:`UNRESOLVED_ENTITY_TABLE` for an entity whose schema no registry has."""
    return (*row.metadata_cells, _tsv_text(_compact_json(row.data)))


_SYSTEM_COLUMNS: Final = frozenset({"oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})


def redshift_identifier_problem(name: str) -> str | None:
    """Why ``name`` cannot be a double-quoted Redshift identifier, or None when it can.

    Snowplow does not check (the CREATE TABLE fails); a loader can route such a schema to the
    fallback table instead.  Rules: https://docs.aws.amazon.com/redshift/latest/dg/r_names.html
    """
    if not name:
        return "an identifier cannot be empty"
    if len(name.encode("utf-8")) > 127:
        return f"{name[:40]!r}... is longer than 127 bytes"
    if '"' in name:
        return f"{name!r} holds a double quote, which schema-ddl does not escape"
    if not name.isprintable():
        return f"{name!r} holds a character that is not printable"
    if name in _SYSTEM_COLUMNS:
        return f"{name!r} is a system column name"
    return None


# =========================================================================== Parquet (lake loader)
# schema-ddl parquet/Type.scala, Field.scala, Suggestion.scala, Migrations.scala and
# jsonschema/mutate/*.scala, as common-streams' TypedTabledEntity applies them.

LakeScalarKind = Literal["string", "boolean", "int", "long", "double", "date", "timestamp", "json"]


@dataclass(frozen=True, slots=True)
class LakeScalar:
    """A primitive column type; ``json`` is JSON text (Parquet's JSON logical type, a string in Spark)."""

    kind: LakeScalarKind


@dataclass(frozen=True, slots=True)
class LakeDecimal:
    """A decimal; the precision is 9, 18 or 38 (the Parquet physical type: int32, int64, fixed bytes)."""

    precision: Literal[9, 18, 38]
    scale: int


@dataclass(frozen=True, slots=True)
class LakeStruct:
    fields: tuple[LakeField, ...]


@dataclass(frozen=True, slots=True)
class LakeList:
    element: LakeType
    element_nullable: bool


LakeType: TypeAlias = LakeScalar | LakeDecimal | LakeStruct | LakeList


@dataclass(frozen=True, slots=True)
class LakeField:
    """A named column or struct member (schema-ddl's ``parquet.Field``)."""

    name: str
    """Normalised: snake case, characters other than ``[A-Za-z0-9_]`` to ``_``, ``_`` before a digit."""
    type: LakeType
    nullable: bool
    accessors: frozenset[str] = frozenset()
    """The JSON keys the value is read from (several when names collide after normalising)."""


STRING: Final = LakeScalar("string")
LAKE_BOOLEAN: Final = LakeScalar("boolean")
INT: Final = LakeScalar("int")
LONG: Final = LakeScalar("long")
LAKE_DOUBLE: Final = LakeScalar("double")
LAKE_DATE: Final = LakeScalar("date")
LAKE_TIMESTAMP: Final = LakeScalar("timestamp")
JSON_TEXT: Final = LakeScalar("json")

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
SCHEMA_VERSION_FIELD: Final = "_schema_version"
"""The lake loader's first member of every context struct; it holds the entity's schema version
(``1-0-0``: common-streams ``Transform.jsonForContext``), overriding a property of that name."""


# --------------------------------------------------------------------------- JSON equality
def _json_key(value: JsonValue) -> Any:
    """A hashable identity of a JSON value under circe's equality (1 == 1.0, true != 1)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if _is_number(value):
        return ("number", _as_decimal(value).normalize())
    if isinstance(value, list):
        return ("array", tuple(_json_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _json_key(v)) for k, v in value.items()))
    return ("other", repr(value))


def _distinct_json(values: Iterable[JsonValue]) -> tuple[JsonValue, ...]:
    seen: set[Any] = set()
    kept: list[JsonValue] = []
    for value in values:
        key = _json_key(value)
        if key not in seen:
            seen.add(key)
            kept.append(value)
    return tuple(kept)


def _distinct_schemas(schemas: Iterable[JsonSchema]) -> tuple[JsonSchema, ...]:
    kept: list[JsonSchema] = []
    for schema in schemas:
        if schema not in kept:
            kept.append(schema)
    return tuple(kept)


# --------------------------------------------------------------------------- Narrowed / Widened
# jsonschema/mutate/Narrowed.scala: data valid against both schemas stays valid;
# jsonschema/mutate/Widened.scala: data valid against either schema stays valid.


def _as_number(value: Number) -> Decimal:
    return Decimal(value) if isinstance(value, int) else value


def _merge_maps(
    first: tuple[tuple[str, JsonSchema], ...], second: tuple[tuple[str, JsonSchema], ...], combine: Any
) -> tuple[tuple[str, JsonSchema], ...]:
    merged = dict(first)
    for name, sub in second:
        merged[name] = combine(merged[name], sub) if name in merged else sub
    return tuple(merged.items())


def _narrowed(s1: JsonSchema, s2: JsonSchema) -> JsonSchema:
    def both(a: Any, b: Any, combine: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        return combine(a, b)

    def multiple_of(m1: Number, m2: Number) -> Number:
        if isinstance(m1, Decimal):
            return min(m1, _as_number(m2))
        if isinstance(m2, Decimal):
            return min(m2, _as_number(m1))
        return min(m1, m2)

    def items(i1: Any, i2: Any) -> JsonSchema:
        if isinstance(i1, JsonSchema) and isinstance(i2, JsonSchema):
            return _narrowed(i1, i2)
        return JsonSchema()  # tuples are gone by now (noTupleItems runs first)

    def allowance(p1: Any, p2: Any) -> Any:
        if p1 is False or p2 is False:
            return False
        if p1 is True:
            return p2
        if p2 is True:
            return p1
        return _narrowed(p1, p2)

    def types(t1: TypeSpec, t2: TypeSpec) -> TypeSpec:
        # the intersection: one name stays a name, anything else (even nothing) a union
        kept = [t for t in _sequence(t1) if t in _members(t2)]
        return kept[0] if len(kept) == 1 else tuple(kept)

    def enums(e1: tuple[JsonValue, ...], e2: tuple[JsonValue, ...]) -> tuple[JsonValue, ...]:
        remaining = [_json_key(v) for v in e2]
        kept: list[JsonValue] = []
        for value in e1:
            key = _json_key(value)
            if key in remaining:
                remaining.remove(key)
                kept.append(value)
        return tuple(kept)

    def alternatives(a1: tuple[JsonSchema, ...], a2: tuple[JsonSchema, ...]) -> tuple[JsonSchema, ...]:
        return tuple(s for first in a1 for s in _distinct_schemas(_narrowed(second, first) for second in a2))

    return JsonSchema(
        multiple_of=both(s1.multiple_of, s2.multiple_of, multiple_of),
        minimum=both(s1.minimum, s2.minimum, lambda a, b: a if _as_number(a) > _as_number(b) else b),
        maximum=both(s1.maximum, s2.maximum, lambda a, b: a if _as_number(a) < _as_number(b) else b),
        max_length=both(s1.max_length, s2.max_length, min),
        min_length=both(s1.min_length, s2.min_length, max),
        pattern=s1.pattern if s1.pattern is not None else s2.pattern,
        format=s1.format if s1.format is not None else s2.format,
        schema_uri=s1.schema_uri if s1.schema_uri is not None else s2.schema_uri,
        items=both(s1.items, s2.items, items),
        additional_items=both(s1.additional_items, s2.additional_items, allowance),
        min_items=both(s1.min_items, s2.min_items, max),
        max_items=both(s1.max_items, s2.max_items, min),
        properties=both(s1.properties, s2.properties, lambda a, b: _merge_maps(a, b, _narrowed)),
        additional_properties=both(s1.additional_properties, s2.additional_properties, allowance),
        required=both(s1.required, s2.required, lambda a, b: tuple(dict.fromkeys((*a, *b)))),
        pattern_properties=both(
            s1.pattern_properties, s2.pattern_properties, lambda a, b: _merge_maps(a, b, _narrowed)
        ),
        type=both(s1.type, s2.type, types),
        enum=both(s1.enum, s2.enum, enums),
        one_of=both(s1.one_of, s2.one_of, alternatives),
        any_of=both(s1.any_of, s2.any_of, alternatives),
        description=s1.description if s1.description is not None else s2.description,
    )


def _permits(schema: JsonSchema, names: frozenset[str]) -> bool:
    return schema.type is None or bool(_members(schema.type) & names)


_NUMERIC: Final = frozenset({"number", "integer"})


def _widened(s1: JsonSchema, s2: JsonSchema) -> JsonSchema:
    def typed(names: frozenset[str], attribute: str, combine: Any) -> Any:
        permits1, permits2 = _permits(s1, names), _permits(s2, names)
        a, b = getattr(s1, attribute), getattr(s2, attribute)
        if permits1 and permits2:
            return None if a is None or b is None else combine(a, b)
        if permits1:
            return a
        if permits2:
            return b
        return None

    def equal_or_none(a: Any, b: Any) -> Any:
        return a if a == b else None

    def multiple_of(m1: Number, m2: Number) -> Number | None:
        return m1 if _as_number(m1) == _as_number(m2) else None

    def items(i1: Any, i2: Any) -> JsonSchema:
        if isinstance(i1, JsonSchema) and isinstance(i2, JsonSchema):
            return _widened(i1, i2)
        return JsonSchema()

    def additional_items(a: Any, b: Any) -> Any:
        if isinstance(a, JsonSchema) and isinstance(b, JsonSchema):
            return _widened(a, b)
        if a is False:
            return b
        if b is False:
            return a
        return True

    def additional_properties(a: Any, b: Any) -> Any:
        if a is True or b is True:
            return True
        if a is False:
            return b
        if b is False:
            return a
        return _widened(a, b)

    def schema_maps(attribute: str) -> tuple[tuple[str, JsonSchema], ...] | None:
        objects = frozenset({"object"})
        permits1, permits2 = _permits(s1, objects), _permits(s2, objects)
        m1, m2 = getattr(s1, attribute), getattr(s2, attribute)
        if not (permits1 and permits2):
            return m1 if permits1 else m2 if permits2 else None
        map1, map2 = dict(m1 or ()), dict(m2 or ())

        def alone(prop: JsonSchema, other_additional: bool | JsonSchema | None) -> JsonSchema:
            if isinstance(other_additional, JsonSchema):
                return _widened(other_additional, prop)
            return prop if other_additional is False else JsonSchema()

        merged: dict[str, JsonSchema] = {}
        for name in (*map1, *(n for n in map2 if n not in map1)):
            if name in map1 and name in map2:
                merged[name] = _widened(map1[name], map2[name])
            elif name in map1:
                merged[name] = alone(map1[name], s2.additional_properties)
            else:
                merged[name] = alone(map2[name], s1.additional_properties)
        return tuple(merged.items()) or None

    alternatives1 = (*(s1.one_of or ()), *(s1.any_of or ()))
    alternatives2 = (*(s2.one_of or ()), *(s2.any_of or ()))
    any_of = _distinct_schemas((*alternatives1, *alternatives2)) if alternatives1 and alternatives2 else None

    strings = frozenset({"string"})
    arrays = frozenset({"array"})
    objects = frozenset({"object"})
    return JsonSchema(
        multiple_of=typed(_NUMERIC, "multiple_of", multiple_of),
        minimum=typed(_NUMERIC, "minimum", lambda a, b: a if _as_number(a) < _as_number(b) else b),
        maximum=typed(_NUMERIC, "maximum", lambda a, b: a if _as_number(a) > _as_number(b) else b),
        max_length=typed(strings, "max_length", max),
        min_length=typed(strings, "min_length", min),
        pattern=typed(strings, "pattern", equal_or_none),
        format=typed(strings, "format", equal_or_none),
        schema_uri=typed(strings, "schema_uri", equal_or_none),
        items=typed(arrays, "items", items),
        additional_items=typed(arrays, "additional_items", additional_items),
        min_items=typed(arrays, "min_items", min),
        max_items=typed(arrays, "max_items", max),
        properties=schema_maps("properties"),
        additional_properties=typed(objects, "additional_properties", additional_properties),
        required=typed(objects, "required", lambda a, b: tuple(r for r in a if r in b)),
        pattern_properties=schema_maps("pattern_properties"),
        type=None if s1.type is None or s2.type is None else _union_of((*_sequence(s1.type), *_sequence(s2.type))),
        enum=None if s1.enum is None or s2.enum is None else _distinct_json((*s1.enum, *s2.enum)),
        one_of=None,
        any_of=any_of,
        description=s1.description if s1.description is not None and s1.description == s2.description else None,
    )


def _sequence(spec: TypeSpec) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else spec


# --------------------------------------------------------------------------- Mutate.forStorage


def _map_values(pairs: tuple[tuple[str, JsonSchema], ...] | None, fn: Any) -> tuple[tuple[str, JsonSchema], ...] | None:
    return None if pairs is None else tuple((name, fn(sub)) for name, sub in pairs)


def _no_tuple_items(schema: JsonSchema) -> JsonSchema:
    items: JsonSchema | tuple[JsonSchema, ...] | None
    if isinstance(schema.items, JsonSchema):
        items = _no_tuple_items(schema.items)
    elif schema.items is not None:
        positions = [_no_tuple_items(s) for s in schema.items]
        if isinstance(schema.additional_items, JsonSchema):
            items = schema.additional_items
            for position in positions:
                items = _widened(items, position)
        elif positions:
            items = positions[0]
            for position in positions[1:]:
                items = _widened(items, position)
        else:
            items = None
    else:
        items = None
    additional = schema.additional_properties
    return replace(
        schema,
        items=items,
        properties=_map_values(schema.properties, _no_tuple_items),
        additional_properties=_no_tuple_items(additional) if isinstance(additional, JsonSchema) else additional,
        additional_items=None,
        pattern_properties=_map_values(schema.pattern_properties, _no_tuple_items),
        one_of=None if schema.one_of is None else tuple(_no_tuple_items(s) for s in schema.one_of),
        any_of=None if schema.any_of is None else tuple(_no_tuple_items(s) for s in schema.any_of),
    )


def _has_defined_properties(schema: JsonSchema) -> bool:
    if schema.properties:
        return True
    return any(_has_defined_properties(s) for s in (*(schema.one_of or ()), *(schema.any_of or ())))


def _no_additional_properties(schema: JsonSchema) -> JsonSchema:
    items: JsonSchema | tuple[JsonSchema, ...] | None
    if isinstance(schema.items, JsonSchema):
        items = _no_additional_properties(schema.items)
    elif schema.items is not None:
        items = tuple(_no_additional_properties(s) for s in schema.items)
    else:
        items = None
    additional_items = schema.additional_items
    if isinstance(additional_items, JsonSchema):
        additional_items = _no_additional_properties(additional_items)
    additional = schema.additional_properties
    if _has_type(schema, "object") and _has_defined_properties(schema):
        additional = False
    return replace(
        schema,
        items=items,
        properties=_map_values(schema.properties, _no_additional_properties),
        additional_properties=additional,
        pattern_properties=None,
        additional_items=additional_items,
        one_of=None if schema.one_of is None else tuple(_no_additional_properties(s) for s in schema.one_of),
        any_of=None if schema.any_of is None else tuple(_no_additional_properties(s) for s in schema.any_of),
    )


def _no_alternatives(schema: JsonSchema) -> JsonSchema:
    items: JsonSchema | tuple[JsonSchema, ...] | None
    if isinstance(schema.items, JsonSchema):
        items = _no_alternatives(schema.items)
    elif schema.items is not None:
        items = tuple(_no_alternatives(s) for s in schema.items)
    else:
        items = None
    additional = schema.additional_properties
    additional_items = schema.additional_items
    without = replace(
        schema,
        items=items,
        properties=_map_values(schema.properties, _no_alternatives),
        pattern_properties=_map_values(schema.pattern_properties, _no_alternatives),
        additional_properties=_no_alternatives(additional) if isinstance(additional, JsonSchema) else additional,
        additional_items=_no_alternatives(additional_items)
        if isinstance(additional_items, JsonSchema)
        else additional_items,
        one_of=None,
        any_of=None,
    )
    options = [_narrowed(without, _no_alternatives(s)) for s in (*(schema.one_of or ()), *(schema.any_of or ()))]
    if not options:
        return without
    result = options[0]
    for option in options[1:]:
        result = _widened(result, option)
    return result


def schema_for_storage(schema: JsonSchema) -> JsonSchema:
    """schema-ddl's ``Mutate.forStorage``: tuple items widened into one item schema, objects
    with properties closed to others, ``oneOf``/``anyOf`` folded into the schema."""
    return _no_alternatives(_no_additional_properties(_no_tuple_items(schema)))


# --------------------------------------------------------------------------- field building
# parquet/Field.scala (buildType and friends) and parquet/Suggestion.scala.


class _Typed(NamedTuple):
    type: LakeType
    explicitly_nullable: bool
    """The schema's type admits null (Field.JsonNullability.ExplicitlyNullable)."""


def _precision_digits(value: Decimal) -> int:
    """Java's ``BigDecimal.precision() - scale()``: the digits before the point."""
    exponent = value.as_tuple().exponent
    digits = len(value.as_tuple().digits)
    return digits + exponent if isinstance(exponent, int) else digits


def _scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


def _decimal_precision(precision: int) -> Literal[9, 18, 38] | None:
    if precision <= 9:
        return 9
    if precision <= 18:
        return 18
    if precision <= 38:
        return 38
    return None


def _integer_type(schema: JsonSchema) -> LakeType:
    if schema.minimum is None or schema.maximum is None:
        return LONG
    low, high = _as_number(schema.minimum), _as_number(schema.maximum)
    if high <= _INT_MAX and low >= _INT_MIN:
        return INT
    if high <= _LONG_MAX and low >= _LONG_MIN:
        return LONG
    precision = _decimal_precision(max(_precision_digits(high), _precision_digits(low)))
    return LAKE_DOUBLE if precision is None else LakeDecimal(precision, 0)


def _numeric_with_multiple(multiple: Decimal, schema: JsonSchema) -> LakeType:
    if schema.minimum is None or schema.maximum is None:
        return LAKE_DOUBLE
    scale = _scale(multiple)

    def digits(bound: Number) -> int:
        # an integer bound counts all its digits (BigDecimal(max).precision)
        return len(str(abs(bound))) + scale if isinstance(bound, int) else _precision_digits(bound) + scale

    precision = _decimal_precision(max(digits(schema.maximum), digits(schema.minimum)))
    return LAKE_DOUBLE if precision is None else LakeDecimal(precision, scale)


def _only_numeric(spec: TypeSpec) -> bool:
    if isinstance(spec, str):
        return spec in _NUMERIC
    others = set(spec) - {"null"}
    return bool(others) and others <= _NUMERIC


def _numeric_enum(values: tuple[JsonValue, ...]) -> _Typed | None:
    scale, largest, nullable = 0, Decimal(0), False
    for value in values:
        if value is None:
            nullable = True
            continue
        if not _is_number(value):
            return None
        number = _as_decimal(value)
        scale = max(scale, _scale(number))
        magnitude = abs(number)
        largest = magnitude if magnitude >= largest else largest
    if scale == 0 and largest <= _INT_MAX:
        return _Typed(INT, nullable)
    if scale == 0 and largest <= _LONG_MAX:
        return _Typed(LONG, nullable)
    precision = _decimal_precision(_precision_digits(largest) + scale)
    return _Typed(LAKE_DOUBLE if precision is None else LakeDecimal(precision, scale), nullable)


def _string_enum(values: tuple[JsonValue, ...]) -> _Typed | None:
    if any(v is not None and not isinstance(v, str) for v in values):
        return None
    return _Typed(STRING, any(v is None for v in values))


def _lake_suggestion(schema: JsonSchema) -> _Typed | None:  # noqa: PLR0911 - one return per Scala case
    spec = schema.type
    if spec is not None and _possibly_with_null(spec, "string"):
        if schema.format == "date":
            return _Typed(LAKE_DATE, _explicitly_nullable(spec))
        if schema.format == "date-time":
            return _Typed(LAKE_TIMESTAMP, _explicitly_nullable(spec))
    if spec is not None and _possibly_with_null(spec, "boolean"):
        return _Typed(LAKE_BOOLEAN, _explicitly_nullable(spec))
    if spec is not None and _possibly_with_null(spec, "string"):
        return _Typed(STRING, _explicitly_nullable(spec))
    if spec is not None and _possibly_with_null(spec, "integer"):
        return _Typed(_integer_type(schema), _explicitly_nullable(spec))
    if spec is not None and _only_numeric(spec):
        multiple = schema.multiple_of
        if isinstance(multiple, int):
            return _Typed(_integer_type(schema), _explicitly_nullable(spec))
        if isinstance(multiple, Decimal):
            return _Typed(_numeric_with_multiple(multiple, schema), _explicitly_nullable(spec))
        return _Typed(LAKE_DOUBLE, _explicitly_nullable(spec))
    if schema.enum is not None:
        values = schema.enum
        return _numeric_enum(values) or _string_enum(values) or _Typed(JSON_TEXT, any(v is None for v in values))
    return None


def _field_nullable(typed: _Typed, enforce_presence: bool) -> bool:
    return typed.explicitly_nullable or not enforce_presence


def _build_type(schema: JsonSchema) -> _Typed | None:
    spec = schema.type
    if spec is not None and _possibly_with_null(spec, "object"):
        struct = _build_object(schema)
        return None if struct is None else _Typed(struct, _explicitly_nullable(spec))
    if spec is not None and _possibly_with_null(spec, "array"):
        if isinstance(schema.items, JsonSchema):
            item = _build_type(schema.items)
            if item is None:
                return None
            return _Typed(LakeList(item.type, _field_nullable(item, True)), _explicitly_nullable(spec))
        return _Typed(LakeList(JSON_TEXT, True), _explicitly_nullable(spec))
    suggested = _lake_suggestion(schema)
    if suggested is not None:
        return suggested
    return _Typed(JSON_TEXT, True if spec is None else _explicitly_nullable(spec))


def _build_object(schema: JsonSchema) -> LakeType | None:
    required = set(schema.required or ())
    fields: list[LakeField] = []
    for name, sub in schema.properties or ():
        typed = _build_type(sub)
        if typed is not None:
            fields.append(LakeField(name, typed.type, _field_nullable(typed, name in required), frozenset({name})))
    if fields:
        return LakeStruct(tuple(sorted(fields, key=lambda f: _utf16_order(f.name))))
    # an object that can hold nothing is no column at all; one that can hold anything is JSON
    return None if schema.additional_properties is False else JSON_TEXT


_DISALLOWED_NAME_CHARACTERS: Final = re.compile(r"[^A-Za-z0-9_]")


def normalize_field_name(name: str) -> str:
    """Field.normalizeName: snake case, other characters to ``_``, ``_`` before a leading digit."""
    normalized = _DISALLOWED_NAME_CHARACTERS.sub("_", snake_case(name))
    return f"_{normalized}" if normalized[:1].isdigit() else normalized


def _normalize_field(field: LakeField) -> LakeField:
    return replace(field, name=normalize_field_name(field.name), type=_normalize_type(field.type))


def _normalize_type(lake_type: LakeType) -> LakeType:
    if isinstance(lake_type, LakeStruct):
        fields = [_normalize_field(f) for f in lake_type.fields]
        groups: dict[str, list[LakeField]] = {}
        for f in fields:
            groups.setdefault(f.name, []).append(f)
        collapsed = []
        for group in groups.values():
            # colliding names keep one type, chosen by the smallest accessor, and read every key
            lowest = min(group, key=lambda f: _utf16_order(min(f.accessors, key=_utf16_order)))
            collapsed.append(replace(lowest, accessors=frozenset().union(*(f.accessors for f in group))))
        return LakeStruct(tuple(sorted(collapsed, key=lambda f: _utf16_order(f.name))))
    if isinstance(lake_type, LakeList):
        return LakeList(_normalize_type(lake_type.element), lake_type.element_nullable)
    return lake_type


_VENDOR_SEPARATORS: Final = re.compile(r"[.\-]")
_CAMEL_HUMP: Final = re.compile(r"([^A-Z_])([A-Z])")


def lake_column_name(kind: LakeEntityKind, key: SchemaKey) -> str:
    """``contexts_{vendor}_{name}_{model}`` or ``unstruct_event_...`` (the analytics SDK's
    ``SnowplowEvent.transformSchema``, then ``Field.normalizeName``)."""
    vendor = _VENDOR_SEPARATORS.sub("_", key.vendor).lower()
    name = _CAMEL_HUMP.sub(r"\1_\2", _VENDOR_SEPARATORS.sub("_", key.name)).lower()
    return normalize_field_name(f"{kind}_{vendor}_{name}_{key.model}")


def lake_field(kind: LakeEntityKind, key: SchemaKey, schema: Mapping[str, Any] | JsonSchema) -> LakeField | None:
    """The lake loader's column for entities of ``key``'s family and major version: a nullable
    struct for the unstruct event, a nullable list of required structs (``_schema_version``
    first) for contexts.  None when the schema allows no value at all (an object with no
    properties and ``additionalProperties: false``): the lake loader writes no column for it.

    Raises :class:`EntityModelError` when the schema cannot be decoded.
    """
    parsed = schema if isinstance(schema, JsonSchema) else parse_json_schema(schema)
    typed = _build_type(schema_for_storage(parsed))
    if typed is None:
        return None
    name = lake_column_name(kind, key)
    if kind == "unstruct_event":
        field = _normalize_field(LakeField(name, typed.type, True, frozenset({name})))
    else:
        element = LakeList(typed.type, _field_nullable(typed, True))
        field = _normalize_field(LakeField(name, element, True, frozenset({name})))
        field = _with_schema_version(field)
    return replace(field, accessors=frozenset())


def _with_schema_version(field: LakeField) -> LakeField:
    if isinstance(field.type, LakeList) and isinstance(field.type.element, LakeStruct):
        own = tuple(f for f in field.type.element.fields if f.name != SCHEMA_VERSION_FIELD)
        version = LakeField(SCHEMA_VERSION_FIELD, STRING, False, frozenset({SCHEMA_VERSION_FIELD}))
        return replace(field, type=LakeList(LakeStruct((version, *own)), field.type.element_nullable))
    return field  # a context whose schema is not an object keeps its type


# --------------------------------------------------------------------------- merging fields
# parquet/Migrations.scala: mergeSchemas succeeds unless some type changes incompatibly.


_SCALA_LAKE_NAMES: Final = {
    "string": "String",
    "boolean": "Boolean",
    "int": "Integer",
    "long": "Long",
    "double": "Double",
    "date": "Date",
    "timestamp": "Timestamp",
    "json": "Json",
}


def _describe(lake_type: LakeType) -> str:
    """A type as schema-ddl's reports name it (structs and lists abbreviated)."""
    if isinstance(lake_type, LakeScalar):
        return _SCALA_LAKE_NAMES[lake_type.kind]
    if isinstance(lake_type, LakeDecimal):
        return f"Decimal(Digits{lake_type.precision},{lake_type.scale})"
    if isinstance(lake_type, LakeList):
        return f"Array({_describe(lake_type.element)})"
    return "Struct(" + ",".join(f.name for f in lake_type.fields) + ")"


def _merge_field(
    path: tuple[str, ...], source: LakeField, target: LakeField | None, breaking: list[str]
) -> LakeField | None:
    if target is None:
        return replace(source, nullable=True)  # a removed key: kept, nullable
    if source == target:
        return source
    merged = _merge_type(path, source.type, target.type, breaking)
    if merged is None:
        return None
    return LakeField(source.name, merged, source.nullable or target.nullable, source.accessors | target.accessors)


def _merge_type(path: tuple[str, ...], source: LakeType, target: LakeType, breaking: list[str]) -> LakeType | None:
    if isinstance(source, LakeStruct) and isinstance(target, LakeStruct):
        by_name_target = {f.name: f for f in reversed(target.fields)}
        by_name_source = {f.name: f for f in reversed(source.fields)}
        forward = [_merge_field((*path, f.name), f, by_name_target.get(f.name), breaking) for f in source.fields]
        backward = [_merge_field((*path, f.name), f, by_name_source.get(f.name), []) for f in target.fields]
        source_fields = [f for f in forward if f is not None] if all(f is not None for f in forward) else []
        target_fields = [f for f in backward if f is not None] if all(f is not None for f in backward) else []
        target_names = {f.name for f in target_fields}
        source_names = {f.name for f in source_fields}
        kept = [f if f.name in target_names else replace(f, nullable=True) for f in source_fields]
        added = [f for f in target_fields if f.name not in source_names]
        return LakeStruct((*kept, *added)) if kept or added else None
    if isinstance(source, LakeList) and isinstance(target, LakeList):
        element = _merge_type((*path, "[arrayDown]"), source.element, target.element, breaking)
        return None if element is None else LakeList(element, source.element_nullable or target.element_nullable)
    if source == target:
        return target
    breaking.append(f"Incompatible type change {_describe(source)} to {_describe(target)} at /{'/'.join(path)}")
    return None


@dataclass(frozen=True, slots=True)
class LakeMerge:
    """What :func:`merge_lake_fields` found: the merged field, or why there is none."""

    field: LakeField | None
    breaking_changes: tuple[str, ...] = ()


def merge_lake_fields(source: LakeField, target: LakeField) -> LakeMerge:
    """Merge a later version's field into the column so far (``Migrations.mergeSchemas``):
    struct members keep their order, new members are appended nullable, removed members stay
    nullable, nullability widens; any other type change makes the merge fail."""
    breaking: list[str] = []
    merged = _merge_field((), source, target, breaking)
    return LakeMerge(merged, () if merged is not None else tuple(breaking) or ("incompatible fields",))


# --------------------------------------------------------------------------- lake families
# common-streams loaders-common transform/TypedTabledEntity.scala.


def _scala_json(value: Any) -> str:  # noqa: PLR0911 - one return per JSON kind
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(value)  # java.math.BigDecimal.toString follows the same scientific-notation rule
    if isinstance(value, JsonSchema):
        return _circe_schema_json(value)
    if isinstance(value, tuple | list):
        return "[" + ",".join(_scala_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_compact_json(k)}:{_scala_json(v)}" for k, v in value.items()) + "}"
    return _compact_json(value)


def _circe_schema_json(schema: JsonSchema) -> str:
    """The schema as schema-ddl's derived circe encoder prints it (``asJson.noSpaces``): every
    keyword in declaration order, absent ones as null, formats as their names.

    Maps print in their written order: Scala keeps that for up to four entries and hashes beyond,
    so a recovery column name only matches the lake loader's while every object has at most four
    properties.
    """
    fmt = "ipv6" if schema.format == "ivp6" else schema.format
    values: list[tuple[str, Any]] = [
        ("multipleOf", schema.multiple_of),
        ("minimum", schema.minimum),
        ("maximum", schema.maximum),
        ("maxLength", schema.max_length),
        ("minLength", schema.min_length),
        ("pattern", schema.pattern),
        ("format", fmt),
        ("$schema", schema.schema_uri),
        ("items", schema.items),
        ("additionalItems", schema.additional_items),
        ("minItems", schema.min_items),
        ("maxItems", schema.max_items),
        ("properties", schema.properties),
        ("additionalProperties", schema.additional_properties),
        ("required", schema.required),
        ("patternProperties", schema.pattern_properties),
        ("type", schema.type),
        ("enum", schema.enum),
        ("oneOf", schema.one_of),
        ("anyOf", schema.any_of),
        ("description", schema.description),
    ]
    parts = []
    for name, value in values:
        if name in ("properties", "patternProperties") and value is not None:
            rendered = "{" + ",".join(f"{_compact_json(k)}:{_circe_schema_json(v)}" for k, v in value) + "}"
        else:
            rendered = _scala_json(value)
        parts.append(f"{_compact_json(name)}:{rendered}")
    return "{" + ",".join(parts) + "}"


def lake_schema_hash(schema: JsonSchema) -> str:
    """``"%08x".format(schema.asJson.noSpaces.hashCode())``: the suffix of a recovered column."""
    return f"{_java_hash(_circe_schema_json(schema)) & 0xFFFFFFFF:08x}"


SubVersion: TypeAlias = tuple[int, int]
"""(revision, addition): a version within a family and major version."""


@dataclass(frozen=True, slots=True)
class LakeFamily:
    """The lake columns of one entity kind, family and major version (``TypedTabledEntity``)."""

    kind: LakeEntityKind
    field: LakeField
    """The column every merged version is written to."""
    merged_versions: frozenset[SubVersion]
    recoveries: tuple[tuple[SubVersion, LakeField], ...]
    """Versions that could not merge (and were in the batch), each with a column of its own."""


def lake_family(
    kind: LakeEntityKind,
    schemas: Iterable[tuple[SchemaKey, Mapping[str, Any] | JsonSchema]],
    versions_in_batch: Iterable[SubVersion] | None = None,
) -> LakeFamily | None:
    """Merge a family's versions (any order) into one column as the lake loader does.

    Versions whose schema allows no value are left out; a version that cannot merge gets a
    recovered column ``{column}_recovered_{M_R_A}_{hash}`` when it is in ``versions_in_batch``
    (every version when None), and later versions merge on top of the column so far.  None when
    no version has a column.  Raises :class:`EntityModelError` as :func:`shred_family` does.
    """
    ordered = _sorted_family(schemas)
    in_batch = None if versions_in_batch is None else set(versions_in_batch)
    built: list[tuple[SchemaKey, JsonSchema, LakeField]] = []
    for key, schema in ordered:
        parsed = schema if isinstance(schema, JsonSchema) else parse_json_schema(schema)
        field = lake_field(kind, key, parsed)
        if field is not None:
            built.append((key, parsed, field))
    if not built:
        return None
    root_key, _, merged = built[0]
    merged_versions = {(root_key.revision, root_key.addition)}
    recoveries: list[tuple[SubVersion, LakeField]] = []
    for key, parsed, field in built[1:]:
        version = (key.revision, key.addition)
        outcome = merge_lake_fields(merged, field)
        if outcome.field is not None:
            merged = outcome.field
            merged_versions.add(version)
        elif in_batch is None or version in in_batch:
            name = f"{field.name}_recovered_{key.version.replace('-', '_')}_{lake_schema_hash(parsed)}"
            recoveries.append((version, replace(field, name=name)))
    return LakeFamily(kind, merged, frozenset(merged_versions), tuple(recoveries))
