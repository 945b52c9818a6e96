"""Snowplow tracker protocol (tp1, GET ``/i``): query parameters to canonical fields.

Parameter-to-field bindings are derived from the canonical schema's ``params`` column (the
tracker protocol's parameter names: ``aid`` is ``app_id``, ``duid`` is ``domain_userid``...);
only parameters with special parse rules (event type, ids, sizes, self-describing JSON,
URLs) are listed here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from pipeline.cache import BoundedCache
from pipeline.percent import unquote_strict
from pipeline.schema import FIELDS, INT32_MAX, INT32_MIN, MAX_EPOCH_MS, MIN_EPOCH_MS, CanonicalEvent
from transform.cleaning import TSV_SAFE, clean_text

# Bounded so that a worker's memory does not grow with the input (about 20 MB at most).
_DECODED_CACHE_SIZE: Final = 40_000
_CACHEABLE_VALUE: Final = 512

SNOWPLOW_VENDOR: Final = "com.snowplowanalytics.snowplow"

# e -> (event, event_vendor, event_name, event_format, event_version); ue is named by its schema.
EVENT_TYPES: Final[dict[str, tuple[str, str | None, str | None, str | None, str | None]]] = {
    "pv": ("page_view", SNOWPLOW_VENDOR, "page_view", "jsonschema", "1-0-0"),
    "pp": ("page_ping", SNOWPLOW_VENDOR, "page_ping", "jsonschema", "1-0-0"),
    "se": ("struct", "com.google.analytics", "event", "jsonschema", "1-0-0"),
    "ev": ("struct", "com.google.analytics", "event", "jsonschema", "1-0-0"),
    "ue": ("unstruct", None, None, None, None),
    "tr": ("transaction", SNOWPLOW_VENDOR, "transaction", "jsonschema", "1-0-0"),
    "ti": ("transaction_item", SNOWPLOW_VENDOR, "transaction_item", "jsonschema", "1-0-0"),
    "ad": ("ad_impression", SNOWPLOW_VENDOR, "ad_impression", "jsonschema", "1-0-0"),
}
# The same naming as column dicts, merged into an event with one dict.update.
EVENT_NAMING: Final[dict[str, dict[str, str]]] = {
    e: {
        k: v
        for k, v in zip(("event", "event_vendor", "event_name", "event_format", "event_version"), names, strict=True)
        if v is not None
    }
    for e, names in EVENT_TYPES.items()
}
PLATFORMS: Final = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset"})
UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
IGLU_RE: Final = re.compile(
    r"iglu:([a-zA-Z0-9._-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z][a-zA-Z0-9_-]*)/([1-9][0-9]*-(?:0|[1-9][0-9]*)-(?:0|[1-9][0-9]*))\Z"
)
UNSTRUCT_SCHEMA_PREFIX: Final = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-"
CONTEXTS_SCHEMA_PREFIX: Final = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-"

# Parameters left out of the fingerprint's tracker pairs: eid, stm, nuid and cv change on a
# tracker retry; ip, uid, duid, tnuid, url and refr carry values the privacy steps mask, hash or
# redact, so the fingerprint step hashes them in their output form instead (a hash of the raw
# value would let anyone with the output recover it by brute force).
FINGERPRINT_EXCLUDED: Final = frozenset({"eid", "stm", "nuid", "cv", "ip", "uid", "duid", "tnuid", "url", "refr"})

_SPECIAL: Final = frozenset(
    {"e", "eid", "p", "url", "refr", "ua", "ip", "res", "vp", "ds", "ue_pr", "ue_px", "co", "cx", "cv"}
)


def _bindings() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Parameter -> field for plain strings, and parameter -> (field, type) for typed ones."""
    strings: dict[str, str] = {}
    typed: dict[str, tuple[str, str]] = {}
    for f in FIELDS:
        for param in f.params:
            if param in _SPECIAL:
                continue
            if f.type == "string":
                strings[param] = f.name
            elif f.type in ("int", "double", "bool", "tstamp"):
                typed[param] = (f.name, f.type)
    return strings, typed


