"""Reliability catalogue, security (S05-S11): what the code itself guarantees today.

The deployment's share of the catalogue (IAM, bucket and stream hardening, Lambda settings,
static gates: S01-S04, S12 and the notification filter of S05) comes with the deployment;
the README's reliability table says so.  Each test here names its catalogue ID in its
docstring.  GIVEN hostile or personal input WHEN it goes through the pipeline THEN nothing
it should not reveal or reach leaves it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from extract.handler import handle as extract
from extract.handler import logger as extract_logger
from extract.reconciler import ListedObject, plan_redrives
from load.errors import InvalidIdentifierError
from load.redshift.backfill_plan import S3Location, S3Object, plan_backfill
from load.redshift.ddl import ddl_statements
from load.redshift.identifiers import RedshiftTables
from load.redshift.ledger import ledger_lookup
from load.redshift.load_errors import load_errors_since
from load.redshift.statements import render_script
from pipeline.app.backfill import SourceFile, check_destination, plan_sources
from pipeline.aws.ledger import ObjectId
from pipeline.errors import ConfigError, InputError
from pipeline.formats.cloudfront import LEGACY_FIELDS
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import FakeLambdaContext, s3_object_created_event
from tests.conftest import make_config, run_core
from tests.functional.aws_chain import Chain, chain_config
from transform.canonicalize import Canonicalizer

CONFIG = make_config()
CANON = Canonicalizer(CONFIG.transform)
PROFILE = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = b"catalogue-s07-key-0123456789"
OTHER_KEY = b"catalogue-s07-another-key-987"
PSEUDO = make_config({"transform.pseudonymize.enabled": True})
PSEUDO_CANON = Canonicalizer(PSEUDO.transform, pseudonymization_key=KEY)
PSEUDO_TWIN = Canonicalizer(PSEUDO.transform, pseudonymization_key=KEY)
PSEUDO_OTHER = Canonicalizer(PSEUDO.transform, pseudonymization_key=OTHER_KEY)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def gz_log(*lines: str) -> bytes:
    import gzip

    return gzip.compress(LogBuilder(fields=33, lines=list(lines)).to_bytes(), mtime=0)


def tracker_line(n: int = 0, params: dict[str, str] | None = None, **values: str) -> str:
    query = tracker_query({"e": "pv", "url": f"https://shop.example/{n}", **(params or {})})
    return LogBuilder(fields=33).line(query=query, request_id=f"req-{n}", **values)


def event_text(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


# ================================================================================ S05
def test_s05_objects_under_every_output_prefix_are_never_read_as_logs_nor_redriven(aws: None) -> None:
    """Reliability catalogue S05 (the part in the code): Extract's recursion guard.

    GIVEN log-shaped objects in the output bucket under the events, bad-rows and Firehose
    prefixes and the Redshift load's manifest prefix WHEN Extract is notified of each (as if the
    output bucket were notified too) THEN none is read, claimed or shipped, and the reconciler
    plans none of them; the same key in the log bucket is a log.
    """
    config = chain_config()
    chain = Chain.create(config)
    r = config.resources
    puts: list[int] = []
    chain.kinesis.meta.events.register("before-call.kinesis.PutRecords", lambda **_: puts.append(1))
    prefixes = (r.events_prefix, r.bad_prefix, r.firehose_prefix, config.redshift.manifest_prefix)
    own = [chain.upload(f"{p}E1.2024-11-15-10.x.gz", gz_log(tracker_line()), bucket=r.output_bucket) for p in prefixes]
    for notice in own:
        event = s3_object_created_event(notice.bucket, notice.key, etag=notice.etag)
        [result] = extract(event, FakeLambdaContext(), chain.extract_deps())["objects"]
        assert result["outcome"] == "ignored", notice.key
        assert chain.ledger().get(ObjectId(notice.bucket, notice.key, notice.etag)) is None
    assert puts == [] and chain.raw_batches() == []
    listing = [ListedObject(n.key, n.etag, 10, 0) for n in own] + [ListedObject("logs/E1.gz", "e", 10, 0)]
    planned = plan_redrives(r.output_bucket, listing, {}, now_ms=3_600_000, min_age_ms=0, config=config)
    assert [p.notice.key for p in planned] == ["logs/E1.gz"]
    log = chain.upload(f"{r.bad_prefix}E1.2024-11-15-10.x.gz", gz_log(tracker_line()))
    event = s3_object_created_event(log.bucket, log.key, etag=log.etag)
    [result] = extract(event, FakeLambdaContext(), chain.extract_deps())["objects"]
    assert (result["outcome"], result["lines_shipped"]) == ("complete", 1) and len(puts) == 1


# ================================================================================ S06
_FULL = r"(?<![0-9A-Za-z.:]){}(?![0-9A-Za-z.:])"


@PROFILE
@given(
    address=st.ip_addresses(),
    where=st.sampled_from(["c-ip", "x-forwarded-for", "ip"]),
    port=st.booleans(),
)
def test_s06_no_address_of_any_kind_or_place_leaves_the_pipeline_whole(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, where: str, port: bool
) -> None:
    """Reliability catalogue S06: any IPv4 or IPv6 address, as c-ip, in X-Forwarded-For or the tracker's ``ip``.

    GIVEN any address (with a port, or second in an X-Forwarded-For list after garbage) WHEN
    transformed with the default configuration THEN user_ipaddress is a /24 network (IPv4, also
    for IPv6 that embeds IPv4) or a /48 one (IPv6), and the address itself, unless it already is
    that network address, appears nowhere in the event.
    """
    text = str(address)
    if where == "c-ip":
        line = tracker_line(1, client_ip=text)
    elif where == "x-forwarded-for":
        shown = (f"[{text}]:443" if address.version == 6 else f"{text}:443") if port else text
        line = tracker_line(1, forwarded_for=f"unknown, {shown}", client_ip="-")
    else:
        line = tracker_line(1, {"ip": text}, client_ip="-")
    run = run_core(LogBuilder(fields=33, lines=[line]).to_bytes(), canonicalizer=CANON)
    masked = ipaddress.ip_address(run.event["user_ipaddress"])
    if masked.version == 4:
        assert int(masked) & 0xFF == 0
    else:
        assert int(masked) & ((1 << 80) - 1) == 0
    if masked != address:
        text_out = event_text(run.event)
        for form in {text, address.exploded}:
            assert not re.search(_FULL.format(re.escape(form)), text_out), (form, run.event["user_ipaddress"])


# ================================================================================ S07
_ids = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\t\n\r"), max_size=40)


@settings(PROFILE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(uid=_ids.map("Ux~".__add__), duid=_ids.map("Dx~".__add__), nuid=_ids.map("Nx~".__add__))
def test_s07_pseudonyms_are_keyed_deterministic_and_the_raw_ids_and_key_never_leave(
    uid: str, duid: str, nuid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Reliability catalogue S07: HMAC-SHA256 pseudonymization of user_id, domain_userid, network_userid.

    GIVEN any identifiers WHEN transformed twice with one key and once with another THEN each
    column is the HMAC-SHA256 hex, under the key, of the value it holds without pseudonymization,
    the same key gives the same pseudonym, another key another one, and neither the raw ids nor
    the key appear in the event, in any log record, or in the repr of the configuration and
    canonicalizer.
    """
    caplog.clear()
    params = {"uid": uid, "duid": duid, "nuid": nuid}
    data = LogBuilder(fields=33, lines=[tracker_line(1, params)]).to_bytes()
    with caplog.at_level(logging.DEBUG):
        first = run_core(data, config=PSEUDO, canonicalizer=PSEUDO_CANON)
    if first.bad:  # only a value that breaks the tracker protocol or the schema (it never reaches an event)
        return
    event = first.event
    plain = run_core(data, canonicalizer=CANON).event  # the values as kept without pseudonymization
    columns = ("user_id", "domain_userid", "network_userid")
    for column in columns:
        assert event[column] == hmac.new(KEY, plain[column].encode(), hashlib.sha256).hexdigest()
    assert run_core(data, config=PSEUDO, canonicalizer=PSEUDO_TWIN).event["user_id"] == event["user_id"]
    assert run_core(data, config=PSEUDO, canonicalizer=PSEUDO_OTHER).event["user_id"] != event["user_id"]
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    text = event_text(event)
    for secret in (uid, duid, nuid, *(plain[column] for column in columns), KEY.decode()):
        assert secret not in text and secret not in logged
    assert KEY.decode() not in repr(PSEUDO) + repr(PSEUDO_CANON)


