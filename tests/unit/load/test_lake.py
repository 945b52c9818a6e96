"""Typed entity columns in Parquet, Snowplow lake-loader style (load.lake, wired into encode_parquet and finalize).

GIVEN events whose unstruct_event / contexts / derived_contexts JSON name Iglu schemas (the bundled
      Iglu Central ones, and custom ones in a folder registry)
WHEN the S3 sink's encoder or the local dataset's finalize writes them
THEN each family and major version has one typed column after the 131 canonical ones, with the
     lake loader's name, type and values; readers that unify schemas by name read files of one
     partition with different columns; what cannot be typed stays in the JSON columns only.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from load.dataset import EVENTS_DIR, STAGING_DIR, PartitionStager, finalize_partition
from load.lake import EntityFamily, arrow_field, column_caster, entity_layout
from load.parquet import arrow_schema, encode_parquet
from load.partitions import PartitionKey
from pipeline.config import load_config
from pipeline.entities import lake_field
from pipeline.iglu import Resolver, SchemaKey, resolver_from_settings

LOAD = load_config(environ={}).load
HOUR = PartitionKey("2024-11-15", 19)
HOUR_MS = 1731697200000
CANONICAL = len(arrow_schema())

WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
WEB_PAGE_COLUMN = "contexts_com_snowplowanalytics_snowplow_web_page_1"
BUTTON_COLUMN = "unstruct_event_com_acme_button_click_1"


# ------------------------------------------------------------------------------ helpers
def self_describing(vendor: str, name: str, version: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
        "self": {"vendor": vendor, "name": name, "format": "jsonschema", "version": version},
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


BUTTON_1_0_0 = self_describing("com.acme", "button_click", "1-0-0", {"id": {"type": "string"}}, required=["id"])
# 1-0-1 adds "action", which sorts before "id": alone its struct would be (action, id); merged
# onto 1-0-0, as the lake loader merges, the new member is appended: (id, action).
BUTTON_1_0_1 = self_describing(
    "com.acme", "button_click", "1-0-1", {"id": {"type": "string"}, "action": {"type": "string"}}, required=["id"]
)
# web_page 1-0-1 does not exist in Iglu Central: the folder adds it next to the bundled 1-0-0.
WEB_PAGE_1_0_1 = self_describing(
    "com.snowplowanalytics.snowplow",
    "web_page",
    "1-0-1",
    {"id": {"type": "string"}, "title": {"type": "string"}},
    required=["id"],
)


def registry(root: Path, *schemas: dict[str, Any]) -> Resolver:
    """A folder registry holding ``schemas``, asked before the bundled Iglu Central ones."""
    for schema in schemas:
        own = schema["self"]
        path = root / "schemas" / own["vendor"] / own["name"] / own["format"] / own["version"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema))
    return resolver_from_settings([str(root)], bundled=True, cache_size=100)


def bundled() -> Resolver:
    return resolver_from_settings([], bundled=True, cache_size=100)


def entity(uri: str, data: Any) -> dict[str, Any]:
    return {"schema": uri, "data": data}


def contexts(*items: dict[str, Any]) -> str:
    return json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": list(items)})


def unstruct(item: dict[str, Any]) -> str:
    return json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0", "data": item})


def page(page_id: str, version: str = "1-0-0", **extra: Any) -> dict[str, Any]:
    return entity(f"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/{version}", {"id": page_id, **extra})


def event(number: int, **columns: Any) -> dict[str, Any]:
    return {
        "event_id": f"00000000-0000-4000-8000-{number:012d}",
        "event_fingerprint": f"f{number}",
        "collector_tstamp": HOUR_MS + number,
        **columns,
    }


def table_of(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def typed_names(schema: pa.Schema) -> list[str]:
    return list(schema.names[CANONICAL:])


def finalize(dest: Path, events: list[dict[str, Any]], resolver: Resolver | None, config: Any = LOAD) -> pa.Table:
    stager = PartitionStager(dest / STAGING_DIR, "source", batch_rows=3)
    for item in events:
        stager.add(item)
    stager.close()
    fragments = sorted((dest / STAGING_DIR / HOUR.format()).glob("*.arrow"))
    finalize_partition(dest, HOUR, fragments, config, resolver=resolver)
    for fragment in fragments:
        fragment.unlink()
    return pq.read_table(dest / EVENTS_DIR / HOUR.format())


def part_bytes(dest: Path) -> dict[str, bytes]:
    folder = dest / EVENTS_DIR / HOUR.format()
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------ columns and values
def test_a_web_page_context_becomes_a_list_of_structs_with_its_schema_version() -> None:
    events = [event(1, contexts=contexts(page("a1"))), event(2)]
    table = table_of(encode_parquet(events, LOAD, bundled()))
    assert table.schema.names[:CANONICAL] == arrow_schema().names
    element = pa.struct([pa.field("_schema_version", pa.string(), False), pa.field("id", pa.string(), False)])
    assert table.schema.field(WEB_PAGE_COLUMN).type == pa.list_(pa.field("element", element, False))
    assert table.column(WEB_PAGE_COLUMN).to_pylist() == [[{"_schema_version": "1-0-0", "id": "a1"}], None]
    assert json.loads(table.column("contexts")[0].as_py())["data"][0]["data"] == {"id": "a1"}  # JSON kept


def test_a_custom_unstruct_event_becomes_a_struct_of_its_merged_versions(tmp_path: Path) -> None:
    resolver = registry(tmp_path, BUTTON_1_0_0, BUTTON_1_0_1)
    old = entity("iglu:com.acme/button_click/jsonschema/1-0-0", {"id": "cta"})
    new = entity("iglu:com.acme/button_click/jsonschema/1-0-1", {"id": "buy", "action": "Buy now"})
    table = table_of(
        encode_parquet([event(1, unstruct_event=unstruct(old)), event(2, unstruct_event=unstruct(new))], LOAD, resolver)
    )
    assert table.schema.field(BUTTON_COLUMN).type == pa.struct(
        [pa.field("id", pa.string(), False), pa.field("action", pa.string(), True)]
    )
    assert table.column(BUTTON_COLUMN).to_pylist() == [
        {"id": "cta", "action": None},
        {"id": "buy", "action": "Buy now"},
    ]


def test_a_column_merges_the_versions_up_to_the_newest_present_and_no_further(tmp_path: Path) -> None:
    resolver = registry(tmp_path, BUTTON_1_0_0, BUTTON_1_0_1)
    old = unstruct(entity("iglu:com.acme/button_click/jsonschema/1-0-0", {"id": "cta"}))
    new = unstruct(entity("iglu:com.acme/button_click/jsonschema/1-0-1", {"id": "buy"}))
    only_old = table_of(encode_parquet([event(1, unstruct_event=old)], LOAD, resolver)).schema.field(BUTTON_COLUMN)
    only_new = table_of(encode_parquet([event(1, unstruct_event=new)], LOAD, resolver)).schema.field(BUTTON_COLUMN)
    both = table_of(encode_parquet([event(1, unstruct_event=old), event(2, unstruct_event=new)], LOAD, resolver))
    assert only_old.type == pa.struct([pa.field("id", pa.string(), False)])  # 1-0-1 is not probed past the newest
    # 1-0-0 is probed though absent: the same newest version gives the same (merged) column
    assert only_new == both.schema.field(BUTTON_COLUMN)
    assert only_new.type == pa.struct([pa.field("id", pa.string(), False), pa.field("action", pa.string(), True)])


def test_derived_contexts_go_to_the_contexts_columns_after_the_contexts() -> None:
    derived = contexts(page("from-enrichment"))
    table = table_of(
        encode_parquet([event(1, contexts=contexts(page("sent")), derived_contexts=derived)], LOAD, bundled())
    )
    ids = [item["id"] for item in table.column(WEB_PAGE_COLUMN)[0].as_py()]
    assert ids == ["sent", "from-enrichment"]
    only_derived = table_of(encode_parquet([event(1, derived_contexts=derived)], LOAD, bundled()))
    assert only_derived.column(WEB_PAGE_COLUMN).to_pylist() == [[{"_schema_version": "1-0-0", "id": "from-enrichment"}]]


def test_typed_columns_follow_the_canonical_ones_sorted_by_name(tmp_path: Path) -> None:
    resolver = registry(tmp_path, BUTTON_1_0_0)
    link = entity(
        "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1", {"targetUrl": "https://a.example/"}
    )
    events = [
        event(1, unstruct_event=unstruct(entity("iglu:com.acme/button_click/jsonschema/1-0-0", {"id": "x"}))),
        event(2, unstruct_event=unstruct(link), contexts=contexts(page("p"))),
    ]
    names = typed_names(table_of(encode_parquet(events, LOAD, resolver)).schema)
    assert names == [
        WEB_PAGE_COLUMN,
        BUTTON_COLUMN,
        "unstruct_event_com_snowplowanalytics_snowplow_link_click_1",
    ]
    assert names == sorted(names)


def test_an_entity_without_a_schema_gets_no_column_and_the_event_is_kept() -> None:
    unknown = entity("iglu:com.acme/nowhere/jsonschema/1-0-0", {"x": 1})
    events = [event(1, contexts=contexts(unknown, page("p1"))), event(2, unstruct_event=unstruct(unknown))]
    table = table_of(encode_parquet(events, LOAD, bundled()))
    assert typed_names(table.schema) == [WEB_PAGE_COLUMN]
    assert table.num_rows == 2
    assert table.column(WEB_PAGE_COLUMN).to_pylist() == [[{"_schema_version": "1-0-0", "id": "p1"}], None]
    assert json.loads(table.column("unstruct_event")[1].as_py())["data"] == unknown


def test_a_version_no_registry_has_gets_no_typed_value_while_its_family_keeps_its_column(tmp_path: Path) -> None:
    # 1-0-0 resolves (bundled), 1-0-7 does not: only the 1-0-0 context is typed
    table = table_of(
        encode_parquet([event(1, contexts=contexts(page("known"), page("unknown", version="1-0-7")))], LOAD, bundled())
    )
    assert table.column(WEB_PAGE_COLUMN).to_pylist() == [[{"_schema_version": "1-0-0", "id": "known"}]]
    # with only the unknown version present, the probed 1-0-0 would make a column of nulls: none
    alone = table_of(encode_parquet([event(1, contexts=contexts(page("unknown", version="1-0-7")))], LOAD, bundled()))
    assert typed_names(alone.schema) == []


def test_a_schema_that_cannot_be_modelled_gets_no_column(tmp_path: Path) -> None:
    broken = {**self_describing("com.acme", "broken", "1-0-0", {}), "properties": {"x": {"type": "nonsense"}}}
    resolver = registry(tmp_path, broken)
    table = table_of(
        encode_parquet(
            [event(1, contexts=contexts(entity("iglu:com.acme/broken/jsonschema/1-0-0", {"x": 1})))], LOAD, resolver
        )
    )
    assert typed_names(table.schema) == []


TYPES = self_describing(
    "com.acme",
    "typed",
    "1-0-0",
    {
        "name": {"type": "string"},
        "count": {"type": "integer", "minimum": 0, "maximum": 1000},
        "big": {"type": "integer"},
        "ratio": {"type": "number"},
        "price": {"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 10000},
        "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"},
        "flag": {"type": "boolean"},
        "anything": {},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    required=["name"],
)
TYPED_COLUMN = "unstruct_event_com_acme_typed_1"


def test_values_are_cast_to_timestamps_dates_decimals_and_json_text(tmp_path: Path) -> None:
    resolver = registry(tmp_path, TYPES)
    data = {
        "name": "n",
        "count": 7.0,
        "big": 2**40,
        "ratio": 1,
        "price": 19.9,
        "day": "2024-02-29",
        "at": "2024-11-15T19:30:00.1234567+01:00",
        "flag": True,
        "anything": {"é": [1, None]},
        "tags": ["a", "b"],
    }
    table = table_of(
        encode_parquet(
            [event(1, unstruct_event=unstruct(entity("iglu:com.acme/typed/jsonschema/1-0-0", data)))], LOAD, resolver
        )
    )
    column = table.schema.field(TYPED_COLUMN).type
    types = {column.field(i).name: column.field(i).type for i in range(column.num_fields)}
    assert types == {
        "anything": pa.string(),
        "at": pa.timestamp("us", tz="UTC"),
        "big": pa.int64(),
        "count": pa.int32(),
        "day": pa.date32(),
        "flag": pa.bool_(),
        "name": pa.string(),
        "price": pa.decimal128(9, 2),
        "ratio": pa.float64(),
        "tags": pa.list_(pa.field("element", pa.string(), False)),
    }
    [value] = table.column(TYPED_COLUMN).to_pylist()
    assert value == {
        "anything": '{"é":[1,null]}',
        "at": datetime(2024, 11, 15, 18, 30, 0, 123456, tzinfo=UTC),  # offset applied, truncated to µs
        "big": 2**40,
        "count": 7,
        "day": date(2024, 2, 29),
        "flag": True,
        "name": "n",
        "price": Decimal("19.90"),
        "ratio": 1.0,
        "tags": ["a", "b"],
    }


def test_a_value_that_does_not_cast_is_null_at_the_nearest_nullable_level(tmp_path: Path) -> None:
    resolver = registry(tmp_path, TYPES)

    def typed(data: dict[str, Any]) -> Any:
        row = event(1, unstruct_event=unstruct(entity("iglu:com.acme/typed/jsonschema/1-0-0", data)))
        table = table_of(encode_parquet([row], LOAD, resolver))
        assert json.loads(table.column("unstruct_event")[0].as_py())["data"]["data"] == data  # the JSON keeps it
        return table.column(TYPED_COLUMN)[0].as_py()

    bad_members = {
        "name": "ok",
        "count": 1001.5,  # not whole
        "price": 1.005,  # would need rounding
        "day": "2023-02-29",  # no such day
        "at": "2024-11-15T19:30:00",  # no offset: no instant
        "flag": "true",  # a string, not a boolean
        "tags": ["a", 1],  # a required item that is not a string: the list is null
    }
    value = typed(bad_members)
    assert value["name"] == "ok"
    assert all(value[name] is None for name in ("count", "price", "day", "at", "flag", "tags"))
    assert typed({"name": 42}) is None  # a required member that does not cast: the whole struct


def test_a_context_that_does_not_cast_nulls_its_family_list_only() -> None:
    row = event(1, contexts=contexts(page("ok"), page(123)))  # type: ignore[arg-type]
    table = table_of(encode_parquet([row], LOAD, bundled()))
    assert table.column(WEB_PAGE_COLUMN).to_pylist() == [None]  # items are required: no partial list
    assert len(json.loads(table.column("contexts")[0].as_py())["data"]) == 2


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        ({"type": "integer", "minimum": 0, "maximum": 10}, 2**31, None),  # out of int32
        ({"type": "integer"}, 2**63, None),  # out of int64
        ({"type": "integer"}, True, None),  # a boolean is not a number
        ({"type": "number"}, "1.5", None),
        ({"type": "string", "format": "date-time"}, "2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ({"type": "string", "format": "date-time"}, "2024-01-01t00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
        ({"type": "string", "format": "date-time"}, "2024-01-01 00:00:00Z", None),
        ({"type": "string", "format": "date-time"}, "2024-01-01T00:00:00+19:00", None),
        ({"type": "string", "format": "date"}, "20240101", None),
        ({"type": "string", "format": "date"}, "２０２４-01-01", None),  # full-width digits
        # decimal(9, 2): 12345678.50 needs 10 digits (schema-ddl checks the unscaled 9 and Spark overflows)
        ({"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 100}, 12345678.5, None),
        ({"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 100}, 1000.0, Decimal("1000.00")),
        ({"type": "number", "multipleOf": 0.01, "minimum": -1, "maximum": 1}, -0.5, Decimal("-0.50")),
        ({"type": "string"}, "\ud800", None),  # a lone surrogate Arrow cannot store
    ],
)
def test_scalar_casts(schema: dict[str, Any], value: Any, expected: Any) -> None:
    field = lake_field(
        "unstruct_event",
        SchemaKey("com.acme", "x", "jsonschema", 1, 0, 0),
        {"type": "object", "properties": {"v": schema}},
    )
    assert field is not None
    cast = column_caster(field)
    result = cast({"v": value})
    array = pa.array([result], type=arrow_field(field).type)  # whatever the cast gives, Arrow takes it
    assert array.to_pylist() == [{"v": expected}]


def test_a_breaking_version_in_the_batch_gets_a_recovered_column(tmp_path: Path) -> None:
    counted = self_describing("com.acme", "counter", "1-0-0", {"n": {"type": "integer"}})
    as_text = self_describing("com.acme", "counter", "1-0-1", {"n": {"type": "string"}})
    resolver = registry(tmp_path, counted, as_text)
    old = contexts(entity("iglu:com.acme/counter/jsonschema/1-0-0", {"n": 1}))
    new = contexts(entity("iglu:com.acme/counter/jsonschema/1-0-1", {"n": "one"}))
    table = table_of(encode_parquet([event(1, contexts=old), event(2, contexts=new)], LOAD, resolver))
    [merged, recovered] = typed_names(table.schema)
    assert merged == "contexts_com_acme_counter_1"
    assert recovered.startswith("contexts_com_acme_counter_1_recovered_1_0_1_")
    assert table.column(merged).to_pylist() == [[{"_schema_version": "1-0-0", "n": 1}], None]
    assert table.column(recovered).to_pylist() == [None, [{"_schema_version": "1-0-1", "n": "one"}]]
    only_old = table_of(encode_parquet([event(1, contexts=old)], LOAD, resolver))
    assert typed_names(only_old.schema) == [merged]  # no recovered column for a version not in the batch


def test_families_whose_column_names_collide_keep_the_first_one(tmp_path: Path) -> None:
    dotted = self_describing("com.acme", "thing", "1-0-0", {"a": {"type": "string"}})
    underscored = self_describing("com_acme", "thing", "1-0-0", {"b": {"type": "integer"}})
    resolver = registry(tmp_path, dotted, underscored)
    layout = entity_layout(
        resolver,
        {
            EntityFamily("contexts", "com_acme", "thing", "jsonschema", 1): {(0, 0)},
            EntityFamily("contexts", "com.acme", "thing", "jsonschema", 1): {(0, 0)},
        },
    )
    [column] = layout.columns
    assert column.name == "contexts_com_acme_thing_1" and column.family.vendor == "com.acme"


# ------------------------------------------------------------------------------ switches and sameness
def test_typed_entities_off_or_no_resolver_writes_the_canonical_schema_only(tmp_path: Path) -> None:
    events = [event(1, contexts=contexts(page("p")))]
    off = replace(LOAD, typed_entities=False)
    assert table_of(encode_parquet(events, off, bundled())).schema.names == arrow_schema().names
    assert table_of(encode_parquet(events, LOAD, None)).schema.names == arrow_schema().names
    assert finalize(tmp_path / "off", events, bundled(), off).schema.names == arrow_schema().names


def test_events_without_entities_give_the_same_bytes_as_without_typed_columns(tmp_path: Path) -> None:
    events = [event(i, page_title=f"t{i}") for i in range(5)]
    off = replace(LOAD, typed_entities=False)
    assert encode_parquet(events, LOAD, bundled()) == encode_parquet(events, off, bundled())
    finalize(tmp_path / "on", events, bundled())
    finalize(tmp_path / "off", events, bundled(), off)
    assert part_bytes(tmp_path / "on") == part_bytes(tmp_path / "off")


# ------------------------------------------------------------------------------ finalize
def test_finalize_types_the_partition_and_rewrites_identical_bytes(tmp_path: Path) -> None:
    small = replace(LOAD, row_group_size=2, max_rows_per_file=3)
    events = [event(i, contexts=contexts(page(f"p{i}"))) if i % 2 else event(i) for i in range(7)]
    table = finalize(tmp_path, events, bundled(), small)
    assert table.num_rows == 7
    ids = [None if v is None else v[0]["id"] for v in table.column(WEB_PAGE_COLUMN).to_pylist()]
    assert ids == [None, "p1", None, "p3", None, "p5", None]
    first = part_bytes(tmp_path)
    assert len(first) == 3
    assert all(
        WEB_PAGE_COLUMN in pq.read_schema(io.BytesIO(b)).names for b in first.values()
    )  # one schema per partition
    finalize_partition(tmp_path, HOUR, [], small, resolver=bundled())  # the existing parts again, nothing new
    assert part_bytes(tmp_path) == first


def test_finalize_derives_typed_columns_again_from_the_json_never_from_existing_parts(tmp_path: Path) -> None:
    # GIVEN an existing part whose typed column disagrees with its JSON (an older registry, a bug)
    folder = tmp_path / EVENTS_DIR / HOUR.format()
    folder.mkdir(parents=True)
    stale = pa.table(
        {
            "event_id": [event(1)["event_id"]],
            "event_fingerprint": ["f1"],
            "collector_tstamp": pa.array([HOUR_MS + 1], pa.timestamp("ms", tz="UTC")),
            "contexts": [contexts(page("truth"))],
            WEB_PAGE_COLUMN: pa.array([[{"_schema_version": "9-9-9", "id": "stale"}]]),
            "contexts_com_acme_gone_1": pa.array([["x"]]),
        }
    )
    pq.write_table(stale, folder / "part-00000.parquet")
    # WHEN the partition is finalized with nothing new
    finalize_partition(tmp_path, HOUR, [], LOAD, resolver=bundled())
    # THEN the typed columns are the JSON's
    table = pq.read_table(folder)
    assert typed_names(table.schema) == [WEB_PAGE_COLUMN]
    assert table.column(WEB_PAGE_COLUMN).to_pylist() == [[{"_schema_version": "1-0-0", "id": "truth"}]]


def test_finalize_types_only_the_rows_it_keeps(tmp_path: Path) -> None:
    # a natural duplicate that loses (later collector time) brings a family no kept row has
    kept = event(1, contexts=contexts(page("kept")))
    loser = {
        **kept,
        "collector_tstamp": HOUR_MS + 999,
        "unstruct_event": unstruct(
            entity(
                "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1", {"targetUrl": "https://x.example/"}
            )
        ),
    }
    table = finalize(tmp_path, [kept, loser], bundled())
    assert table.num_rows == 1
    assert typed_names(table.schema) == [WEB_PAGE_COLUMN]


def test_finalize_output_does_not_depend_on_bucketing_with_typed_columns(tmp_path: Path) -> None:
    events = [event(i, contexts=contexts(page(f"p{i}"))) for i in range(20)] + [
        event(3, contexts=contexts(page("dup")))
    ]
    outputs = []
    for bucket_rows in (2, 10**9):
        dest = tmp_path / str(bucket_rows)
        stager = PartitionStager(dest / STAGING_DIR, "source", batch_rows=4)
        for item in events:
            stager.add(item)
        stager.close()
        fragments = sorted((dest / STAGING_DIR / HOUR.format()).glob("*.arrow"))
        finalize_partition(dest, HOUR, fragments, LOAD, bucket_rows=bucket_rows, resolver=bundled())
        outputs.append(part_bytes(dest))
    assert outputs[0] == outputs[1]


# ------------------------------------------------------------------------------ readers
def test_files_of_one_partition_with_different_columns_read_together(tmp_path: Path) -> None:
    # GIVEN three files of one partition written at different times: web_page 1-0-0 only, then
    # 1-0-1 (one more member), then no entity at all
    resolver = registry(tmp_path / "registry", WEB_PAGE_1_0_1)
    folder = tmp_path / "events" / HOUR.format()
    folder.mkdir(parents=True)
    batches = [
        [event(1, contexts=contexts(page("old")))],
        [event(2, contexts=contexts(page("new", version="1-0-1", title="Home")))],
        [event(3, page_title="no entity")],
    ]
    for index, events in enumerate(batches):
        (folder / f"batch-{index}.parquet").write_bytes(encode_parquet(events, LOAD, resolver))
    schemas = [pq.read_schema(path) for path in sorted(folder.iterdir())]
    assert [typed_names(s) for s in schemas] == [[WEB_PAGE_COLUMN], [WEB_PAGE_COLUMN], []]
    assert schemas[0].field(WEB_PAGE_COLUMN) != schemas[1].field(WEB_PAGE_COLUMN)
    expected = [
        ("00000000-0000-4000-8000-000000000001", "old", None),
        ("00000000-0000-4000-8000-000000000002", "new", "Home"),
        ("00000000-0000-4000-8000-000000000003", None, None),
    ]
    # WHEN pyarrow reads them with the unified schema
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    table = ds.dataset(tmp_path / "events", schema=unified, partitioning="hive").to_table()
    pages = {r["event_id"]: r[WEB_PAGE_COLUMN] for r in table.to_pylist()}
    got = [(k, v and v[0]["id"], v and v[0]["title"]) for k, v in sorted(pages.items())]
    # THEN every file's rows are there with their values
    assert got == expected
    # AND DuckDB reads them by name and indexes into the list directly
    rows = duckdb.execute(
        f"SELECT event_id, {WEB_PAGE_COLUMN}[1].id, {WEB_PAGE_COLUMN}[1].title "
        f"FROM read_parquet('{tmp_path}/events/**/*.parquet', union_by_name = true, hive_partitioning = true) "
        "ORDER BY event_id"
    ).fetchall()
    assert rows == expected


def test_the_entity_reader_gives_each_event_the_entities_of_its_columns_in_order() -> None:
    """One reader serves both finalize passes; an event's entities are its columns' in column order,
    as reading the three texts at once gives, and a full memo changes nothing but time."""
    from load.lake import EntityReader, _entities

    page = {"schema": WEB_PAGE, "data": {"id": "a4c6e2b1-3d5f-4a7b-9c1e-2f3a4b5c6d7e"}}
    other = {"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": {"n": 1}}
    rows = [
        (unstruct({"schema": "iglu:com.acme/click/jsonschema/1-0-0", "data": {"x": 1}}), contexts(page, other), None),
        (None, contexts(page), contexts(other)),
        (None, None, None),
        ("not json", contexts(other), "{}"),
    ]
    for reader in (EntityReader(), EntityReader(max_entries=1)):
        for _ in range(2):  # the second pass reads from the memo
            assert [reader.row(row) for row in rows] == [_entities(*row) for row in rows]