STRING_PARAMS, TYPED_PARAMS = _bindings()
# Final literals: the compiled build inlines them (a plain global is a dict lookup there).
_K_STRING: Final = 0
_K_INT: Final = 1
_K_DOUBLE: Final = 2
_K_BOOL: Final = 3
_K_TSTAMP: Final = 4
_K_SPECIAL: Final = 5
_KIND_NAMES: Final = ("string", "int", "double", "bool", "tstamp", "special")
_COMBINED: Final = frozenset({"url", "refr", "ua", "ip"})
SIZE_PARAMS: Final = {
    "res": ("dvce_screenwidth", "dvce_screenheight"),
    "vp": ("br_viewwidth", "br_viewheight"),
    "ds": ("doc_width", "doc_height"),
}


class ParamDecodeError(ValueError):
    """A parameter value could not be percent-decoded as UTF-8."""


def decode(value: str) -> str:
    """Percent- and plus-decode a parameter value (``unquote_plus``); raise ParamDecodeError on invalid UTF-8."""
    if "%" not in value and "+" not in value:
        return value
    try:
        return unquote_strict(value.replace("+", " "))  # unquote_plus is exactly this
    except UnicodeDecodeError as exc:
        raise ParamDecodeError(str(exc)) from exc


def parse_int(text: str) -> int | None:
    body = text[1:] if text[:1] == "-" else text
    if not body.isascii() or not body.isdigit() or len(body) > 10:
        return None
    value = int(text)
    return value if INT32_MIN <= value <= INT32_MAX else None


_DECIMAL_RE: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


def parse_double(text: str) -> float | None:
    """A plain decimal (optional sign, fraction, exponent); no blanks, underscores, NaN or infinity."""
    if not _DECIMAL_RE.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    return None


def parse_tstamp(text: str) -> int | None:
    """Epoch milliseconds (ASCII digits) within 1970..9999, which every store represents; else None."""
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        return None
    value = int(text)
    return value if MIN_EPOCH_MS <= value <= MAX_EPOCH_MS else None


_KIND_PARSERS: Final[dict[int, Callable[[str], Any]]] = {  # by kind code
    _K_INT: parse_int,
    _K_DOUBLE: parse_double,
    _K_BOOL: parse_bool,
    _K_TSTAMP: parse_tstamp,
}
# One lookup per parameter: name -> (kind, field).
_PARAM_SPECS: Final[dict[str, tuple[int, str]]] = {
    **{name: (_K_SPECIAL, name) for name in _SPECIAL},
    **{name: (_K_STRING, field) for name, field in STRING_PARAMS.items()},
    **{name: (_KIND_NAMES.index(kind), field) for name, (field, kind) in TYPED_PARAMS.items()},
}


def b64_json(value: str) -> str:
    """Decode base64url (padding optional, standard alphabet tolerated) to UTF-8 text."""
    text = value.strip().replace("-", "+").replace("_", "/").replace(" ", "+")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64url-encoded UTF-8: {exc}") from exc


def self_describing(text: str, expected_prefix: str, param: str) -> Any:
    """Parse a self-describing JSON envelope and check its schema; return its data."""
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{param}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("schema"), str):
        raise ValueError(f"{param}: not a self-describing JSON (no schema)")
    if not document["schema"].startswith(expected_prefix):
        raise ValueError(f"{param}: unexpected schema {document['schema'][:200]!r}")
    if "data" not in document:
        raise ValueError(f"{param}: self-describing JSON has no data")
    return document["data"]


def apply_unstruct(
    event: CanonicalEvent, text: str, param: str, errors: list[str], entities: list[tuple[str, Any]]
) -> None:
    try:
        data = self_describing(text, UNSTRUCT_SCHEMA_PREFIX, param)
    except ValueError as exc:
        errors.append(str(exc))
        return
    inner = data.get("schema") if isinstance(data, dict) else None
    match = IGLU_RE.match(inner) if isinstance(inner, str) else None
    if match is None:
        errors.append(f"{param}: the inner event has no valid iglu schema URI")
        return
    event["unstruct_event"] = text
    entities.append(("unstruct_event", data))
    # Named by the inner schema; an event type other than ue renames it afterwards.
    event["event_vendor"], event["event_name"], event["event_format"], event["event_version"] = match.groups()


