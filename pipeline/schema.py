"""The canonical event, declared once.

The ordered field table lives in ``canonical_event.tsv`` beside this module (a copy of
Snowplow's atomic event: name, SDK type, Redshift type, tracker parameters).  Everything
else -- the Avro schema, the Arrow schema (``load.parquet``), the JSON shape and the
validator -- is derived from :data:`FIELDS`; nothing retypes the field list.

Inside the pipeline a canonical event is a plain ``dict`` holding only its non-null
fields.  Timestamps are integer epoch **milliseconds** (UTC), the resolution Snowplow
keeps; :func:`format_tstamp` renders them for JSON.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

FieldType = Literal["string", "tstamp", "int", "double", "bool", "contexts", "unstruct"]
CanonicalEvent = dict[str, Any]
"""A canonical event: field name to value, absent key meaning null."""

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
MIN_EPOCH_MS: Final = 0
"""1970-01-01T00:00:00.000Z, the earliest timestamp an event may hold."""
MAX_EPOCH_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the latest: Python's datetime (and so pyarrow's conversion to it) ends there."""

# The reference table gives se_value the SDK type "string", but its column is DOUBLE PRECISION
# in Redshift and a Double in Snowplow's Scala SDK and lake loaders: we follow the column.
_TYPE_OVERRIDES: Final[dict[str, str]] = {"se_value": "double"}

_WIDTH = re.compile(r"^(?:var)?char\((\d+)\)$")
_VALID_TYPES: Final = frozenset({"string", "tstamp", "int", "double", "bool", "contexts", "unstruct"})


_DECIMAL_TYPE: Final = re.compile(r"dec(?:imal)?\((\d+),(\d+)\)\Z")


@dataclass(frozen=True, slots=True)
class Field:
    """One column of the canonical event."""

    index: int
    name: str
    type: FieldType
    redshift_type: str
    """Redshift column type as Snowplow declares it, or '' for JSON columns shredded elsewhere."""
    max_bytes: int | None
    """Maximum UTF-8 byte length for string columns (Redshift VARCHAR widths count bytes)."""
    params: tuple[str, ...]
    """Tracker-protocol parameters that feed this field."""

    @property
    def in_atomic_table(self) -> bool:
        """False for the JSON columns (contexts, unstruct_event, derived_contexts)."""
        return bool(self.redshift_type)

    @property
    def redshift_is_char(self) -> bool:
        return self.redshift_type.startswith("char(")

    @property
    def decimal(self) -> tuple[int, int] | None:
        """(precision, scale) of a money column (``dec(18,2)``): a decimal in Parquet as in Redshift."""
        match = _DECIMAL_TYPE.match(self.redshift_type.replace(" ", ""))
        return (int(match.group(1)), int(match.group(2))) if match else None


def _load_fields() -> tuple[Field, ...]:
    text = resources.files("pipeline").joinpath("canonical_event.tsv").read_text("utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    header, body = rows[0], rows[1:]
    if header[:5] != ["idx", "field", "sdk_type", "redshift_type", "payload_params"]:
        raise ValueError(f"unexpected canonical_event.tsv header: {header}")
    fields: list[Field] = []
    for row in body:
        row = row + [""] * (5 - len(row))
        idx, name, sdk_type, redshift_type, params = row[:5]
        sdk_type = _TYPE_OVERRIDES.get(name, sdk_type)
        if sdk_type not in _VALID_TYPES:
            raise ValueError(f"field {name}: unknown type {sdk_type!r}")
        if redshift_type.startswith("("):  # "(shredded; not in atomic.events)"
            redshift_type = ""
        width = _WIDTH.match(redshift_type.replace(" ", ""))
        fields.append(
            Field(
                index=int(idx),
                name=name,
                type=sdk_type,  # type: ignore[arg-type]
                redshift_type=redshift_type,
                max_bytes=int(width.group(1)) if width else None,
                params=tuple(p for p in params.split(",") if p),
            )
        )
    if [f.index for f in fields] != list(range(1, len(fields) + 1)):
        raise ValueError("canonical_event.tsv indices must be 1..N in order")
    return tuple(fields)


FIELDS: Final[tuple[Field, ...]] = _load_fields()
FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FIELDS)
BY_NAME: Final[dict[str, Field]] = {f.name: f for f in FIELDS}
ATOMIC_FIELDS: Final[tuple[Field, ...]] = tuple(f for f in FIELDS if f.in_atomic_table)