def test_s07_the_key_is_never_shipped_in_the_default_configuration() -> None:
    """Reliability catalogue S07: the key is not in code or in the shipped defaults.

    GIVEN the shipped configuration THEN pseudonymization has no key of its own (it must come
    from the environment variable it names or an overlay file), and no module of the packages
    holds a literal that the pseudonymizer would accept as a key.
    """
    defaults = make_config().transform.pseudonymize
    assert defaults.key == "" and defaults.key_env == "CLICKSTREAM_ETL_PSEUDONYMIZE_KEY"
    root = Path(__file__).resolve().parents[2]
    assignment = re.compile(r"""(?i)\b\w*key\w*\s*[:=]\s*b?["'][^"'\s]{16,}["']""")
    for package in ("pipeline", "extract", "transform", "load"):
        for source in (root / package).rglob("*.py"):
            if "testing" in source.parts:
                continue
            found = [m.group(0) for m in assignment.finditer(source.read_text("utf-8"))]
            assert not [f for f in found if "_env" not in f.lower() and "ENV" not in f], (source, found)


# ================================================================================ S08
REDACT = CONFIG.transform.redact.query_params
SECRET = "Zq9-s3cr3t-V4lue"


@pytest.mark.parametrize("name", REDACT)
def test_s08_every_denylisted_parameter_is_redacted_wherever_it_is_in_page_and_referrer_urls(name: str) -> None:
    """Reliability catalogue S08: the whole shipped denylist, in every URL part that is kept.

    GIVEN each configured parameter name, upper-cased in the page URL's query, as is in its
    fragment and in the referrer's query, plus a cookie header WHEN transformed THEN the secret
    value is nowhere in the event, the names stay with REDACTED values and are listed in
    etl_tags, and the cookie is never copied.
    """
    url = f"https://shop.example/p?lang=en&{name.upper()}={SECRET}#{name}={SECRET}1"
    refr = f"https://login.example/?{name}={SECRET}2"
    line = tracker_line(1, {"url": url, "refr": refr})
    cells = line.split("\t")
    cells[LEGACY_FIELDS.index("cs(Cookie)")] = f"session={SECRET}3"
    run = run_core(LogBuilder(fields=33, lines=["\t".join(cells)]).to_bytes(), canonicalizer=CANON)
    text = event_text(run.event)
    assert SECRET not in text
    assert f"{name.upper()}=REDACTED" in run.event["page_urlquery"] and f"{name}=REDACTED" in text
    assert f"redacted:{name.lower()}" in run.event["etl_tags"].split(",")


