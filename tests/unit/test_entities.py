"""Entities in the warehouse: shredded Redshift tables and lake-loader Parquet columns (issue 10, section 2).

GIVEN Iglu schemas (schema-ddl's own test schemas, and the bundled Iglu Central ones)
WHEN pipeline.entities derives their Redshift shred models, merges minor versions, types their
     lake-loader columns and lists an event's entity rows
THEN the results are the ones Snowplow's code produces: expected values are schema-ddl's,
     common-streams' and rdb-loader's own test expectations where those exist (each test names
     the spec), and otherwise the rules applied by hand to the bundled schema.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.bundled import DATA_PACKAGE
from pipeline.entities import (
    BIGINT,
    BOOLEAN,
    DATE,
    DOUBLE,
    INT,
    INTEGER,
    JSON_TEXT,
    LAKE_BOOLEAN,
    LAKE_DATE,
    LAKE_DOUBLE,
    LAKE_TIMESTAMP,
    LONG,
    NULL_CELL,
    SHRED_METADATA_COLUMNS,
    STRING,
    TIMESTAMP,
    UNRESOLVED_ENTITY_COLUMNS,
    ColumnAddition,
    EntityModelError,
    JsonSchema,
    LakeDecimal,
    LakeEntityKind,
    LakeField,
    LakeList,
    LakeStruct,
    LakeType,
    ShredColumn,
    ShredModel,
    VarcharExtension,
    char,
    column_definitions,
    decimal,
    encoding_for,
    entity_cells,
    entity_rows,
    lake_column_name,
    lake_family,
    lake_field,
    lake_schema_hash,
    merge_lake_fields,
    merge_shred_models,
    normalize_field_name,
    parse_json_schema,
    redshift_identifier_problem,
    redshift_type,
    schema_for_storage,
    shred_family,
    shred_model,
    snake_case,
    unresolved_entity_cells,
    varchar,
)
from pipeline.iglu import SchemaKey, bundled_registry

ACME = SchemaKey("com.acme", "example", "jsonschema", 1, 0, 0)
ACME_1 = ACME._replace(addition=1)
ACME_2 = ACME._replace(addition=2)
SELF_DESC = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
REGISTRY = bundled_registry()


def bundled(uri: str) -> tuple[SchemaKey, dict[str, Any]]:
    key = SchemaKey.parse(uri)
    assert key is not None
    schema = REGISTRY.lookup(key)
    assert schema is not None, uri
    return key, schema


def snowplow(name: str, *versions: str) -> list[tuple[SchemaKey, dict[str, Any]]]:
    return [bundled(f"iglu:com.snowplowanalytics.snowplow/{name}/jsonschema/{v}") for v in versions]


def layout(model: ShredModel) -> list[tuple[str, str, bool]]:
    return [(c.name, c.type.sql, c.nullable) for c in model.columns]


def obj(properties: dict[str, Any], required: list[str] | None = None, **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **more}
    if required is not None:
        schema["required"] = required
    return schema


def definition_lines(model: ShredModel) -> list[str]:
    return column_definitions(model.columns).split(",\n")[len(SHRED_METADATA_COLUMNS) :]


# =========================================================================== Redshift: column types
# schema-ddl redshift/internal/ShredModelEntrySpec.scala, "type inference"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "number", "multipleOf": 0.01}, decimal(36, 2)),
        ({"type": "number", "multipleOf": 1}, INTEGER),
        ({"type": "string"}, varchar(4096)),
        ({"type": "string", "maxLength": 42}, varchar(42)),
        ({"type": "string", "enum": ["one", "two"]}, varchar(3)),
        ({"type": "string", "enum": ["one", "two"], "maxLength": 42}, varchar(3)),
        ({"type": "integer", "multipleOf": 1, "enum": [2, 3, 5, "hello", 32]}, varchar(7)),
        ({"type": ["string", "null"], "minLength": "12", "maxLength": "12"}, char(12)),
        ({"type": ["number", "null"]}, DOUBLE),
        ({"type": ["integer", "null"]}, BIGINT),
        ({"type": "string", "format": "date-time"}, TIMESTAMP),
        ({"type": "string", "format": "date"}, DATE),
        ({"type": "integer", "maximum": 9223372036854775808}, BIGINT),
        ({"type": "array"}, varchar(65535)),
    ],
)
def test_column_types_follow_schema_ddls_suggestions(schema: dict[str, Any], expected: Any) -> None:
    assert redshift_type(parse_json_schema(schema)) == expected


@pytest.mark.parametrize(
    ("schema", "sql"),
    [
        # getIntSize looks at the maximum only: the minimum does not widen a column
        ({"type": "integer", "maximum": 32767}, "SMALLINT"),
        ({"type": "integer", "minimum": -(2**40), "maximum": 100}, "SMALLINT"),
        ({"type": "integer", "maximum": 32768}, "INT"),
        ({"type": "integer", "maximum": 2147483648}, "BIGINT"),
        ({"type": "integer", "maximum": 1.5}, "DECIMAL"),
        ({"type": "string", "format": "date"}, "DATE"),
        ({"type": "string", "format": "uuid"}, "CHAR(36)"),
        ({"type": "string", "format": "ipv4"}, "VARCHAR(15)"),
        ({"type": "string", "format": "email"}, "VARCHAR(255)"),
        # Format.fromString knows "ivp6" (sic), so "ipv6" is a custom format and only "ivp6" is VARCHAR(39)
        ({"type": "string", "format": "ipv6"}, "VARCHAR(4096)"),
        ({"type": "string", "format": "ivp6"}, "VARCHAR(39)"),
        ({"type": ["boolean", "integer"]}, "VARCHAR(10)"),
        ({"type": ["string", "integer", "null"]}, "VARCHAR(4096)"),
        ({"type": ["integer", "number"]}, "DOUBLE PRECISION"),
        ({"type": "boolean"}, "BOOLEAN"),
        ({"enum": ["only"]}, "CHAR(4)"),
        ({"enum": [1, 20, 300]}, "SMALLINT"),
        ({"enum": [True, False]}, "VARCHAR(5)"),  # a boolean is non-numeric too: a "complex" enum
        ({"enum": [1, "ab"]}, "VARCHAR(4)"),  # the longest as JSON, quotes included
        ({"type": "number", "multipleOf": 0.1}, "DOUBLE PRECISION"),
        ({}, "VARCHAR(4096)"),
    ],
)
def test_column_types_of_other_cases(schema: dict[str, Any], sql: str) -> None:
    assert redshift_type(parse_json_schema(schema)).sql == sql


def test_compression_follows_the_type() -> None:
    # ShredModelEntrySpec, "suggest compression"
    assert encoding_for(redshift_type(parse_json_schema({"type": "string", "enum": ["one", "two"]}))) == "ZSTD"
    assert encoding_for(BOOLEAN) == "RUNLENGTH"
    assert encoding_for(DOUBLE) == "RAW"
    assert encoding_for(varchar(4096)) == "ZSTD"


def test_column_definitions_align_as_schema_ddl_prints_them() -> None:
    # ShredModelEntrySpec, "align column width"
    def column(name: str, schema: dict[str, Any], nullable: bool = False) -> ShredColumn:
        column_type = redshift_type(parse_json_schema(schema))
        return ShredColumn(name, column_type, nullable, encoding_for(column_type))

    columns = [
        column("ptr", {"type": "array"}),
        column("ptrlooong", {"type": "boolean"}),
        column("ptrlooon", {"type": "string"}),
        column("ptrs", {"type": "string", "format": "date-time"}),
        column("ptrlooong1111", {"type": ["number", "null"]}, nullable=True),
    ]
    assert column_definitions(columns).splitlines() == [
        '  "schema_vendor"  VARCHAR(128)     ENCODE ZSTD      NOT NULL,',
        '  "schema_name"    VARCHAR(128)     ENCODE ZSTD      NOT NULL,',
        '  "schema_format"  VARCHAR(128)     ENCODE ZSTD      NOT NULL,',
        '  "schema_version" VARCHAR(128)     ENCODE ZSTD      NOT NULL,',
        '  "root_id"        CHAR(36)         ENCODE RAW       NOT NULL,',
        '  "root_tstamp"    TIMESTAMP        ENCODE ZSTD      NOT NULL,',
        '  "ref_root"       VARCHAR(255)     ENCODE ZSTD      NOT NULL,',
        '  "ref_tree"       VARCHAR(1500)    ENCODE ZSTD      NOT NULL,',
        '  "ref_parent"     VARCHAR(255)     ENCODE ZSTD      NOT NULL,',
        '  "ptr"            VARCHAR(65535)   ENCODE ZSTD      NOT NULL,',
        '  "ptrlooong"      BOOLEAN          ENCODE RUNLENGTH NOT NULL,',
        '  "ptrlooon"       VARCHAR(4096)    ENCODE ZSTD      NOT NULL,',
        '  "ptrs"           TIMESTAMP        ENCODE ZSTD      NOT NULL,',
        '  "ptrlooong1111"  DOUBLE PRECISION ENCODE RAW',
    ]


# =========================================================================== Redshift: flattening
# schema-ddl redshift/internal/FlatSchemaSpec.scala, "build" (asserted on the resulting columns)


def test_an_object_without_properties_has_no_columns() -> None:
    assert shred_model(ACME, {"type": "object"}).columns == ()
    # "recognize an empty self-describing schema as empty FlatSchema"
    assert shred_model(*bundled("iglu:com.snowplowanalytics.iglu/anything-a/jsonschema/1-0-0")).columns == ()


def test_a_nested_object_without_properties_is_one_column() -> None:
    schema = obj({"nested": obj({"object_without_properties": {"type": "object"}})})
    assert layout(shred_model(ACME, schema)) == [("nested.object_without_properties", "VARCHAR(4096)", True)]


def test_an_array_is_one_json_column() -> None:
    schema = obj({"foo": {"type": "array", "items": {"type": "string"}}}, additionalProperties=False)
    assert layout(shred_model(ACME, schema)) == [("foo", "VARCHAR(65535)", True)]


def test_a_union_is_one_column_and_hides_its_properties() -> None:
    schema = obj(
        {
            "foo": {
                "type": ["string", "object"],
                "properties": {"one": {"type": "string"}, "two": {"type": "integer"}},
            },
            "a_field": {"type": ["string", "integer"]},
            "b_field": {"type": "string"},
            "c_field": {"type": ["integer", "number"]},
            "d_field": obj({"one": {"type": ["integer", "object"], "properties": {"two": {"type": "string"}}}}),
        },
        additionalProperties=False,
    )
    assert layout(shred_model(ACME, schema)) == [
        ("a_field", "VARCHAR(4096)", True),
        ("b_field", "VARCHAR(4096)", True),
        ("c_field", "DOUBLE PRECISION", True),
        ("d_field.one", "VARCHAR(4096)", True),
        ("foo", "VARCHAR(4096)", True),
    ]


@pytest.mark.parametrize(
    "union",
    [
        {"oneOf": [obj({"object_without_properties": {"type": "object"}}), {"type": "string"}]},
        {"oneOf": [obj({"one": {"type": "integer"}}), obj({"two": {"type": "string"}})]},
    ],
)
def test_one_of_is_one_column(union: dict[str, Any]) -> None:
    schema = obj({"union": union}, additionalProperties=False)
    assert layout(shred_model(ACME, schema)) == [("union", "VARCHAR(4096)", True)]


def test_optional_enums_and_untyped_fields() -> None:
    schema = obj(
        {
            "a_field": obj({"enum_field": {"enum": ["event", "exception", "item"]}}),
            "nonInteractionHit": {"type": ["boolean", "null"]},
            "b_field": {},
        }
    )
    assert layout(shred_model(ACME, schema)) == [
        ("a_field.enum_field", "VARCHAR(9)", True),
        ("b_field", "VARCHAR(4096)", True),
        ("non_interaction_hit", "BOOLEAN", True),
    ]


def test_a_nested_field_is_not_null_only_when_every_ancestor_is_required() -> None:
    schema = obj(
        {
            "foo": obj(
                {
                    "one": {"type": "string"},
                    "nonRequiredNested": obj({"nestedRequired": {"type": "integer"}}, ["nestedRequired"]),
                },
                ["one"],
            )
        },
        ["foo"],
        additionalProperties=False,
    )
    assert layout(shred_model(ACME, schema)) == [
        ("foo.one", "VARCHAR(4096)", False),
        ("foo.non_required_nested.nested_required", "BIGINT", True),
    ]


def test_pattern_properties_are_not_columns() -> None:
    schema = obj(
        {
            "one": obj(
                {
                    "two": {"type": "string"},
                    "withProps": {
                        "type": "object",
                        "patternProperties": {".excluded": {"type": "string"}},
                        "properties": {"included": {"type": "integer"}},
                    },
                },
                ["two"],
            )
        },
        ["one"],
    )
    assert layout(shred_model(ACME, schema)) == [
        ("one.two", "VARCHAR(4096)", False),
        ("one.with_props.included", "BIGINT", True),
    ]


# =========================================================================== Redshift: shred models
# schema-ddl redshift/ShredModelSpec.scala

DUMMY_SCHEMA: dict[str, Any] = obj(
    {
        "foo": {"type": "string", "maxLength": 20},
        "bar": {"type": "integer", "maximum": 4000},
        "a_field": obj(
            {
                "b_field": {"type": "string"},
                "c_field": obj({"d_field": {"type": "string"}, "e_field": {"type": "string"}}),
                "d_field": {"type": "string"},
            },
            ["d_field"],
        ),
        "b_field": {"type": "integer"},
        "c_field": {"type": "integer"},
        "d_field": obj({"e_field": {"type": "string"}, "f_field": {"type": "string"}}),
        "e_field": obj({"f_field": {"type": "string"}, "g_field": {"type": "string"}}, ["g_field"]),
        "f_field": {"type": "string"},
        "g_field": {"type": "string"},
    },
    ["a_field", "e_field"],
)
DUMMY_COLUMNS = [
    '  "a_field.d_field"         VARCHAR(4096) ENCODE ZSTD NOT NULL',
    '  "e_field.g_field"         VARCHAR(4096) ENCODE ZSTD NOT NULL',
    '  "a_field.b_field"         VARCHAR(4096) ENCODE ZSTD',
    '  "a_field.c_field.d_field" VARCHAR(4096) ENCODE ZSTD',
    '  "a_field.c_field.e_field" VARCHAR(4096) ENCODE ZSTD',
    '  "b_field"                 BIGINT        ENCODE ZSTD',
    '  "bar"                     SMALLINT      ENCODE ZSTD',
    '  "c_field"                 BIGINT        ENCODE ZSTD',
    '  "d_field.e_field"         VARCHAR(4096) ENCODE ZSTD',
    '  "d_field.f_field"         VARCHAR(4096) ENCODE ZSTD',
    '  "e_field.f_field"         VARCHAR(4096) ENCODE ZSTD',
    '  "f_field"                 VARCHAR(4096) ENCODE ZSTD',
    '  "foo"                     VARCHAR(20)   ENCODE ZSTD',
    '  "g_field"                 VARCHAR(4096) ENCODE ZSTD',
]


def test_the_shred_table_orders_columns_by_nullability_then_name() -> None:
    # "render shred table, ordering column by nullability"
    model = shred_model(ACME, DUMMY_SCHEMA)
    assert model.table_name == "com_acme_example_1"
    assert (
        column_definitions(model.columns).split(",\n")[4]
        == '  "root_id"                 CHAR(36)      ENCODE RAW  NOT NULL'
    )
    assert definition_lines(model) == DUMMY_COLUMNS


def test_row_cells_follow_the_column_order() -> None:
    # "transform events" and "transform events with special characters"
    model = shred_model(ACME, DUMMY_SCHEMA)
    data = {"a_field": {"d_field": "z\tzzz", "g_field": "gggg"}, "e_field": {"g_field": "xxxx"}, "bar": "ssss"}
    assert entity_cells(model, data) == ("z zzz", "xxxx", *[NULL_CELL] * 4, "ssss", *[NULL_CELL] * 7)


def test_cells_render_json_values_as_rdb_loader_does() -> None:
    # ShredModelEntrySpec, "String factory"
    schema = obj(
        {
            "arrayPtr": {"type": "array"},
            "objPtr": {"type": "object"},
            "strPtr": {"type": "string"},
            "numPtr": {"type": "number"},
            "nullPtr": {"type": ["number", "null"]},
            "boolPtr": {"type": "boolean"},
            "nested": obj({"a": {"type": "string"}, "b": obj({"s": {"type": "string"}})}),
        }
    )
    data = {
        "arrayPtr": ["a", "b"],
        "objPtr": {"a": "b"},
        "strPtr": "a\nb",
        "numPtr": 9999,
        "nullPtr": None,
        "boolPtr": True,
        "nested": {"a": "\\N"},
    }
    cells = dict(
        zip(
            (c.name for c in shred_model(ACME, schema).columns),
            entity_cells(shred_model(ACME, schema), data),
            strict=True,
        )
    )
    assert cells == {
        "array_ptr": '["a","b"]',
        "bool_ptr": "1",
        "nested.a": "\\\\N",  # a literal \N is escaped so that COPY does not read a NULL
        "nested.b.s": NULL_CELL,
        "null_ptr": NULL_CELL,
        "num_ptr": "9999",
        "obj_ptr": '{"a":"b"}',
        "str_ptr": "a b",
    }


@pytest.mark.parametrize(
    ("first", "later", "table_name", "reason"),
    [
        # "should make a recovery model when incompatible encodings are merged"
        (
            obj({"foo": {"type": "string", "maxLength": 20}}),
            obj({"foo": {"type": "number"}}),
            "com_acme_example_1_0_1_recovered_194359593",
            "Incompatible types in column foo old RedshiftVarchar(20) new RedshiftDouble",
        ),
        # "should make a recovery model when not null field is removed"
        (
            obj({"foo": {"type": "string", "maxLength": 20}}, ["foo"]),
            obj({"foo1": {"type": "number"}}),
            "com_acme_example_1_0_1_recovered_1202144068",
            "Making required column nullable foo",
        ),
        # "should not merge with no type change (char to larger size)"
        (
            obj({"foo": {"type": "string", "minLength": "12", "maxLength": "12"}}),
            obj({"foo": {"type": "string", "minLength": "15", "maxLength": "15"}}),
            None,
            "Incompatible types in column foo old RedshiftChar(12) new RedshiftChar(15)",
        ),
        # "should detect int to str conversion errors"
        (
            obj({"stringKey": {"type": "integer"}}),
            obj({"stringKey": {"type": "string"}}),
            None,
            "Incompatible types in column string_key old RedshiftBigInt new RedshiftVarchar(4096)",
        ),
    ],
)
def test_a_breaking_version_gets_a_recovery_table(
    first: dict[str, Any], later: dict[str, Any], table_name: str | None, reason: str
) -> None:
    merged = merge_shred_models(shred_model(ACME, first), shred_model(ACME_1, later))
    assert merged.is_recovery
    assert merged.breaking_changes == (reason,)
    assert merged.key == ACME_1
    assert merged.columns == shred_model(ACME_1, later).columns
    if table_name is not None:
        assert merged.table_name == table_name


def test_a_recovery_table_name_hashes_its_column_layout() -> None:
    # "render recovery table"
    recovery = ShredModel(ACME, shred_model(ACME, DUMMY_SCHEMA).columns, breaking_changes=("any",))
    assert recovery.table_name == "com_acme_example_1_0_0_recovered_235658654"


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
        ({"type": "string", "format": "date"}, {"type": "string", "format": "date"}),
        ({"type": "boolean"}, {"type": "boolean"}),
        (
            {"type": "string", "minLength": "12", "maxLength": "12"},
            {"type": "string", "minLength": 10, "maxLength": 10},
        ),
        ({"type": "string", "maxLength": 20}, {"type": "string", "maxLength": 10}),  # narrowing is ignored
        ({"type": "integer"}, {"type": "integer", "maximum": 100}),  # BIGINT holds a SMALLINT
        ({"type": "string", "maxLength": 30}, {"type": "string", "format": "date-time"}),
        ({"type": "number"}, {"type": "number", "multipleOf": 0.01}),
    ],
)
def test_compatible_versions_merge_without_changes(first: dict[str, Any], later: dict[str, Any]) -> None:
    table = shred_model(ACME, obj({"foo": first}))
    merged = merge_shred_models(table, shred_model(ACME_1, obj({"foo": later})))
    assert not merged.is_recovery
    assert merged.columns == table.columns
    assert merged.migrations == ()
    assert merged.key == ACME_1


def test_a_wider_varchar_replaces_the_column() -> None:
    # "should merge with varchar widening"
    table = shred_model(ACME, obj({"foo": {"type": "string", "maxLength": 20}}))
    merged = merge_shred_models(table, shred_model(ACME_1, obj({"foo": {"type": "string", "maxLength": 30}})))
    assert definition_lines(merged) == ['  "foo"            VARCHAR(30)   ENCODE ZSTD']
    (extension,) = merged.migrations
    assert isinstance(extension, VarcharExtension)
    assert (extension.key, extension.old.type, extension.new.type) == (ACME_1, varchar(20), varchar(30))


def test_a_family_appends_later_columns_as_nullable() -> None:
    # "should merge multiple schemas" and "... when only adding columns"
    family = shred_family(
        [
            (ACME_2, obj({"foo": {"type": "string", "maxLength": 30}})),
            (ACME, obj({"foo": {"type": "string", "maxLength": 20}})),
            (ACME_1, obj({"bar": {"type": "string", "maxLength": 10}})),
        ]
    )
    assert family.table.key == ACME_2
    assert definition_lines(family.table) == [
        '  "foo"            VARCHAR(30)   ENCODE ZSTD',
        '  "bar"            VARCHAR(10)   ENCODE ZSTD',
    ]
    assert [(type(m).__name__, m.key.version) for m in family.table.migrations] == [
        ("ColumnAddition", "1-0-1"),
        ("VarcharExtension", "1-0-2"),
    ]
    # rows of each version are written with that version's own columns (COPY names them)
    assert [c.name for c in family.model_for(ACME_1).columns] == ["bar"]

    adding = shred_family(
        [
            (ACME, obj({"foo": {"type": "string", "maxLength": 20}})),
            (ACME_1, obj({"zoo": {"type": "number"}})),
            (ACME_2, obj({"foo1": {"type": "string", "maxLength": 30}})),
        ]
    )
    assert definition_lines(adding.table) == [
        '  "foo"            VARCHAR(20)      ENCODE ZSTD',
        '  "zoo"            DOUBLE PRECISION ENCODE RAW',
        '  "foo1"           VARCHAR(30)      ENCODE ZSTD',
    ]


def test_a_family_skips_a_broken_version_in_the_middle() -> None:
    # "should merge multiple schemas skipping broken one in the middle" and
    # "... merged with broken one in the middle and it should get a recovery model"
    family = shred_family(
        [
            (ACME, obj({"foo": {"type": "string", "maxLength": 20}})),
            (ACME_1, obj({"foo": {"type": "number"}})),
            (ACME_2, obj({"foo": {"type": "string", "maxLength": 30}})),
        ]
    )
    assert definition_lines(family.table) == ['  "foo"            VARCHAR(30)   ENCODE ZSTD']
    assert family.table.key == ACME_2
    assert [m.table_name for m in family.recoveries] == ["com_acme_example_1_0_1_recovered_194359593"]
    assert family.model_for(ACME_1).is_recovery
    assert not family.model_for(ACME_2).is_recovery


def test_a_family_is_one_major_version_of_one_schema() -> None:
    with pytest.raises(EntityModelError, match="different families"):
        shred_family([(ACME, obj({})), (ACME._replace(model=2), obj({}))])
    with pytest.raises(EntityModelError, match="twice"):
        shred_family([(ACME, obj({})), (ACME, obj({}))])
    with pytest.raises(EntityModelError, match="at least one"):
        shred_family([])


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "strnig"},
        {"type": "object", "properties": []},
        {"type": "object", "required": "foo"},
        {"maximum": "12"},  # circe reads numeric strings for lengths and multipleOf, not for bounds
        {"maxLength": 1.5},
        {"items": True},
        [],
    ],
)
def test_a_schema_schema_ddl_cannot_decode_is_an_error(schema: Any) -> None:
    with pytest.raises(EntityModelError):
        shred_model(ACME, schema)


def test_names_are_snake_cased_as_schema_ddl_does() -> None:
    assert snake_case("sessionId") == "session_id"
    assert snake_case("URLPath") == "url_path"
    assert snake_case("os_is64Bit") == "os_is64_bit"
    assert snake_case("PerformanceNavigationTiming") == "performance_navigation_timing"
    assert snake_case("anything-a") == "anything_a"
    key = SchemaKey("com.snowplowanalytics.snowplow.media", "ad_break_end_event", "jsonschema", 1, 0, 0)
    assert (
        shred_model(key, {"type": "object"}).table_name == "com_snowplowanalytics_snowplow_media_ad_break_end_event_1"
    )
    key = SchemaKey("org.w3", "PerformanceTiming", "jsonschema", 1, 0, 0)
    assert shred_model(key, {"type": "object"}).table_name == "org_w3_performance_timing_1"


# --------------------------------------------------------------------------- bundled Iglu Central schemas
# Worked by hand from the rules above; the types also match the DDL igluctl generated for
# Iglu Central (its sql/ folder), whose encodings predate schema-ddl 0.27.


def test_web_page() -> None:
    (web_page,) = snowplow("web_page", "1-0-0")
    model = shred_model(*web_page)
    assert model.table_name == "com_snowplowanalytics_snowplow_web_page_1"
    assert layout(model) == [("id", "VARCHAR(4096)", False)]  # a pattern does not size a column


def test_client_session_evolves_over_three_versions() -> None:
    family = shred_family(snowplow("client_session", "1-0-0", "1-0-1", "1-0-2"))
    assert layout(family.table) == [
        ("session_id", "CHAR(36)", False),
        ("session_index", "INT", False),
        ("storage_mechanism", "VARCHAR(13)", False),
        ("user_id", "VARCHAR(4096)", False),  # 1-0-2's maxLength 36 is a narrowing, ignored
        ("previous_session_id", "CHAR(36)", True),
        ("first_event_id", "CHAR(36)", True),
        ("event_index", "INT", True),
        ("first_event_timestamp", "TIMESTAMP", True),
    ]
    assert [(m.key.version, m.column.name) for m in family.table.migrations if isinstance(m, ColumnAddition)] == [
        ("1-0-1", "first_event_id"),
        ("1-0-2", "event_index"),
        ("1-0-2", "first_event_timestamp"),
    ]
    assert [c.name for c in family.model_for(family.table.key).columns][:4] == [
        "session_id",
        "session_index",
        "storage_mechanism",
        "user_id",
    ]
    assert family.recoveries == ()


def test_link_click_and_its_array() -> None:
    family = shred_family(snowplow("link_click", "1-0-0", "1-0-1"))
    assert layout(family.table) == [
        ("target_url", "VARCHAR(4096)", False),
        ("element_classes", "VARCHAR(65535)", True),
        ("element_id", "VARCHAR(4096)", True),
        ("element_target", "VARCHAR(4096)", True),
        ("element_content", "VARCHAR(4096)", True),
    ]
    data = {"targetUrl": "https://a.example/", "elementClasses": ["x", "y"]}
    assert entity_cells(family.model_for(family.table.key), data) == (
        "https://a.example/",
        '["x","y"]',
        NULL_CELL,
        NULL_CELL,
        NULL_CELL,
    )


def test_geolocation_context_gains_a_timestamp_in_1_1_0() -> None:
    family = shred_family(snowplow("geolocation_context", "1-0-0", "1-1-0"))
    assert layout(family.table)[:2] == [
        ("latitude", "DOUBLE PRECISION", False),
        ("longitude", "DOUBLE PRECISION", False),
    ]
    assert layout(family.table)[-1] == ("timestamp", "BIGINT", True)
    assert all(c.encoding == "RAW" for c in family.table.columns if c.type == DOUBLE)


def test_mobile_context_keeps_the_1_0_1_layout_and_appends() -> None:
    family = shred_family(snowplow("mobile_context", "1-0-0", "1-0-1", "1-0-2", "1-0-3"))
    # sql/com.snowplowanalytics.snowplow/mobile_context_1.sql in Iglu Central (1-0-1): the same
    # eleven columns, in this order
    assert layout(family.table)[:11] == [
        ("device_manufacturer", "VARCHAR(4096)", False),
        ("device_model", "VARCHAR(4096)", False),
        ("os_type", "VARCHAR(4096)", False),
        ("os_version", "VARCHAR(4096)", False),
        ("android_idfa", "VARCHAR(4096)", True),
        ("apple_idfa", "VARCHAR(4096)", True),
        ("apple_idfv", "VARCHAR(4096)", True),
        ("carrier", "VARCHAR(4096)", True),
        ("open_idfa", "VARCHAR(4096)", True),
        ("network_technology", "VARCHAR(4096)", True),
        ("network_type", "VARCHAR(7)", True),
    ]
    added = {c.name: (c.type.sql, c.encoding) for c in family.table.columns[11:]}
    assert added["battery_level"] == ("SMALLINT", "ZSTD")
    assert added["low_power_mode"] == ("BOOLEAN", "RUNLENGTH")
    assert added["app_set_id"] == ("CHAR(36)", "ZSTD")
    assert added["scale"] == ("DOUBLE PRECISION", "RAW")
    assert all(c.nullable for c in family.table.columns[11:])


def test_a_media_schema() -> None:
    key, schema = bundled("iglu:com.snowplowanalytics.snowplow.media/session/jsonschema/1-0-0")
    model = shred_model(key, schema)
    assert model.table_name == "com_snowplowanalytics_snowplow_media_session_1"
    assert layout(model)[0] == ("media_session_id", "VARCHAR(256)", False)
    assert ("started_at", "TIMESTAMP", True) in layout(model)
    assert ("ad_breaks", "INT", True) in layout(model)
    assert ("time_played", "DOUBLE PRECISION", True) in layout(model)


def test_nested_objects_flatten_and_arrays_of_objects_stay_json() -> None:
    (flash,) = snowplow("flash_context", "1-0-0")
    assert layout(shred_model(*flash)) == [
        ("has_local_storage", "BOOLEAN", False),
        ("has_script_access", "BOOLEAN", False),
        ("is_debugger", "BOOLEAN", False),
        ("player_type", "VARCHAR(10)", False),
        ("version", "VARCHAR(4096)", False),
        ("domain_session_index", "DOUBLE PRECISION", True),
        ("domain_user_id", "VARCHAR(4096)", True),
        # stageSize requires width and height, but stageSize itself is optional
        ("stage_size.height", "BIGINT", True),
        ("stage_size.width", "BIGINT", True),
        ("user_fingerprint", "VARCHAR(4096)", True),
    ]
    model = shred_model(*flash)
    assert model.columns[7].path == ("stageSize", "height")
    (submit,) = snowplow("submit_form", "1-0-0")
    assert layout(shred_model(*submit)) == [
        ("form_id", "VARCHAR(4096)", False),
        ("elements", "VARCHAR(65535)", True),
        ("form_classes", "VARCHAR(65535)", True),
    ]


def test_consent_document_cells_match_rdb_loader() -> None:
    # rdb-loader common-transformer-stream processing-spec/1: consent_document rows are
    # metadata, then id, version, description, name
    (consent,) = snowplow("consent_document", "1-0-0")
    model = shred_model(*consent)
    rows = entity_rows(
        "4dbf79df-d708-4805-86c3-6de891c58484",
        1634156507595,
        contexts=json.dumps(
            {
                "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                "data": [
                    {"schema": consent[0].uri, "data": {"id": "i", "version": "v", "name": "c", "description": "d"}}
                ],
            }
        ),
    )
    (row,) = rows.rows
    assert row.metadata_cells + entity_cells(model, row.data) == (
        "com.snowplowanalytics.snowplow",
        "consent_document",
        "jsonschema",
        "1-0-0",
        "4dbf79df-d708-4805-86c3-6de891c58484",
        "2021-10-13 20:21:47.595",
        "events",
        '["events","consent_document"]',
        "events",
        "i",
        "v",
        "d",
        "c",
    )


# =========================================================================== entity rows
# rdb-loader common/transformation/Hierarchy.scala and EventUtils.scala

WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
UA = "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0"


def envelope(kind: str, data: Any) -> str:
    return json.dumps({"schema": f"iglu:com.snowplowanalytics.snowplow/{kind}/jsonschema/1-0-0", "data": data})


def test_rows_come_unstruct_first_then_derived_then_contexts() -> None:
    rows = entity_rows(
        "e1",
        0,
        contexts=envelope(
            "contexts", [{"schema": WEB_PAGE, "data": {"id": "p"}}, {"schema": WEB_PAGE, "data": {"id": "q"}}]
        ),
        unstruct_event=envelope("unstruct_event", {"schema": CLICK, "data": {"targetUrl": "u"}}),
        derived_contexts=envelope("contexts", [{"schema": UA, "data": {}}]),
    )
    assert rows.problems == ()
    assert [(r.source, r.position, r.key.name) for r in rows.rows] == [
        ("unstruct_event", 0, "link_click"),
        ("derived_contexts", 0, "ua_parser_context"),
        ("contexts", 0, "web_page"),
        ("contexts", 1, "web_page"),
    ]
    assert {(r.root_id, r.ref_root, r.ref_parent) for r in rows.rows} == {("e1", "events", "events")}
    assert rows.rows[0].ref_tree == '["events","link_click"]'
    assert rows.rows[3].data == {"id": "q"}
    assert rows.rows[0].metadata_cells[5] == "1970-01-01 00:00:00.000"


def test_unreadable_entities_are_problems_not_exceptions() -> None:
    rows = entity_rows(
        "e1",
        0,
        contexts=envelope(
            "contexts", [{"schema": "not-iglu", "data": {}}, {"data": {}}, {"schema": WEB_PAGE, "data": {"id": "p"}}]
        ),
        unstruct_event="{not json",
        derived_contexts=envelope("contexts", {"schema": UA}),
    )
    assert [r.key.name for r in rows.rows] == ["web_page"]
    assert rows.problems == (
        "unstruct_event: not JSON",
        "derived_contexts: data must be an array",
        "contexts[0]: 'not-iglu' is not an iglu: schema URI",
        "contexts[1]: not a self-describing entity (it needs a schema URI and data)",
    )


def test_an_envelope_without_data_has_no_entities() -> None:
    # the analytics SDK decodes a missing data as no entity
    assert entity_rows("e1", 0, contexts='{"schema": "x"}', unstruct_event='{"data": null}') == entity_rows("e1", 0)


def test_unresolved_entities_keep_their_json() -> None:
    (row,) = entity_rows(
        "e1", 0, contexts=envelope("contexts", [{"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {"a\tb": [1]}}])
    ).rows
    cells = unresolved_entity_cells(row)
    assert len(cells) == len(UNRESOLVED_ENTITY_COLUMNS)
    assert cells[:4] == ("com.acme", "x", "jsonschema", "1-0-0")
    assert cells[-1] == '{"a\\tb":[1]}'  # JSON escapes the tab itself, so the row stays one line


def test_identifier_problems() -> None:
    assert redshift_identifier_problem("a_field.b_field") is None
    assert redshift_identifier_problem("x" * 128) is not None
    assert redshift_identifier_problem("é" * 64) is not None  # 128 bytes
    assert redshift_identifier_problem('a"b') is not None
    assert redshift_identifier_problem("xmin") is not None
    assert redshift_identifier_problem("") is not None


# =========================================================================== Parquet: field types
# schema-ddl parquet/FieldSpec.scala and SuggestionSpec.scala (through lake_field, so names are
# normalised as the lake loader normalises them)

KEY = SchemaKey("com.acme", "top", "jsonschema", 1, 0, 0)


def shape(lake_type: LakeType) -> Any:
    """A type without accessors, to compare with schema-ddl's expectations."""
    if isinstance(lake_type, LakeStruct):
        return {f.name: (shape(f.type), f.nullable) for f in lake_type.fields}
    if isinstance(lake_type, LakeList):
        return [shape(lake_type.element), lake_type.element_nullable]
    return lake_type