# --------------------------------------------------------------------------- timestamps
def format_tstamp(epoch_ms: int) -> str:
    """Render epoch milliseconds as Snowplow's ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC)."""
    seconds, millis = divmod(epoch_ms, 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{millis:03d}"


# --------------------------------------------------------------------------- JSON shape
def to_json_record(event: CanonicalEvent, *, atomic_only: bool = False) -> dict[str, Any]:
    """The JSON shape of an event: every field in canonical order, nulls explicit.

    Timestamps become ``YYYY-MM-DD HH:MM:SS.mmm`` strings; ``contexts`` and
    ``unstruct_event`` stay JSON text.  ``atomic_only`` keeps the columns of Redshift's
    ``atomic.events`` only.
    """
    out: dict[str, Any] = {}
    for f in ATOMIC_FIELDS if atomic_only else FIELDS:
        value = event.get(f.name)
        if value is not None and f.type == "tstamp":
            value = format_tstamp(value)
        out[f.name] = value
    return out


# --------------------------------------------------------------------------- Avro
@cache
def avro_schema() -> dict[str, Any]:
    """The canonical event as an Avro record schema (parsed once with fastavro)."""
    import fastavro  # local: Avro is only needed by the stream codecs

    avro_types: dict[str, Any] = {
        "string": "string",
        "contexts": "string",
        "unstruct": "string",
        "int": "int",
        "double": "double",
        "bool": "boolean",
        "tstamp": {"type": "long", "logicalType": "timestamp-millis"},
    }
    schema = {
        "type": "record",
        "name": "CanonicalEvent",
        "namespace": "com.clickstream_etl",
        "fields": [{"name": f.name, "type": ["null", avro_types[f.type]], "default": None} for f in FIELDS],
    }
    parsed = fastavro.parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed


# --------------------------------------------------------------------------- validation
# Final literals: the compiled build inlines them (a plain global is a dict lookup there).
_STRING: Final = 0
_INT: Final = 1
_TSTAMP: Final = 2
_DOUBLE: Final = 3
_BOOL: Final = 4
_KIND_CODE: Final = {"string": _STRING, "contexts": _STRING, "unstruct": _STRING, "int": _INT,
                     "tstamp": _TSTAMP, "double": _DOUBLE, "bool": _BOOL}  # fmt: skip
# name -> (kind code, max bytes, char column).  One tuple lookup per field keeps validation cheap.
_SPECS: Final[dict[str, tuple[int, int, bool]]] = {
    f.name: (_KIND_CODE[f.type], f.max_bytes or 1 << 62, f.redshift_is_char) for f in FIELDS
}
# Money columns: the magnitude a DECIMAL(p, s) holds once rounded to s places (10^16 for 18,2).
_DECIMAL_LIMITS: Final[dict[str, tuple[float, int]]] = {
    f.name: (10.0 ** (d[0] - d[1]), d[1]) for f in FIELDS if (d := f.decimal) is not None
}


# What passes without a closer look: an ASCII string within its column's width (its UTF-8 is
# that long, and holds no surrogate); in a VARCHAR column, a printable string (no surrogate:
# they are not printable) of at most a quarter of its width in characters (UTF-8 takes at most
# 4 bytes a character); an int within its field's range; a bool in a bool field; a finite float
# in a double column that is not money.  Nearly every value of a real event is one of them.
_STRING_WIDTHS: Final[dict[str, int]] = {name: spec[1] for name, spec in _SPECS.items() if spec[0] == _STRING}
_TEXT_QUARTERS: Final[dict[str, int]] = {
    name: spec[1] // 4 for name, spec in _SPECS.items() if spec[0] == _STRING and not spec[2]
}
_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    **{name: (INT32_MIN, INT32_MAX) for name, spec in _SPECS.items() if spec[0] == _INT},
    **{name: (MIN_EPOCH_MS, MAX_EPOCH_MS) for name, spec in _SPECS.items() if spec[0] == _TSTAMP},
}
_BOOL_FIELDS: Final = frozenset(name for name, spec in _SPECS.items() if spec[0] == _BOOL)
_PLAIN_DOUBLES: Final = frozenset(
    name for name, spec in _SPECS.items() if spec[0] == _DOUBLE and name not in _DECIMAL_LIMITS
)