# ================================================================================ S09
FORGED = '{"level":"ERROR","message":"forged","location":"x"}'


def test_s09_crlf_and_ansi_in_keys_and_event_names_cannot_forge_log_lines(aws: None) -> None:
    """Reliability catalogue S09: CR, LF and ANSI escapes in what Extract logs.

    GIVEN notifications whose object keys and event names carry CRLF, a forged JSON log record
    and ANSI escape sequences WHEN Extract logs them (INFO) THEN every line of its output is one
    JSON record, no line is the forged one, and each key comes back verbatim from its record.
    """
    chain = Chain.create(chain_config())
    bucket = chain.config.resources.log_bucket
    evil = f"cf/evil\r\n{FORGED}\n\x1b[2J\x1b[31m/"
    own = f"{chain.config.resources.bad_prefix}x\n{FORGED}.jsonl"
    events = [
        s3_object_created_event(bucket, evil),
        s3_object_created_event(chain.config.resources.output_bucket, own),
        s3_object_created_event(bucket, "cf/k.gz", event_name=f"ObjectRemoved:Delete\n{FORGED}\x1b[0m"),
    ]
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(extract_logger.registered_formatter)
    extract_logger.addHandler(capture)
    try:
        for event in events:
            extract(event, FakeLambdaContext(), chain.extract_deps())
    finally:
        extract_logger.removeHandler(capture)
    lines = [line for line in stream.getvalue().split("\n") if line]
    records = [json.loads(line) for line in lines]  # raises if a line is not one whole JSON record
    assert len(records) >= 3 and FORGED not in lines and not any("\x1b" in line for line in lines)
    objects = {r.get("object") for r in records}
    assert f"s3://{bucket}/{evil}" in objects and f"s3://{chain.config.resources.output_bucket}/{own}" in objects
    assert any(FORGED in str(r.get("reason", "")) for r in records)


