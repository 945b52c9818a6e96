"""Every self-describing entity of an event checked against its Iglu schema, as Snowplow does.

An event carries entities in ``unstruct_event`` (one, inside the ``unstruct_event``
envelope) and ``contexts`` (a list inside the ``contexts`` envelope); each names its schema
(``iglu:vendor/name/jsonschema/M-R-A``).  :class:`EntityValidator` resolves each schema once
(:class:`pipeline.iglu.Resolver`), compiles it once (fastjsonschema: about 1 to 8 µs per
entity, against 20 to 100 µs interpreted).  The tracker decoder asks for a verdict inside its
memo of each self-describing value, so a page's pings, which repeat its contexts, pay once.

The verdict lists every failing entity with its first problem.  An entity whose schema no
registry has follows ``transform.unknown_schemas``: ``pass`` keeps the event and tags it
``unknown_schema:<vendor>/<name>/<version>``; ``reject`` makes the event a
``resolution_error`` bad row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, NamedTuple

import fastjsonschema

from pipeline.cache import BoundedCache
from pipeline.iglu import Resolver, SchemaKey

_DRAFT_4: Final = "http://json-schema.org/draft-04/schema#"
_VALIDATOR_CACHE_SIZE: Final = 1000


class Verdict(NamedTuple):
    """What validation found in one event's entities."""

    invalid: tuple[str, ...]
    """One message per entity that fails its schema (or is not a self-describing entity)."""
    unresolved: tuple[str, ...]
    """The schema URIs no registry has."""


VALID: Final = Verdict((), ())


class EntityValidator:
    def __init__(self, resolver: Resolver, unknown_schemas: Literal["pass", "reject"] = "pass") -> None:
        self.resolver = resolver
        self.unknown_schemas = unknown_schemas
        # Bounded: entities may name any number of schemas that do not exist.
        self._validators: BoundedCache[SchemaKey, Callable[[Any], Any] | None] = BoundedCache(
            _VALIDATOR_CACHE_SIZE, self._compile
        )

    def verdict(self, entities: list[tuple[str, Any]]) -> Verdict:
        """The verdict on entities given as (where, entity) pairs, already parsed: the tracker
        decoder calls it inside its memo of each self-describing value (:mod:`transform.tracker`)."""
        invalid: list[str] = []
        unresolved: list[str] = []
        for where, entity in entities:
            if not isinstance(entity, dict) or not isinstance(entity.get("schema"), str) or "data" not in entity:
                invalid.append(f"{where}: not a self-describing entity (it needs a schema URI and data)")
                continue
            key = SchemaKey.parse(entity["schema"])
            if key is None:
                invalid.append(f"{where}: {entity['schema'][:200]!r} is not an iglu: schema URI")
                continue
            validate = self._validators[key]
            if validate is None:
                unresolved.append(key.uri)
                continue
            try:
                validate(entity["data"])
            except fastjsonschema.JsonSchemaValueException as exc:
                invalid.append(f"{where} {key.uri}: {exc.message}")
        return Verdict(tuple(invalid), tuple(unresolved)) if invalid or unresolved else VALID

    def _compile(self, key: SchemaKey) -> Callable[[Any], Any] | None:
        schema = self.resolver.resolve(key).schema
        if schema is None:
            return None
        try:
            # Iglu schemas name Iglu's meta-schema, which is JSON Schema draft 4 with a "self" block.
            validator: Callable[[Any], Any] = fastjsonschema.compile({**schema, "$schema": _DRAFT_4})
            return validator  # typed through a variable: a compiled build type-checks without the library
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            message = f"the registry's schema {key.uri} is not a valid JSON Schema: {exc}"

            def refuse(data: Any) -> None:
                raise fastjsonschema.JsonSchemaValueException(message)

            return refuse


__all__ = ["VALID", "EntityValidator", "Verdict"]