def apply_contexts(
    event: CanonicalEvent, text: str, param: str, errors: list[str], entities: list[tuple[str, Any]]
) -> None:
    try:
        data = self_describing(text, CONTEXTS_SCHEMA_PREFIX, param)
    except ValueError as exc:
        errors.append(str(exc))
        return
    if not isinstance(data, list):
        errors.append(f"{param}: contexts data must be an array")
        return
    event["contexts"] = text
    entities.extend((f"contexts[{index}]", entity) for index, entity in enumerate(data))


EntityCheck = Callable[[list[tuple[str, Any]]], Any]
"""Judges a parameter's entities (:meth:`transform.validation.EntityValidator.verdict`)."""
_Decoded = tuple[dict[str, Any], tuple[str, ...], Any]
_SELF_DESCRIBING_CACHE_SIZE: Final = 4096


def _self_describing_fields(name: str, check: EntityCheck | None, value: str) -> _Decoded:
    """The fields a self-describing parameter sets, its problems (all of them), and the verdict
    on its entities (None when not checked): memoised together, so that a page's pings pay for
    the decoding, the JSON and the schema validation once."""
    fields: CanonicalEvent = {}
    errors: list[str] = []
    entities: list[tuple[str, Any]] = []
    apply, base64url = _SELF_DESCRIBING[name]
    try:
        apply(fields, b64_json(value) if base64url else value, name, errors, entities)
    except ValueError as exc:  # not base64url-encoded UTF-8
        errors.append(f"{name}: {exc}")
    verdict = check(entities) if check is not None and entities and not errors else None
    return fields, tuple(errors), verdict


# What one ``name=value`` pair does to an event, as (in the fingerprint, operation, a, b): a pure
# function of the pair, so :class:`QueryDecoder` memoises it and a repeated pair (most of a
# query string: the app id, the screen size, the session) costs one dict lookup.
_SET: Final = 0
_SPECIAL_VALUE: Final = 1
_SIZE: Final = 2
_EVENT_TYPE: Final = 3
_SKIP: Final = 4
_SELF_DESCRIBING_VALUE: Final = 5
_DROP: Final = 6
_ERROR: Final = 7
_FLAGGED: Final = 8
_Effect = tuple[bool, int, Any, Any]
_PAIR_CACHE_SIZE: Final = 32_768
# Parameters whose values are unique to an event: their pairs are not worth remembering.
_UNIQUE_VALUED: Final = frozenset({"eid", "dtm", "stm", "ttm"})