# ================================================================================ S10
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,126}")


@PROFILE
@given(name=st.one_of(st.text(max_size=140), st.from_regex(_NAME, fullmatch=True)))
def test_s10_a_configured_table_name_is_a_plain_identifier_quoted_in_the_ddl_or_refused(name: str) -> None:
    """Reliability catalogue S10: whatever the configuration names a table.

    GIVEN any text as ``redshift.table`` WHEN the tables are resolved THEN it is refused with a
    configuration error naming the key unless it is a plain lowercase identifier, and an
    accepted name appears in the generated DDL double-quoted.
    """
    try:
        tables = RedshiftTables.from_config(replace(CONFIG.redshift, table=name))
    except InvalidIdentifierError as exc:
        assert not _NAME.fullmatch(name) and "redshift.table" in str(exc)
        return
    except ConfigError as exc:  # a valid name equal to another table's
        assert _NAME.fullmatch(name) and "different names" in str(exc)
        return
    assert _NAME.fullmatch(name)
    script = render_script(ddl_statements(tables))
    assert f'"{name}"' in script


@PROFILE
@given(value=st.text(max_size=60))
def test_s10_values_reach_sql_only_as_parameters(value: str) -> None:
    """Reliability catalogue S10: values (prefixes, times) never become SQL text.

    GIVEN any text inside an S3 prefix or a time WHEN the load's lookups are built THEN the text
    is in the statement's parameters and never in its SQL.
    """
    marker = f"QZXQ{value}QZXQ"
    root = S3Location.parse(f"s3://bucket/{marker.replace('/', '_')}/")
    tables = RedshiftTables.from_config(CONFIG.redshift)
    for statement in (load_errors_since(marker, f"s3://bucket/{marker}"), ledger_lookup(tables, root)):
        assert "QZXQ" not in statement.sql
        assert any("QZXQ" in parameter for _, parameter in statement.parameters)


# ================================================================================ S11
_segments = st.sampled_from(
    ["events", "other", "..", ".", "", "event_date=2024-11-15", "event_date=٢٠٢٤-١١-١٥", "event_hour=09",
     "event_hour=٠٩", "event_hour=9", "part-00000.parquet", ".part.parquet.tmp", "..parquet", "x.parquet", "_SUCCESS"]
)  # fmt: skip
_partition_like = st.tuples(
    st.sampled_from(["events", "other", "events/..", "events/.", "events/", "events/x/.."]),
    st.sampled_from(
        ["event_date=2024-11-15", "event_date=2024-11-5", "event_date=٢٠٢٤-١١-١٥", "event_date=2024-11-15/."]
    ),
    st.sampled_from(["event_hour=09", "event_hour=٠٩", "event_hour=9", "event_hour=09/..", "event_hour=23"]),
    st.sampled_from(["part-00000.parquet", "..parquet", ".p.parquet", "x.parquet.tmp", "shardId-1-2-3.parquet"]),
).map("/".join)