def unstruct(schema: dict[str, Any]) -> Any:
    field = lake_field("unstruct_event", KEY, schema)
    assert field is not None and field.nullable
    return shape(field.type)


def member(schema: dict[str, Any]) -> tuple[LakeType, bool]:
    """The type of a required property, and whether it is nullable (it is only when its type admits null)."""
    field = lake_field("unstruct_event", KEY, obj({"x": schema}, ["x"]))
    assert field is not None and isinstance(field.type, LakeStruct)
    (x,) = field.type.fields
    return x.type, x.nullable


def test_objects_become_sorted_structs() -> None:
    # FieldSpec e1
    schema = obj(
        {
            "stringKey": {"type": "string", "maxLength": 500},
            "objectKey": obj(
                {
                    "nestedKey1": {"type": "string"},
                    "nestedKey2": {"type": ["integer", "null"]},
                    "nestedKey3": {"type": "boolean"},
                },
                ["nestedKey3"],
            ),
        }
    )
    assert unstruct(schema) == {
        "object_key": (
            {"nested_key1": (STRING, True), "nested_key2": (LONG, True), "nested_key3": (LAKE_BOOLEAN, False)},
            True,
        ),
        "string_key": (STRING, True),
    }


def test_numbers() -> None:
    # FieldSpec e2
    schema = obj(
        {
            "numeric1": {"type": "number"},
            "numeric2": {"type": "integer"},
            "numeric3": {"type": ["number", "null"]},
            "numeric4": {"type": ["integer", "null", "number"]},
        },
        ["numeric4", "numeric2"],
    )
    assert unstruct(schema) == {
        "numeric1": (LAKE_DOUBLE, True),
        "numeric2": (LONG, False),
        "numeric3": (LAKE_DOUBLE, True),
        "numeric4": (LAKE_DOUBLE, True),
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # FieldSpec e3, e4: arrays of objects; a nullable item type makes the elements nullable
        ({"type": "array", "items": obj({"foo": {"type": "string"}, "bar": {"type": "integer"}})}, False),
        (
            {
                "type": "array",
                "items": {
                    "type": ["object", "null"],
                    "properties": {"foo": {"type": "string"}, "bar": {"type": "integer"}},
                },
            },
            True,
        ),
    ],
)
def test_arrays_become_lists(schema: dict[str, Any], expected: bool) -> None:
    assert unstruct(schema) == [{"bar": (LONG, True), "foo": (STRING, True)}, expected]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (obj({"union": {"type": ["string", "integer"]}}), {"union": (JSON_TEXT, True)}),  # e5
        (obj({}, additionalProperties=True), JSON_TEXT),  # e6
        (obj({"union": {"type": ["string", "integer", "null"]}}, ["union"]), {"union": (JSON_TEXT, True)}),  # e7
        (obj({"imp": {"type": "array", "items": {}}}), {"imp": ([JSON_TEXT, True], True)}),  # e8
        (
            obj({"imp": {"type": ["array", "null"], "items": {"type": "boolean"}}}),
            {"imp": ([LAKE_BOOLEAN, False], True)},
        ),  # e9
        (
            obj(
                {
                    "objectKey": obj(
                        {
                            "nestedKey1": {"type": "string"},
                            "shouldBeRemoved": {"type": "object", "additionalProperties": False},
                        }
                    )
                }
            ),
            {"object_key": ({"nested_key1": (STRING, True)}, True)},
        ),  # e11
    ],
)
def test_json_fallbacks_and_dropped_members(schema: dict[str, Any], expected: Any) -> None:
    assert unstruct(schema) == expected