class QueryDecoder:
    """Decodes tracker query strings into events, memoising what each pair does (bounded).

    A page's URL, title and referrer, the app id and screen size repeat across a log; an event
    id or a timestamp does not, and long values (contexts, ``ue_px``) rarely do, so those are
    not held.
    """

    def __init__(self, entity_check: EntityCheck | None = None) -> None:
        self._decoded: BoundedCache[str, str] = BoundedCache(
            _DECODED_CACHE_SIZE, decode, max_key_length=_CACHEABLE_VALUE
        )
        self._effects: BoundedCache[str, _Effect] = BoundedCache(_PAIR_CACHE_SIZE, max_key_length=_CACHEABLE_VALUE)
        self._self_describing: dict[str, BoundedCache[str, _Decoded]] = {
            name: BoundedCache(
                _SELF_DESCRIBING_CACHE_SIZE,
                partial(_self_describing_fields, name, entity_check),
                max_key_length=8192,
            )
            for name in _SELF_DESCRIBING
        }

    def decode(self, value: str) -> str:
        """:func:`decode`, memoised.

        Self-describing JSON (``ue_px``, ``cx``...) is memoised as the fields it sets and the
        problems it has: a page's pings repeat their page's contexts.
        """
        if "%" not in value and "+" not in value:
            return value
        return self._decoded[value]

    def apply_query(  # noqa: PLR0912 - runs once per query parameter: inlined for throughput
        self,
        event: CanonicalEvent,
        pairs: list[str],
        errors: list[str],
        flags: list[str],
        specials: dict[str, str],
        fingerprinted: list[str],
    ) -> dict[str, Any] | None:
        """Decode the ``name=value`` pairs of a tracker query string into ``event``.

        Values are still percent-encoded by the tracker (CloudFront's extra encoding already
        undone).  When a parameter repeats, the last value wins, as in Snowplow's Enrich.
        Protocol violations are appended to ``errors`` (all of them, not the first); values kept
        raw because they cannot be percent-decoded are noted in ``flags``.  The decoded url,
        refr, ua and ip go to ``specials``: the caller combines them with the log's own fields.
        The pairs that make the event fingerprint (all but :data:`FINGERPRINT_EXCLUDED`) go to ``fingerprinted``.
        Returns the entity verdicts of the self-describing parameters by column
        (``unstruct_event``, ``contexts``; None for one not checked), or None when there was none.
        """
        verdicts: dict[str, Any] | None = None
        effects = self._effects
        event_type = None
        for pair in pairs:
            effect = effects.get(pair)
            if effect is None:
                effect = self._effect(pair)
            in_fingerprint, operation, a, b = effect
            if in_fingerprint:
                fingerprinted.append(pair)
            if operation == _FLAGGED:  # kept raw: not percent-decodable
                flags.append(a)
                in_fingerprint, operation, a, b = b
            if operation == _SET:
                event[a] = b
            elif operation == _SPECIAL_VALUE:
                specials[a] = b
            elif operation == _SIZE:
                event[a[0]], event[a[1]] = b
            elif operation == _EVENT_TYPE:
                event_type = b
            elif operation == _SELF_DESCRIBING_VALUE:
                updates, problems, verdict = self._self_describing[a][b]
                event.update(updates)
                if problems:
                    errors.extend(problems)
                if verdicts is None:
                    verdicts = {}
                verdicts[_VERDICT_SLOT[a]] = verdict  # a repeated parameter: the last one wins
            elif operation == _ERROR:
                errors.append(b)
            elif operation == _DROP:
                # The JavaScript tracker once sent the text "null" for numbers it did not have;
                # Snowplow reads it (any case) as null, as here: the last value of the parameter wins.
                event.pop(a, None)
        if event_type is None:
            errors.append("e: the event type parameter is missing")
            return verdicts
        naming = EVENT_NAMING.get(event_type)
        if naming is None:
            errors.append(f"e: {event_type[:50]!r} is not a valid event type")
        elif event_type == "ue":
            event["event"] = "unstruct"  # vendor, name, format and version come from the inner schema
        else:
            event.update(naming)
        if event_type == "ue" and "event_name" not in event and not errors:
            # Deliberately stricter than Snowplow's Enrich, which keeps such an event as an unnamed
            # "unstruct" with no data: here it is a bad row that keeps the request (README, "Snowplow compatibility").
            errors.append("ue: a self-describing event needs ue_pr or ue_px")
        return verdicts

    def _effect(self, pair: str) -> _Effect:
        """What ``pair`` does to an event (see :data:`_SET` and the rest), remembered unless unique."""
        name, _, raw = pair.partition("=")
        in_fingerprint = name not in FINGERPRINT_EXCLUDED
        spec = _PARAM_SPECS.get(name)
        if spec is None or not raw:  # unsupported parameters are dropped, as Snowplow does
            effect: _Effect = (in_fingerprint, _SKIP, None, None)
        elif "%" in raw or "+" in raw:
            try:
                effect = _value_effect(in_fingerprint, name, spec, self._decoded[raw])
            except ParamDecodeError:
                inner = _value_effect(in_fingerprint, name, spec, raw)
                effect = (in_fingerprint, _FLAGGED, f"invalid_percent_encoding:{name}", inner)
        else:
            effect = _value_effect(in_fingerprint, name, spec, raw)
        if name not in _UNIQUE_VALUED:
            self._effects.put(pair, effect)
        return effect