def validate(event: CanonicalEvent) -> list[str]:
    """Check an event against the canonical schema; return every problem found.

    Types follow the field table; strings must fit their column in UTF-8 bytes, be valid
    Unicode (no lone surrogates) and, for ``char(n)`` columns, be ASCII; integers must fit
    Redshift's INT (32-bit); doubles must be finite, and money columns fit their DECIMAL once
    rounded to its scale (Parquet and Redshift store them as decimals); timestamps must lie in 1970..9999
    (:data:`MIN_EPOCH_MS` to :data:`MAX_EPOCH_MS`), which Parquet, Redshift and Python's
    datetime all represent.

    A first pass accepts the values that plainly pass (runs once per event: a few cheap tests
    per value); the first value it cannot accept sends the whole event through the full check,
    which reports every problem in the event's order.
    """
    widths, quarters, ranges = _STRING_WIDTHS, _TEXT_QUARTERS, _INT_RANGES
    for name, value in event.items():
        value_type = type(value)
        if value_type is str:
            width = widths.get(name)
            if width is not None and len(value) <= width:
                if value.isascii():
                    continue
                quarter = quarters.get(name)
                if quarter is not None and len(value) <= quarter and value.isprintable():
                    continue
        elif value_type is int:
            bounds = ranges.get(name)
            if bounds is not None and bounds[0] <= value <= bounds[1]:
                continue
        elif value is None:
            continue
        elif value_type is bool:
            if name in _BOOL_FIELDS:
                continue
        elif value_type is float and name in _PLAIN_DOUBLES and value - value == 0.0:
            continue  # finite: inf - inf and nan - nan are nan
        return _problems(event)
    return []


def _problems(event: CanonicalEvent) -> list[str]:  # noqa: PLR0912 - one flat type dispatch
    """:func:`validate`'s full check: every problem of every value, in the event's order."""
    errors: list[str] = []
    specs = _SPECS
    for name, value in event.items():
        if value is None:
            continue
        spec = specs.get(name)
        if spec is None:
            errors.append(f"{name}: not a canonical field")
            continue
        kind = spec[0]
        value_type = type(value)
        if value_type is str:
            if kind != _STRING:
                errors.append(f"{name}: expected {BY_NAME[name].type}, got str")
            elif len(value) > spec[1] or not value.isascii():
                _check_width(name, value, errors)  # ASCII text within its width needs no encoding
        elif value_type is int:
            if kind == _INT:
                if not INT32_MIN <= value <= INT32_MAX:
                    errors.append(f"{name}: {value} is out of the 32-bit integer range")
            elif kind == _DOUBLE:
                limit = _DECIMAL_LIMITS.get(name)
                if limit is not None and not abs(value) < limit[0]:
                    errors.append(f"{name}: {value} does not fit {BY_NAME[name].redshift_type}")
            elif kind == _TSTAMP:
                if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
                    errors.append(f"{name}: {value} is outside 1970-01-01..9999-12-31 (epoch milliseconds)")
            else:
                errors.append(f"{name}: expected {BY_NAME[name].type}, got int")
        elif value_type is float:
            if kind != _DOUBLE:
                errors.append(f"{name}: expected {BY_NAME[name].type}, got float")
            elif not math.isfinite(value):
                errors.append(f"{name}: {value} is not a finite number")
            elif (limit := _DECIMAL_LIMITS.get(name)) is not None and not abs(round(value, limit[1])) < limit[0]:
                errors.append(f"{name}: {value} does not fit {BY_NAME[name].redshift_type}")
        elif value_type is bool:
            if kind != _BOOL:
                errors.append(f"{name}: expected {BY_NAME[name].type}, got bool")
        else:
            errors.append(f"{name}: expected {BY_NAME[name].type}, got {value_type.__name__}")
    return errors


def _check_width(name: str, value: str, errors: list[str]) -> None:
    field = BY_NAME[name]
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        errors.append(f"{name}: contains characters that are not valid Unicode")
        return
    if field.max_bytes is not None and size > field.max_bytes:
        errors.append(f"{name}: {size} bytes exceeds the column width of {field.max_bytes} bytes")
    if field.redshift_is_char and not value.isascii():
        errors.append(f"{name}: CHAR columns accept ASCII only")