@pytest.mark.parametrize(
    "schema",
    [
        obj({}, additionalProperties=False),  # FieldSpec e10
        obj({"objectKey": obj({"shouldBeRemoved": {"type": "object", "additionalProperties": False}})}),  # e12
    ],
)
def test_a_schema_allowing_no_value_has_no_column(schema: dict[str, Any]) -> None:
    assert lake_field("unstruct_event", KEY, schema) is None
    assert lake_field("contexts", KEY, schema) is None


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # SuggestionSpec: timestamps, booleans, strings
        ({"type": "string", "format": "date"}, (LAKE_DATE, False)),
        ({"type": ["string", "null"], "format": "date-time"}, (LAKE_TIMESTAMP, True)),
        ({"type": "string", "format": "uuid"}, (STRING, False)),
        ({"type": ["boolean", "null"]}, (LAKE_BOOLEAN, True)),
        ({"type": ["null", "string"]}, (STRING, True)),
        # integers
        ({"type": "integer", "minimum": 0, "maximum": 10}, (INT, False)),
        ({"type": "integer", "minimum": -10, "maximum": 0}, (INT, False)),
        ({"type": "integer", "minimum": 0.1, "maximum": 10.1}, (INT, False)),
        ({"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 10}, (INT, False)),
        ({"type": ["number", "null"], "minimum": 0, "maximum": 10, "multipleOf": 10}, (INT, True)),
        ({"type": "integer"}, (LONG, False)),
        ({"type": "integer", "min": 5}, (LONG, False)),
        ({"type": "integer", "minimum": 0, "maximum": 2147483648}, (LONG, False)),
        ({"type": "integer", "minimum": -2147483649, "maximum": 0}, (LONG, False)),
        ({"type": "integer", "minimum": 0.5, "maximum": 2147483648.9}, (LONG, False)),
        ({"type": ["number", "integer"], "minimum": 0, "maximum": 2147483648, "multipleOf": 10}, (LONG, False)),
        ({"type": ["integer", "null"]}, (LONG, True)),
        # decimals
        ({"type": "integer", "minimum": 0, "maximum": 9223372036854775808}, (LakeDecimal(38, 0), False)),
        ({"type": "integer", "minimum": -9223372036854775809, "maximum": 0}, (LakeDecimal(38, 0), False)),
        ({"type": "number", "minimum": 0, "maximum": 500, "multipleOf": 0.01}, (LakeDecimal(9, 2), False)),
        ({"type": "number", "minimum": -500, "maximum": 0, "multipleOf": 0.01}, (LakeDecimal(9, 2), False)),
        ({"type": "number", "minimum": 0, "maximum": 2147483648, "multipleOf": 0.01}, (LakeDecimal(18, 2), False)),
        (
            {"type": "number", "minimum": 0, "maximum": 9223372036854775808, "multipleOf": 10},
            (LakeDecimal(38, 0), False),
        ),
        ({"type": "number", "multipleOf": 0.01}, (LAKE_DOUBLE, False)),  # no bounds: no precision
        # doubles
        ({"type": "number"}, (LAKE_DOUBLE, False)),
        ({"type": ["number", "integer"]}, (LAKE_DOUBLE, False)),
        ({"type": ["number", "null"]}, (LAKE_DOUBLE, True)),
        ({"type": ["number", "string"]}, (JSON_TEXT, False)),
        # enums
        ({"enum": ["x", "y", "z"]}, (STRING, False)),
        ({"enum": ["x", "y", "z", None]}, (STRING, True)),
        ({"enum": [1, 2, 3]}, (INT, False)),
        ({"enum": [1, 2, None, 3]}, (INT, True)),
        ({"enum": [0.1, 222, 3.3]}, (LakeDecimal(9, 1), False)),
        ({"enum": [0.1, None, 222, 3.3]}, (LakeDecimal(9, 1), True)),
        ({"enum": [0.1, "xyz"]}, (JSON_TEXT, False)),
        ({"enum": [0.1, None, "xyz"]}, (JSON_TEXT, True)),
        # no type at all: JSON, nullable
        ({}, (JSON_TEXT, True)),
    ],
)
def test_member_types_follow_schema_ddls_suggestions(schema: dict[str, Any], expected: tuple[LakeType, bool]) -> None:
    assert member(schema) == expected