def _value_effect(in_fingerprint: bool, name: str, spec: tuple[int, str], value: str) -> _Effect:  # noqa: PLR0911 - one return per outcome
    """What parameter ``name`` with its decoded ``value`` does to an event."""
    kind, field = spec
    if kind == _K_STRING:
        if not value.isprintable():  # a control character: cleaned as Snowplow does (transform.cleaning)
            value = value.translate(TSV_SAFE)
            if not value:
                return (in_fingerprint, _SKIP, None, None)
        return (in_fingerprint, _SET, field, value)
    if kind == _K_SPECIAL:
        if name == "e":
            return (in_fingerprint, _EVENT_TYPE, None, value)
        if name in _SELF_DESCRIBING:
            return (in_fingerprint, _SELF_DESCRIBING_VALUE, name, value)
        return _special_effect(in_fingerprint, name, value)
    if (kind == _K_INT or kind == _K_TSTAMP) and value.isdigit() and len(value) <= 9 and value.isascii():  # noqa: PLR1714
        return (in_fingerprint, _SET, field, int(value))  # the common case; parse_* handle signs and ranges
    parsed = _KIND_PARSERS[kind](value)
    if parsed is not None:
        return (in_fingerprint, _SET, field, parsed)
    if (kind == _K_INT or kind == _K_DOUBLE) and len(value) == 4 and value.lower() == "null":  # noqa: PLR1714
        return (in_fingerprint, _DROP, field, None)
    return (in_fingerprint, _ERROR, None, f"{name}: {value[:100]!r} is not a valid {_KIND_NAMES[kind]} for {field}")


def _special_effect(in_fingerprint: bool, name: str, value: str) -> _Effect:  # noqa: PLR0911 - one outcome per special parameter
    if name == "eid":
        if UUID_RE.match(value):
            return (in_fingerprint, _SET, "event_id", value.lower())
        return (in_fingerprint, _ERROR, None, f"eid: {value[:100]!r} is not a valid UUID")
    if name == "p":
        if value in PLATFORMS:
            return (in_fingerprint, _SET, "platform", value)
        known = ", ".join(sorted(PLATFORMS))
        return (in_fingerprint, _ERROR, None, f"p: {value[:100]!r} is not a valid platform ({known})")
    if name in SIZE_PARAMS:
        fields = SIZE_PARAMS[name]
        width, sep, height = value.partition("x")
        if width.isdigit() and height.isdigit() and len(width) < 7 and len(height) < 7 and value.isascii():
            return (in_fingerprint, _SIZE, fields, (int(width), int(height)))
        w, h = parse_int(width), parse_int(height)
        if not sep or w is None or h is None or w < 0 or h < 0:
            return (in_fingerprint, _ERROR, None, f"{name}: {value[:100]!r} is not a valid WIDTHxHEIGHT size")
        return (in_fingerprint, _SIZE, fields, (w, h))
    if name == "cv":
        value = clean_text(value)
        return (in_fingerprint, _SET, "v_collector", value) if value else (in_fingerprint, _SKIP, None, None)
    if name in _COMBINED:
        return (in_fingerprint, _SPECIAL_VALUE, name, value)
    return (in_fingerprint, _SKIP, None, None)


# Self-describing JSON parameters: name -> (how to apply it, whether it is base64url-encoded).
_Apply = Callable[[CanonicalEvent, str, str, list[str], list[tuple[str, Any]]], None]
_SELF_DESCRIBING: Final[dict[str, tuple[_Apply, bool]]] = {
    "ue_pr": (apply_unstruct, False),
    "ue_px": (apply_unstruct, True),
    "co": (apply_contexts, False),
    "cx": (apply_contexts, True),
}
_VERDICT_SLOT: Final = {"ue_pr": "unstruct_event", "ue_px": "unstruct_event", "co": "contexts", "cx": "contexts"}
