"""Iglu schema resolution and validation of self-describing entities (issue 10, section 1).

GIVEN events whose contexts and unstruct events name Iglu schemas
WHEN they are transformed
THEN each entity is validated against its schema (a failure is one schema_violation bad row
     listing every failing entity), an unknown schema follows transform.unknown_schemas, and
     registries are asked in priority order (folder, HTTP, S3), the bundled subset last.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline.aws.registry import RegistryAccessError, s3_schema_fetch
from pipeline.badrows import FailureKind
from pipeline.iglu import (
    FolderRegistry,
    HttpRegistry,
    RegistryUnavailableError,
    Resolver,
    S3Registry,
    SchemaKey,
    bundled_registry,
    resolver_from_settings,
)
from pipeline.testing import LogBuilder, tracker_query
from tests.conftest import make_config, run_core
from transform.canonicalize import Canonicalizer

ROOT = Path(__file__).resolve().parents[2]
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
BUTTON = "iglu:com.acme/button_click/jsonschema/1-0-0"
PAGE_ID = "0b9a8e3c-7f4d-4c1e-9a2b-3d4e5f607182"
BUTTON_SCHEMA = {
    "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
    "self": {"vendor": "com.acme", "name": "button_click", "format": "jsonschema", "version": "1-0-0"},
    "type": "object",
    "properties": {"label": {"type": "string", "maxLength": 20}},
    "required": ["label"],
    "additionalProperties": False,
}


def b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def contexts(*entities: dict[str, Any]) -> str:
    return b64({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": list(entities)})


def unstruct(entity: dict[str, Any]) -> str:
    return b64({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0", "data": entity})


def transformed(params: dict[str, str], canon: Canonicalizer | None = None) -> Any:
    log = LogBuilder(fields=33)
    log.add(query=tracker_query(params))
    return run_core(log.to_bytes(), canonicalizer=canon)


def registry_folder(tmp_path: Path, schemas: dict[str, dict[str, Any]]) -> Path:
    for uri, schema in schemas.items():
        key = SchemaKey.parse(uri)
        assert key is not None
        path = tmp_path / key.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema))
    return tmp_path


# ------------------------------------------------------------------------------ validation
def test_valid_entities_pass_and_are_kept_as_sent() -> None:
    run = transformed(
        {
            "e": "ue",
            "cx": contexts({"schema": WEB_PAGE, "data": {"id": PAGE_ID}}),
            "ue_px": unstruct({"schema": LINK_CLICK, "data": {"targetUrl": "https://shop.example/"}}),
        }
    )
    assert not run.bad
    assert json.loads(run.event["contexts"])["data"][0]["data"] == {"id": PAGE_ID}
    assert run.event["event_name"] == "link_click" and "etl_tags" not in run.event


def test_entities_failing_their_schemas_make_one_schema_violation_listing_each() -> None:
    run = transformed(
        {
            "e": "ue",
            "cx": contexts(
                {"schema": WEB_PAGE, "data": {"id": "not-a-uuid"}},
                {"schema": WEB_PAGE, "data": {"id": PAGE_ID}},
                {"schema": WEB_PAGE, "data": {"id": PAGE_ID, "extra": 1}},
            ),
            "ue_px": unstruct({"schema": LINK_CLICK, "data": {"elementId": "x"}}),  # targetUrl is required
        }
    )
    assert not run.events
    [bad] = run.bad
    assert bad.kind is FailureKind.SCHEMA_VIOLATION
    assert len(bad.messages) == 3
    assert bad.messages[0].startswith(f"unstruct_event {LINK_CLICK}: ") and "targetUrl" in bad.messages[0]
    assert bad.messages[1].startswith(f"contexts[0] {WEB_PAGE}: ") and "pattern" in bad.messages[1]
    assert bad.messages[2].startswith(f"contexts[2] {WEB_PAGE}: ")
    assert "contexts[1]" not in " ".join(bad.messages)
    assert bad.raw  # the raw line, for recovery


def test_an_entity_without_schema_or_data_is_a_schema_violation() -> None:
    run = transformed({"e": "pv", "cx": contexts({"data": {"id": PAGE_ID}}, {"schema": "web_page", "data": {}})})
    [bad] = run.bad
    assert bad.kind is FailureKind.SCHEMA_VIOLATION
    assert "not a self-describing entity" in bad.messages[0] and "not an iglu: schema URI" in bad.messages[1]


def test_an_unknown_schema_passes_tagged_by_default() -> None:
    run = transformed({"e": "ue", "ue_px": unstruct({"schema": BUTTON, "data": {"label": "buy"}})})
    assert not run.bad
    assert run.event["etl_tags"] == "unknown_schema:com.acme/button_click/1-0-0"


def test_an_unknown_schema_is_a_resolution_error_when_rejected() -> None:
    canon = Canonicalizer(make_config({"transform.unknown_schemas": "reject"}).transform)
    run = transformed({"e": "ue", "ue_px": unstruct({"schema": BUTTON, "data": {"label": "buy"}})}, canon)
    [bad] = run.bad
    assert bad.kind is FailureKind.RESOLUTION_ERROR
    assert bad.messages == (f"{BUTTON}: no registry has this schema",)


def test_a_configured_registry_resolves_custom_schemas_and_validates_them(tmp_path: Path) -> None:
    folder = registry_folder(tmp_path, {BUTTON: BUTTON_SCHEMA})
    canon = Canonicalizer(make_config({"transform.iglu.registries": [str(folder)]}).transform)
    good = transformed({"e": "ue", "ue_px": unstruct({"schema": BUTTON, "data": {"label": "buy"}})}, canon)
    assert not good.bad and "etl_tags" not in good.event
    bad = transformed({"e": "ue", "ue_px": unstruct({"schema": BUTTON, "data": {"label": "x" * 21}})}, canon)
    assert bad.bad[0].kind is FailureKind.SCHEMA_VIOLATION and BUTTON in bad.bad[0].messages[0]


def test_validation_can_be_switched_off() -> None:
    canon = Canonicalizer(make_config({"transform.iglu.validate": False}).transform)
    run = transformed({"e": "pv", "cx": contexts({"schema": WEB_PAGE, "data": {"id": "nope"}})}, canon)
    assert not run.bad


# ------------------------------------------------------------------------------ registries
def test_registries_are_asked_in_order_and_remember_their_answers(tmp_path: Path) -> None:
    shadow = {**BUTTON_SCHEMA, "description": "mine"}
    first = registry_folder(tmp_path / "first", {BUTTON: shadow})
    second = registry_folder(tmp_path / "second", {BUTTON: BUTTON_SCHEMA, WEB_PAGE: {"type": "object"}})
    asked: list[str] = []

    class Counting(FolderRegistry):
        def lookup(self, key: SchemaKey) -> Any:
            asked.append(f"{self.name}:{key.name}")
            return super().lookup(key)

    resolver = Resolver([Counting(first, "first"), Counting(second, "second"), bundled_registry()])
    button = SchemaKey.parse(BUTTON)
    page = SchemaKey.parse(WEB_PAGE)
    assert button is not None and page is not None
    assert resolver.resolve(button).schema == shadow and resolver.resolve(button).registry == "first"
    assert resolver.resolve(page).registry == "second"
    missing = SchemaKey.parse("iglu:com.acme/nothing/jsonschema/1-0-0")
    assert missing is not None and resolver.resolve(missing).schema is None
    resolver.resolve(missing)
    assert asked == ["first:button_click", "first:web_page", "second:web_page", "first:nothing", "second:nothing"]


@pytest.fixture
def http_registry(tmp_path: Path) -> Iterator[str]:
    folder = registry_folder(tmp_path, {BUTTON: BUTTON_SCHEMA})

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:
            if "broken" in self.path:
                self.send_error(503)
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_http_registry_serves_schemas_says_absent_and_fails_retryably(http_registry: str) -> None:
    registry = HttpRegistry(http_registry, timeout_s=5)
    assert registry.lookup(SchemaKey("com.acme", "button_click", "jsonschema", 1, 0, 0)) == BUTTON_SCHEMA
    assert registry.lookup(SchemaKey("com.acme", "other", "jsonschema", 1, 0, 0)) is None
    with pytest.raises(RegistryUnavailableError):
        registry.lookup(SchemaKey("com.acme", "broken", "jsonschema", 1, 0, 0))
    resolver = resolver_from_settings([http_registry], bundled=True, cache_size=10)
    assert [r.name for r in resolver.registries] == [http_registry, "bundled Iglu Central"]


def test_an_s3_registry_reads_through_an_injected_client() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="acme-schemas")
        key = "iglu/schemas/com.acme/button_click/jsonschema/1-0-0"
        s3.put_object(Bucket="acme-schemas", Key=key, Body=json.dumps(BUTTON_SCHEMA))
        registry = S3Registry("acme-schemas", "iglu/", s3_schema_fetch(s3))
        assert registry.lookup(SchemaKey("com.acme", "button_click", "jsonschema", 1, 0, 0)) == BUTTON_SCHEMA
        assert registry.lookup(SchemaKey("com.acme", "other", "jsonschema", 1, 0, 0)) is None
        with pytest.raises(RegistryAccessError, match="s3://missing-bucket"):
            S3Registry("missing-bucket", "", s3_schema_fetch(s3)).lookup(SchemaKey("a", "b", "jsonschema", 1, 0, 0))
        config = make_config({"transform.iglu.registries": ["s3://acme-schemas/iglu"]}).transform
        canon = Canonicalizer(config, s3_fetch=s3_schema_fetch(s3))
        run = transformed({"e": "ue", "ue_px": unstruct({"schema": BUTTON, "data": {"label": "buy"}})}, canon)
        assert not run.bad and "etl_tags" not in run.event


def test_an_s3_registry_without_aws_access_is_a_configuration_error() -> None:
    from transform.errors import TransformConfigError

    with pytest.raises(TransformConfigError, match="needs S3 access"):
        Canonicalizer(make_config({"transform.iglu.registries": ["s3://acme-schemas/iglu"]}).transform)
    with pytest.raises(TransformConfigError, match="is not a folder"):
        Canonicalizer(make_config({"transform.iglu.registries": ["/nonexistent/registry"]}).transform)


# --------------------------------------------------------------------------- bundled copy
def test_the_bundled_schemas_match_their_recorded_provenance() -> None:
    root = resources.files("clickstream_etl_data").joinpath("iglu")
    manifest = json.loads(root.joinpath("MANIFEST.json").read_text())
    assert manifest["source"] == "https://github.com/snowplow/iglu-central" and manifest["licence"] == "Apache-2.0"
    assert manifest["commit"] in (ROOT / "config" / "iglu" / "IGLU.md").read_text()
    folder = ROOT / "config" / "iglu"
    shipped = {p.relative_to(folder).as_posix() for p in (folder / "schemas").rglob("*") if p.is_file()}
    assert shipped == set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(root.joinpath(name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in root.joinpath("LICENSE").read_text()
    for uri in (WEB_PAGE, LINK_CLICK, "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2"):
        key = SchemaKey.parse(uri)
        assert key is not None and bundled_registry().lookup(key) is not None, uri


def test_a_repeated_contexts_parameter_is_judged_by_the_value_that_is_kept() -> None:
    """The last value of a repeated parameter wins (Snowplow's rule), for validation too."""
    bad_first = transformed(
        {"e": "pv", "cx": contexts({"schema": WEB_PAGE, "data": {"id": "nope"}})}
        | {
            "co": json.dumps(
                {
                    "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                    "data": [{"schema": WEB_PAGE, "data": {"id": PAGE_ID}}],
                }
            )
        }
    )
    assert not bad_first.bad
    assert json.loads(bad_first.event["contexts"])["data"][0]["data"]["id"] == PAGE_ID


def test_a_pages_pings_repeating_its_contexts_are_validated_once() -> None:
    """Validation runs inside the decoder's memo: the same context value costs one verdict."""
    calls: list[int] = []
    canon = Canonicalizer(make_config().transform)
    validator = canon._validator
    assert validator is not None
    real = validator.verdict

    def counting(entities: Any) -> Any:
        calls.append(len(entities))
        return real(entities)

    canon._decoder = type(canon._decoder)(counting)
    log = LogBuilder(fields=33)
    cx = contexts({"schema": WEB_PAGE, "data": {"id": PAGE_ID}})
    for _ in range(5):
        log.add(query=tracker_query({"e": "pp", "cx": cx}))
    run = run_core(log.to_bytes(), canonicalizer=canon)
    assert len(run.events) == 5 and calls == [1]


def test_an_injected_validator_applies_its_own_unknown_schema_policy() -> None:
    from transform.canonicalize import default_resolver
    from transform.validation import EntityValidator

    config = make_config().transform  # unknown_schemas = "pass"
    canon = Canonicalizer(config, validator=EntityValidator(default_resolver(config), "reject"))
    run = transformed({"e": "ue", "ue_px": unstruct({"schema": BUTTON, "data": {"label": "buy"}})}, canon)
    assert [bad.kind for bad in run.bad] == [FailureKind.RESOLUTION_ERROR]