def test_one_of_folds_into_a_union() -> None:
    # Mutate.noAlternatives: string-or-number alternatives widen to a union, stored as JSON;
    # alternative objects widen to one struct with the members of both
    assert member({"oneOf": [{"type": "string"}, {"type": "number"}]}) == (JSON_TEXT, False)
    either = member({"oneOf": [obj({"a": {"type": "string"}}), obj({"b": {"type": "integer"}})]})
    assert shape(either[0]) == {"a": (STRING, True), "b": (LONG, True)}


def canonical(schema: Any) -> Any:
    """A schema as Scala compares it: maps and unions as sets, absent keywords left out."""
    if isinstance(schema, JsonSchema):
        found = {}
        for name in (f.name for f in dataclasses.fields(JsonSchema)):  # a compiled class has no __slots__
            value = getattr(schema, name)
            if value is None:
                continue
            if name in ("properties", "pattern_properties"):
                value = {k: canonical(v) for k, v in value}
            elif name == "type":
                value = value if isinstance(value, str) else frozenset(value)
            elif name == "required":
                value = tuple(sorted(value))
            else:
                value = canonical(value)
            found[name] = value
        return found
    if isinstance(schema, tuple):
        return tuple(canonical(v) for v in schema)
    return schema


STRINGY = {"type": "string", "minLength": 150, "maxLength": 200, "pattern": "^[a-z0-9-]*$", "format": "uuid"}
SIMPLE = {
    "type": ["object", "null"],
    "description": "simple schema",
    "properties": {
        "numeric": {"description": "a number", "type": "number", "minimum": 150, "maximum": 200, "multipleOf": 10},
        "stringy": STRINGY,
        "listy": {"type": "array", "items": {"type": "number"}, "minItems": 2},
        "status": {"enum": ["HAPPY", "SAD"]},
    },
    "additionalProperties": False,
    "required": ["numeric", "stringy"],
}