@PROFILE
@given(
    keys=st.lists(st.one_of(_partition_like, st.lists(_segments, min_size=1, max_size=6).map("/".join)), max_size=12)
)
def test_s11_the_redshift_load_plans_only_keys_under_its_prefix_and_manifests_under_theirs(keys: list[str]) -> None:
    """Reliability catalogue S11: listed keys with ``..``, ``.``, empty segments and other prefixes.

    GIVEN any keys listed under ``s3://bucket/events/`` WHEN the backfill load is planned THEN
    every planned file is a Parquet file of an ``event_date=YYYY-MM-DD/event_hour=HH`` partition
    (ASCII digits) right under ``events/`` with no ``.`` or ``..`` segment, every manifest key is
    under the manifest prefix, and the rest is counted as ignored.
    """
    root = S3Location.parse("s3://bucket/events/")
    objects = [S3Object(key, 1, f"etag-{n}") for n, key in enumerate(keys)]
    plan = plan_backfill(root, objects, {}, "redshift/manifests/")
    planned = [f for p in plan.partitions for f in p.files]
    assert len(planned) + plan.ignored_keys == len(objects)
    layout = re.compile(r"events/event_date=[0-9]{4}-[0-9]{2}-[0-9]{2}/event_hour=[0-9]{2}/[^/]+\.parquet", re.ASCII)
    for file in planned:
        assert layout.fullmatch(file.key), file.key
        assert not {".", ".."} & set(file.key.split("/"))
    for partition in plan.partitions:
        assert partition.manifest_key.startswith("redshift/manifests/")
        assert not {".", "..", ""} & set(partition.manifest_key.split("/"))


@PROFILE
@given(name=st.text(alphabet=st.characters(exclude_characters="\x00/"), min_size=1, max_size=120))
def test_s11_bad_row_files_of_any_source_name_stay_inside_dest(name: str) -> None:
    """Reliability catalogue S11: the backfill names bad-row files after their source.

    GIVEN a source file of any name (dots, ``..``, spaces, glob characters, Unicode) WHEN its
    bad-rows file name is made THEN it is one plain path segment, so the file lands directly in
    ``DEST/bad/<kind>/`` and nowhere else.
    """
    fragment = SourceFile(f"/logs/{name}", 0, 0).fragment
    assert re.fullmatch(r"[A-Za-z0-9._-]+", fragment) and fragment not in (".", "..")
    path = PurePosixPath("/dest/bad/field_count") / f"{fragment}.jsonl"
    assert os.path.normpath(path).startswith("/dest/bad/field_count/")


def test_s11_a_dest_reaching_into_a_source_by_a_link_dots_or_a_glob_is_refused(tmp_path: Path) -> None:
    """Reliability catalogue S11: DEST inside SOURCE, however it is spelled.

    GIVEN a source folder WHEN DEST is inside it through a symbolic link, is it through ``x/..``,
    or a recursive glob SOURCE matches files a previous run left in DEST THEN the backfill refuses
    (InputError, exit 2) before writing anything; a DEST beside the sources is accepted.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "E1.2024-11-15-10.a.gz").write_bytes(gz_log(tracker_line()))
    link = tmp_path / "link"
    link.symlink_to(logs, target_is_directory=True)
    for dest in (link / "out", logs / "x" / ".."):
        with pytest.raises(InputError, match="inside SOURCE"):
            check_destination(dest, [str(logs)])
    assert not (logs / "out").exists()
    pattern = str(logs / "**" / "*")
    (logs / "out").mkdir()
    (logs / "out" / "_summary.json").write_text("{}")
    with pytest.raises(InputError, match="which SOURCE matches"):
        check_destination(logs / "out", [pattern], plan_sources(pattern))
    beside = tmp_path / "dest"
    check_destination(beside, [str(logs)], plan_sources(str(logs)))
    assert beside.is_dir()