def alternatives(keyword: str, *options: Any, **parent: Any) -> dict[str, Any]:
    return {**parent, keyword: list(options)}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # schema-ddl jsonschema/mutate/MutateSpec.scala, common1..5
        (SIMPLE, SIMPLE),
        (alternatives("oneOf", {"type": "string"}, {"type": "number"}), {"type": ["string", "number"]}),
        (
            alternatives("oneOf", {"enum": ["x", "y", "z"]}, {"enum": ["a", "b", "c"]}),
            {"enum": ["x", "y", "z", "a", "b", "c"]},
        ),
        (alternatives("anyOf", {"type": "string"}, {"type": "number"}), {"type": ["string", "number"]}),
        # numbers1, numbers2a, numbers2b, numbers3
        (
            alternatives(
                "oneOf",
                {"multipleOf": 0.3, "minimum": 0.1, "maximum": 100},
                {"multipleOf": 0.3, "minimum": 42.0, "maximum": 123.45},
                type="number",
            ),
            {"type": "number", "multipleOf": 0.3, "minimum": 0.1, "maximum": 123.45},
        ),
        (
            alternatives(
                "oneOf",
                {"multipleOf": 0.3, "minimum": 42.0, "maximum": 1000},
                type="number",
                multipleOf=0.3,
                minimum=0.1,
                maximum=12345,
            ),
            {"type": "number", "multipleOf": 0.3, "minimum": 42.0, "maximum": 1000},
        ),
        (
            alternatives(
                "oneOf",
                {"multipleOf": 0.3, "minimum": 0.1, "maximum": 12345},
                type="number",
                multipleOf=0.3,
                minimum=42.0,
                maximum=1000,
            ),
            {"type": "number", "multipleOf": 0.3, "minimum": 42.0, "maximum": 1000},
        ),
        (alternatives("oneOf", {"multipleOf": 0.3}, {"multipleOf": 0.7}, type="number"), {"type": "number"}),
        # strings1, strings2a, strings2b, strings3, strings4
        (
            alternatives(
                "oneOf", {"minLength": 5, "maxLength": 105}, {"minLength": 10, "maxLength": 90}, type="string"
            ),
            {"type": "string", "minLength": 5, "maxLength": 105},
        ),
        (
            alternatives("oneOf", {"minLength": 10, "maxLength": 90}, type="string", minLength=5, maxLength=105),
            {"type": "string", "minLength": 10, "maxLength": 90},
        ),
        (
            alternatives("oneOf", {"minLength": 5, "maxLength": 105}, type="string", minLength=10, maxLength=90),
            {"type": "string", "minLength": 10, "maxLength": 90},
        ),
        (
            alternatives(
                "oneOf",
                {"pattern": "^[a-z]*$", "format": "uuid"},
                {"pattern": "^[a-z]*$", "format": "uuid"},
                type="string",
            ),
            {"type": "string", "pattern": "^[a-z]*$", "format": "uuid"},
        ),
        (
            alternatives(
                "oneOf",
                {"pattern": "^[a-z]*$", "format": "uuid"},
                {"pattern": "^[0-9.]*$", "format": "ipv4"},
                type="string",
            ),
            {"type": "string"},
        ),
        # object1..object7
        (
            alternatives(
                "oneOf",
                {"properties": {"a": {"type": "string"}}},
                {"properties": {"b": {"type": "string"}}},
                type="object",
            ),
            obj({"a": {"type": "string"}, "b": {"type": "string"}}, additionalProperties=False),
        ),
        (
            alternatives(
                "oneOf",
                {"properties": {"a": {"type": "string"}}},
                {"properties": {"a": {"type": "number"}}},
                type="object",
            ),
            obj({"a": {"type": ["string", "number"]}}, additionalProperties=False),
        ),
        (
            alternatives(
                "oneOf",
                {"properties": {"s": {"type": "string", "minLength": 10, "maxLength": 100}}},
                {"properties": {"s": {"type": "string", "minLength": 5, "maxLength": 105}}},
                type="object",
                additionalProperties=False,
            ),
            obj({"s": {"type": "string", "minLength": 5, "maxLength": 105}}, additionalProperties=False),
        ),
        (
            alternatives(
                "oneOf",
                {"properties": {"n": {"type": "integer", "minimum": 10, "maximum": 100}}},
                {"properties": {"n": {"type": "integer", "minimum": 5, "maximum": 105}}},
                type="object",
                additionalProperties=False,
            ),
            obj({"n": {"type": "integer", "minimum": 5, "maximum": 105}}, additionalProperties=False),
        ),
        (
            alternatives(
                "oneOf",
                {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a", "b"]},
                {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]},
                {
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}},
                    "required": ["a", "c"],
                },
                type="object",
                additionalProperties=False,
            ),
            obj(
                {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}},
                ["a"],
                additionalProperties=False,
            ),
        ),
        ({"type": "object", "patternProperties": {"^A_": {"type": "number"}}}, {"type": "object"}),
        (
            alternatives(
                "oneOf",
                {"properties": {"a": {"enum": ["x", "y", "z"]}}},
                {"properties": {"a": {"enum": ["a", "b", "c"]}}},
                type="object",
            ),
            obj({"a": {"enum": ["x", "y", "z", "a", "b", "c"]}}, additionalProperties=False),
        ),
        # array1, array2, array3
        (
            alternatives("oneOf", {"items": {"type": "string"}}, {"items": {"type": "number"}}, type="array"),
            {"type": "array", "items": {"type": ["string", "number"]}},
        ),
        (
            alternatives("oneOf", {"maxItems": 42, "minItems": 10}, {"maxItems": 100, "minItems": 2}, type="array"),
            {"type": "array", "maxItems": 100, "minItems": 2},
        ),
        (
            alternatives(
                "oneOf",
                {"items": [{"type": "string"}], "additionalItems": False},
                {"items": [{"type": "string"}], "additionalItems": False},
                type="array",
            ),
            {"type": "array", "items": {"type": "string"}},
        ),
    ],
)
def test_schemas_mutate_for_storage_as_schema_ddl(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert canonical(schema_for_storage(parse_json_schema(schema))) == canonical(parse_json_schema(expected))


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("", ""),
        ("test1", "test1"),
        ("test1Test2Test3", "test1_test2_test3"),
        ("Test1Test2TEST3", "test1_test2_test3"),
        ("test1,test2.test3;test4", "test1_test2_test3_test4"),
        ("1test1,test2.test3;test4", "_1test1_test2_test3_test4"),
        ("_50test1,test2.test3;test4", "_50test1_test2_test3_test4"),
        ("_.test1,test2.test3;test4", "__test1_test2_test3_test4"),
        (",.;:", "____"),
        ("1test1,Test2Test3Test4.test5;test6", "_1test1_test2_test3_test4_test5_test6"),
    ],
)
def test_field_names_normalise_as_schema_ddl(name: str, normal: str) -> None:
    # FieldSpec e13
    assert normalize_field_name(name) == normal


def test_colliding_names_collapse_deterministically() -> None:
    # FieldSpec e14, e15, e16
    small = {"type": "integer", "minimum": 0, "maximum": 9}
    field = lake_field("unstruct_event", KEY, obj({"_ga": small, "__b": small, "_Ga": small}))
    assert field is not None and isinstance(field.type, LakeStruct)
    assert [(f.name, f.accessors) for f in field.type.fields] == [
        ("__b", frozenset({"__b"})),
        ("_ga", frozenset({"_ga", "_Ga"})),
    ]
    for order in (["xyz", "XYZ"], ["XYZ", "xyz"]):
        types = {"xyz": small, "XYZ": {"type": "string"}}
        field = lake_field("unstruct_event", KEY, obj({name: types[name] for name in order}))
        assert field is not None and isinstance(field.type, LakeStruct)
        assert field.type.fields == (LakeField("xyz", STRING, True, frozenset({"xyz", "XYZ"})),)
    field = lake_field(
        "unstruct_event", KEY, obj({n: {"type": "string"} for n in ("Apple", "cherry", "banana", "Damson")})
    )
    assert field is not None and isinstance(field.type, LakeStruct)
    assert [f.name for f in field.type.fields] == ["apple", "banana", "cherry", "damson"]


def test_column_names() -> None:
    media = SchemaKey("com.snowplowanalytics.snowplow.media", "ad_break_end_event", "jsonschema", 1, 0, 0)
    assert lake_column_name("contexts", media) == "contexts_com_snowplowanalytics_snowplow_media_ad_break_end_event_1"
    w3 = SchemaKey("org.w3", "PerformanceTiming", "jsonschema", 1, 0, 0)
    assert lake_column_name("contexts", w3) == "contexts_org_w3_performance_timing_1"
    button = SchemaKey("com.acme", "button_click", "jsonschema", 1, 0, 0)
    assert lake_column_name("unstruct_event", button) == "unstruct_event_com_acme_button_click_1"
    anything = SchemaKey("com.snowplowanalytics.iglu", "anything-a", "jsonschema", 1, 0, 0)
    assert lake_column_name("unstruct_event", anything) == "unstruct_event_com_snowplowanalytics_iglu_anything_a_1"


# =========================================================================== Parquet: lake families
# common-streams loaders-common transform/NonAtomicFieldsSpec.scala

BAD_EVOLUTION = SchemaKey("myvendor", "bad_schema_evolution", "jsonschema", 1, 0, 0)


def bad_evolution(version: int, properties: dict[str, Any]) -> tuple[SchemaKey, dict[str, Any]]:
    key = BAD_EVOLUTION._replace(addition=version)
    self_ = {"vendor": key.vendor, "name": key.name, "format": "jsonschema", "version": key.version}
    return key, {"$schema": SELF_DESC, "self": self_, "type": "object", "properties": properties, "required": ["col_a"]}


BAD_EVOLUTION_SCHEMAS = [
    bad_evolution(0, {"col_a": {"type": "string"}}),
    bad_evolution(1, {"col_a": {"type": "number"}}),
    bad_evolution(2, {"col_a": {"type": "boolean"}}),
    bad_evolution(3, {"col_a": {"type": "string"}, "col_b": {"type": "integer"}}),
]
COLUMN = "unstruct_event_myvendor_bad_schema_evolution_1"


def test_breaking_versions_get_recovered_columns_named_as_the_lake_loader_names_them() -> None:
    # recovery2, recovery3: the hashes are of schema-ddl's circe encoding of each schema
    family = lake_family("unstruct_event", BAD_EVOLUTION_SCHEMAS)
    assert family is not None
    assert family.field.name == COLUMN
    assert shape(family.field.type) == {"col_a": (STRING, False), "col_b": (LONG, True)}
    assert family.merged_versions == {(0, 0), (0, 3)}
    assert [(version, f.name, shape(f.type)) for version, f in family.recoveries] == [
        ((0, 1), f"{COLUMN}_recovered_1_0_1_e7cf2565", {"col_a": (LAKE_DOUBLE, False)}),
        ((0, 2), f"{COLUMN}_recovered_1_0_2_cacf6738", {"col_a": (LAKE_BOOLEAN, False)}),
    ]


def test_recovered_columns_only_for_versions_in_the_batch() -> None:
    # recovery1
    family = lake_family("unstruct_event", BAD_EVOLUTION_SCHEMAS[:3], versions_in_batch=[(0, 0)])
    assert family is not None and family.recoveries == ()
    assert family.merged_versions == {(0, 0)}


def test_the_schema_hash() -> None:
    assert lake_schema_hash(parse_json_schema(BAD_EVOLUTION_SCHEMAS[1][1])) == "e7cf2565"


def test_contexts_start_with_the_schema_version() -> None:
    # c1: a list of required structs, _schema_version first; c5: anything-a is a list of JSON
    field = lake_field("contexts", BAD_EVOLUTION, BAD_EVOLUTION_SCHEMAS[0][1])
    assert field == LakeField(
        "contexts_myvendor_bad_schema_evolution_1",
        LakeList(
            LakeStruct(
                (
                    LakeField("_schema_version", STRING, False, frozenset({"_schema_version"})),
                    LakeField("col_a", STRING, False, frozenset({"col_a"})),
                )
            ),
            False,
        ),
        True,
    )
    anything = bundled("iglu:com.snowplowanalytics.iglu/anything-a/jsonschema/1-0-0")
    assert lake_field("contexts", *anything) == LakeField(
        "contexts_com_snowplowanalytics_iglu_anything_a_1", LakeList(JSON_TEXT, True), True
    )
    assert lake_field("unstruct_event", *anything) == LakeField(
        "unstruct_event_com_snowplowanalytics_iglu_anything_a_1", JSON_TEXT, True
    )


def test_a_schema_without_values_has_no_lake_column() -> None:
    # ue4, c4: ad_break_end_event is an empty object allowing nothing else
    ad_break_end = bundled("iglu:com.snowplowanalytics.snowplow.media/ad_break_end_event/jsonschema/1-0-0")
    assert lake_family("unstruct_event", [ad_break_end]) is None
    assert lake_family("contexts", [ad_break_end]) is None


def test_a_version_without_values_is_left_out_of_the_family() -> None:
    # emptyProp (common-streams' test_empty_prop 1-0-0 and 1-0-1)
    key = SchemaKey("myvendor", "test_empty_prop", "jsonschema", 1, 0, 0)
    family = lake_family(
        "unstruct_event",
        [
            (key, obj({}, additionalProperties=False)),
            (key._replace(addition=1), obj({"myString": {"type": "string"}}, additionalProperties=False)),
        ],
    )
    assert family is not None
    assert family.merged_versions == {(0, 1)}
    assert family.field.type == LakeStruct((LakeField("my_string", STRING, True, frozenset({"myString"})),))


def test_a_leading_digit_is_prefixed() -> None:
    # ueDigit
    field = lake_field(
        "unstruct_event",
        SchemaKey("myvendor", "digit", "jsonschema", 1, 0, 0),
        obj({"1col_a": {"type": "string"}}, ["1col_a"]),
    )
    assert field is not None
    assert field.type == LakeStruct((LakeField("_1col_a", STRING, False, frozenset({"1col_a"})),))


def test_merging_keeps_member_order_and_appends() -> None:
    # schema-ddl parquet/MigrationSpec.scala e2, e3
    base = obj(
        {
            "stringKey": {"type": "string", "maxLength": 500},
            "objectKey": obj(
                {
                    "nestedKey1": {"type": "string"},
                    "nestedKey2": {"type": ["integer", "null"]},
                    "nestedKey3": {"type": "boolean"},
                }
            ),
        }
    )
    grown = json.loads(json.dumps(base))
    grown["properties"]["objectKey"]["properties"]["string2Key"] = {"type": "string", "maxLength": 500}
    source, target = lake_field("unstruct_event", KEY, base), lake_field("unstruct_event", KEY, grown)
    assert source is not None and target is not None
    assert merge_lake_fields(source, target).field == target
    changed = json.loads(json.dumps(base))
    changed["properties"]["objectKey"]["properties"]["nestedKey1"] = {"type": "integer"}
    other = lake_field("unstruct_event", KEY, changed)
    assert other is not None
    outcome = merge_lake_fields(source, other)
    assert outcome.field is None
    assert outcome.breaking_changes == ("Incompatible type change String to Long at /object_key/nested_key1",)


# --------------------------------------------------------------------------- bundled schemas, lake side
# rdb-loader common-transformer-stream processing-spec/4 (output/good/parquet/schema) records the
# Parquet schema schema-ddl gives these Iglu Central families; the lake loader adds _schema_version.


def context_members(*schemas: tuple[SchemaKey, dict[str, Any]]) -> Any:
    family = lake_family("contexts", schemas)
    assert family is not None
    assert isinstance(family.field.type, LakeList) and not family.field.type.element_nullable
    members = shape(family.field.type)[0]
    assert next(iter(members)) == "_schema_version"
    return {name: spec for name, spec in members.items() if name != "_schema_version"}


def test_lake_web_page_client_session_and_geolocation() -> None:
    assert context_members(*snowplow("web_page", "1-0-0")) == {"id": (STRING, False)}
    session = context_members(*snowplow("client_session", "1-0-0", "1-0-1"))
    assert list(session.items()) == [
        ("previous_session_id", (STRING, True)),
        ("session_id", (STRING, False)),
        ("session_index", (INT, False)),
        ("storage_mechanism", (STRING, False)),
        ("user_id", (STRING, False)),
        ("first_event_id", (STRING, True)),  # 1-0-1's member, appended
    ]
    geolocation = context_members(*snowplow("geolocation_context", "1-0-0"))
    assert geolocation == {
        "altitude": (LAKE_DOUBLE, True),
        "altitude_accuracy": (LAKE_DOUBLE, True),
        "bearing": (LAKE_DOUBLE, True),
        "latitude": (LAKE_DOUBLE, False),
        "latitude_longitude_accuracy": (LAKE_DOUBLE, True),
        "longitude": (LAKE_DOUBLE, False),
        "speed": (LAKE_DOUBLE, True),
    }


def test_lake_link_click_and_change_form() -> None:
    family = lake_family("unstruct_event", snowplow("link_click", "1-0-0", "1-0-1"))
    assert family is not None and family.field.name == "unstruct_event_com_snowplowanalytics_snowplow_link_click_1"
    assert list(shape(family.field.type).items()) == [
        ("element_classes", ([STRING, False], True)),
        ("element_id", (STRING, True)),
        ("element_target", (STRING, True)),
        ("target_url", (STRING, False)),
        ("element_content", (STRING, True)),
    ]
    assert context_members(*snowplow("change_form", "1-0-0")) == {
        "element_classes": ([STRING, False], True),
        "element_id": (STRING, False),
        "form_id": (STRING, False),
        "node_name": (STRING, False),
        "type": (STRING, True),
        "value": (STRING, True),
    }


def test_lake_mobile_context_and_a_nested_array_of_objects() -> None:
    family = lake_family("contexts", snowplow("mobile_context", "1-0-0", "1-0-1", "1-0-2", "1-0-3"))
    assert family is not None and family.recoveries == ()
    assert family.merged_versions == {(0, 0), (0, 1), (0, 2), (0, 3)}
    submit = lake_family("unstruct_event", snowplow("submit_form", "1-0-0"))
    assert submit is not None
    assert shape(submit.field.type) == {
        "elements": (
            [
                {
                    "name": (STRING, False),
                    "node_name": (STRING, False),
                    "type": (STRING, True),
                    "value": (STRING, True),
                },
                False,
            ],
            True,
        ),
        "form_classes": ([STRING, False], True),
        "form_id": (STRING, False),
    }


# =========================================================================== properties


def _bundled_jsonschemas() -> list[tuple[SchemaKey, dict[str, Any]]]:
    root = resources.files(DATA_PACKAGE).joinpath("iglu", "schemas")
    found = []
    for path in sorted(Path(str(root)).glob("*/*/jsonschema/*")):
        vendor, name, _, version = path.parts[-4:]
        key = SchemaKey.parse(f"iglu:{vendor}/{name}/jsonschema/{version}")
        assert key is not None
        found.append((key, json.loads(path.read_text("utf-8"))))
    return found


BUNDLED = _bundled_jsonschemas()
KINDS: tuple[LakeEntityKind, ...] = ("contexts", "unstruct_event")


def test_the_bundled_schemas_are_all_here() -> None:
    assert len(BUNDLED) > 180


@settings(max_examples=len(BUNDLED) * 2, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BUNDLED))
def test_every_bundled_schema_derives_with_valid_unique_names(bundled_schema: tuple[SchemaKey, dict[str, Any]]) -> None:
    key, schema = bundled_schema
    model = shred_model(key, schema)
    names = [c.name for c in model.all_columns]
    assert len(names) == len(set(names))
    for name in (*names, model.table_name):
        assert redshift_identifier_problem(name) is None, name
    nullable = [c.nullable for c in model.columns]
    assert nullable == sorted(nullable)  # NOT NULL first
    for kind in KINDS:
        field = lake_field(kind, key, schema)
        if field is not None:
            assert merge_lake_fields(field, field).field == field


_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=8))
_TYPES = st.sampled_from(["null", "boolean", "string", "integer", "number", "array", "object"])
_NAMES = st.text(alphabet="abXY_-1é", min_size=1, max_size=6)


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(_TYPES, st.lists(_TYPES, min_size=1, max_size=3)),
            "maxLength": st.integers(0, 70000),
            "minLength": st.integers(0, 20),
            "maximum": st.one_of(st.integers(-(2**70), 2**70), st.floats(-1e6, 1e6, allow_nan=False)),
            "minimum": st.integers(-(2**70), 2**70),
            "multipleOf": st.sampled_from([1, 10, 0.01, 0.5]),
            "format": st.sampled_from(["date-time", "date", "uuid", "ipv4", "email", "ivp6", "uri"]),
            "enum": st.lists(_JSON_SCALARS, min_size=1, max_size=4),
        },
    )
    return st.recursive(
        leaf,
        lambda children: st.fixed_dictionaries(
            {"type": st.sampled_from(["object", ["object", "null"], ["object", "string"]])},
            optional={
                "properties": st.dictionaries(_NAMES, children, max_size=4),
                "required": st.lists(_NAMES, max_size=3),
                "items": children,
                "oneOf": st.lists(children, min_size=1, max_size=2),
                "anyOf": st.lists(children, min_size=1, max_size=2),
                "additionalProperties": st.one_of(st.booleans(), children),
                "patternProperties": st.dictionaries(_NAMES, children, max_size=2),
            },
        ),
        max_leaves=12,
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_schemas(), st.dictionaries(_NAMES, _JSON_SCALARS, max_size=4))
def test_any_schema_derives_an_ordered_model_that_merges_with_itself(
    schema: dict[str, Any], data: dict[str, Any]
) -> None:
    model = shred_model(ACME, schema)
    keys = [(c.nullable, c.name.encode("utf-16-be")) for c in model.columns]
    assert keys == sorted(keys)
    assert len(entity_cells(model, data)) == len(model.columns)
    assume(len({c.name for c in model.columns}) == len(model.columns))
    merged = merge_shred_models(model, replace_key(model))
    assert (merged.columns, merged.migrations, merged.is_recovery) == (model.columns, (), False)
    for kind in KINDS:
        field = lake_field(kind, ACME, schema)
        if field is not None:
            assert merge_lake_fields(field, field).field == field


def replace_key(model: ShredModel) -> ShredModel:
    return ShredModel(ACME_1, model.columns)


@settings(max_examples=200)
@given(
    st.one_of(
        st.none(),
        st.text(max_size=40),
        st.builds(
            json.dumps,
            st.recursive(
                _JSON_SCALARS,
                lambda c: (
                    st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["schema", "data", "x"]), c, max_size=3)
                ),
            ),
        ),
    )
)
def test_entity_rows_never_raise(text: str | None) -> None:
    rows = entity_rows("e", 0, contexts=text, unstruct_event=text, derived_contexts=text)
    assert all(isinstance(p, str) for p in rows.problems)


@settings(max_examples=100)
@given(st.lists(st.dictionaries(st.sampled_from(["id", "x"]), _JSON_SCALARS, max_size=2), max_size=5))
def test_every_entity_of_a_valid_envelope_is_a_row(datas: list[dict[str, Any]]) -> None:
    text = envelope("contexts", [{"schema": WEB_PAGE, "data": d} for d in datas])
    rows = entity_rows("e", 0, contexts=text)
    assert rows.problems == ()
    assert [r.data for r in rows.rows] == datas
    assert [r.position for r in rows.rows] == list(range(len(datas)))
