"""template.yaml, statically: the SAM template and its translation to CloudFormation (issue 11).

The template is checked against the code that declares the same things, so the two cannot drift:
pipeline/topology.py (event source mappings, queues, schedules, functions), pipeline/schema.py
(the Glue columns), the Firehose destination of load/redshift, the ledger's key schema and TTL, the
prefixes of config/default.toml and the key planners of the sinks.  Every role is compared with
its golden allow-list in deploy/iam/.  What moto cannot emulate (bucket notifications, policies,
Firehose, alarms, Glue) is asserted here; tests/functional/test_template_deploy.py deploys the rest.
Security checks that checkov lacks (TLS-only policies, Firehose encryption, notification filters,
runtime deprecation) are here too (reliability.md section 6).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from deploy import policies, sections
from deploy.cfn import ACCOUNT, REGION, ROOT, TEMPLATE, Evaluator, load_template, translate, with_s3_code
from extract.notifications import ObjectNotice
from extract.stage import is_own_output
from load.redshift.backfill_plan import S3Location, S3Object, plan_backfill
from load.redshift.firehose_destination import firehose_redshift_destination
from load.redshift.identifiers import RedshiftTables
from load.sink_plan import ScreenedBatch, batch_key, plan_objects
from pipeline.aws.badsink import plan_bad_objects
from pipeline.aws.ledger import TTL_ATTRIBUTE
from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.config import PipelineConfig, load_config
from pipeline.constants import (
    CONFIG_ENV_PREFIX,
    EXTRACT_FUNCTION_NAME_ENV,
    METRICS_NAMESPACE,
    RECONCILE_PREFIX_ENV,
)
from pipeline.schema import FIELDS
from pipeline.topology import (
    ASYNC_FAILURE_QUEUE,
    EXTRACT_FUNCTION,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    NAME_PREFIX,
    NOTIFICATION_QUEUE,
    PIPELINE_MODES,
    FunctionSpec,
    functions,
    notification_mapping,
    scheduled_functions,
    stream_mappings,
)

REDSHIFT = {
    "serverless": {
        "RedshiftMode": "serverless",
        "RedshiftTarget": "analytics",
        "RedshiftWorkgroupId": "0123abcd-0123-4567-89ab-0123456789ab",
        "RedshiftJdbcUrl": f"jdbc:redshift://analytics.{ACCOUNT}.{REGION}.redshift-serverless.amazonaws.com:5439/dev",
        "RedshiftSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:redshift-AbCdEf",
    },
    "provisioned": {
        "RedshiftMode": "provisioned",
        "RedshiftTarget": "analytics",
        "RedshiftJdbcUrl": f"jdbc:redshift://analytics.abc123.{REGION}.redshift.amazonaws.com:5439/dev",
        "RedshiftSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:redshift-AbCdEf",
    },
}
"""Parameter values of each RedshiftMode (the Rules require them)."""

# Every configuration worth telling apart: each mode, with and without Redshift and a bucket of one's own.
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "streaming": {},
    "streaming+serverless": REDSHIFT["serverless"],
    "streaming+provisioned": REDSHIFT["provisioned"],
    "direct": {"PipelineMode": "direct"},
    "streaming+existing-bucket": {"ExistingRawLogsBucket": "my-cloudfront-logs", "RawLogsPrefix": "cf/"},
    "direct+existing-bucket": {"PipelineMode": "direct", "ExistingRawLogsBucket": "my-cloudfront-logs"},
    "streaming+collector": {"Collector": "function-url"},
    "streaming+collector-api": {"Collector": "http-api", "CollectorCloudFront": "disabled"},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    return translate(with_s3_code(template, "artifacts"))


@pytest.fixture(scope="module")
def defaults() -> PipelineConfig:
    return load_config(environ={})


def evaluator(template: dict[str, Any], configuration: str = "streaming", **parameters: str) -> Evaluator:
    return Evaluator(template, {**CONFIGURATIONS[configuration], **parameters})


def resources_of(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def sam_functions(template: dict[str, Any]) -> dict[str, Any]:
    return resources_of(template, "AWS::Serverless::Function")


def environment(translated: dict[str, Any], function: str, ev: Evaluator) -> dict[str, str]:
    """A function's environment (the Globals merged in by SAM) in one configuration."""
    variables = translated["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return {k: str(v) for k, v in ev.resolve(variables).items()}


def name_of(ev: Evaluator, logical_id: str) -> str:
    properties = ev.template["Resources"][logical_id]["Properties"]
    for key in ("FunctionName", "QueueName", "BucketName", "Name", "TableName", "LogGroupName", "DeliveryStreamName"):
        if key in properties:
            return str(ev.resolve(properties[key]))
    raise KeyError(f"{logical_id} has no name property")


def by_name(ev: Evaluator, kind: str, name: str) -> str:
    """The logical id of the resource of ``kind`` named ``name`` in this configuration."""
    found = [logical for logical in ev.resources(kind) if name_of(ev, logical) == name]
    assert len(found) == 1, f"{kind} named {name}: {found}"
    return found[0]


# --------------------------------------------------------------------------- the template as a whole
def test_the_template_translates_and_every_serverless_resource_becomes_cloudformation(
    translated: dict[str, Any],
) -> None:
    assert not [r for r in translated["Resources"].values() if r["Type"].startswith("AWS::Serverless::")]
    kinds = {r["Type"] for r in translated["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::Events::Rule"} <= kinds
    # SAM adds no role of its own: every function runs with the role the template gives it.
    assert all("Role" in r["Properties"] for r in resources_of(translated, "AWS::Lambda::Function").values())


def test_the_generated_sections_are_up_to_date() -> None:
    """Glue columns and Firehose's COPY command come from the code (python -m deploy.sections --write)."""
    text = TEMPLATE.read_text("utf-8")
    assert sections.section_names(text) == ["glue-columns", "copy-command"]
    assert sections.render(text) == text, "run python -m deploy.sections --write"


def test_every_parameter_is_validated_documented_used_and_its_default_allowed(template: dict[str, Any]) -> None:
    text = json.dumps({k: v for k, v in template.items() if k != "Parameters"})
    for name, spec in template["Parameters"].items():
        assert spec.get("Description"), name
        if spec["Type"] == "String":
            assert "AllowedPattern" in spec or "AllowedValues" in spec, f"{name} is not validated"
        else:
            assert spec["Type"] == "Number"
            assert "AllowedValues" in spec or {"MinValue", "MaxValue"} <= spec.keys(), f"{name} is unbounded"
        default = spec.get("Default")
        assert default is not None, f"{name} has no default"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], str(default)), name
        if "AllowedValues" in spec:
            assert default in spec["AllowedValues"], name
        assert f'"Ref": "{name}"' in text or f"${{{name}}}" in text, f"{name} is never used"
    assert template["Parameters"]["NamePrefix"]["Default"] == NAME_PREFIX


@pytest.mark.parametrize(
    ("parameter", "good", "bad"),
    [
        ("NamePrefix", ["cs", "clickstream-etl", "a1-b2"], ["", "Clickstream", "-cs", "cs-", "a" * 21, "c_s"]),
        ("RawLogsPrefix", ["", "cf/", "logs/cloudfront/"], ["cf", "/cf/", "a//", "cf/*"]),
        ("RawLogsSuffix", ["", ".gz", ".log.gz"], ["gz", ".g z", "*"]),
        ("ExistingRawLogsBucket", ["", "my-logs", "logs.example.com"], ["My-Logs", "-x", "a"]),
        ("RedshiftSecretArn", ["", REDSHIFT["serverless"]["RedshiftSecretArn"]], ["secret", "arn:aws:s3:::b"]),
        ("RedshiftJdbcUrl", ["", REDSHIFT["provisioned"]["RedshiftJdbcUrl"]], ["https://x", "jdbc:redshift://h/db"]),
        ("AlarmTopicArn", ["", f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms"], ["alarms", f"arn:aws:sqs:{REGION}:1:q"]),
    ],
)
def test_parameter_patterns_accept_what_aws_accepts_and_refuse_the_rest(
    template: dict[str, Any], parameter: str, good: list[str], bad: list[str]
) -> None:
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    assert [v for v in good if not re.fullmatch(pattern, v)] == []
    assert [v for v in bad if re.fullmatch(pattern, v)] == []


def test_rules_refuse_redshift_without_its_settings_and_redshift_in_the_direct_mode(template: dict[str, Any]) -> None:
    rules = template["Rules"]
    assert rules["DirectModeLoadsNoRedshift"]["RuleCondition"] == {"Fn::Equals": [{"Ref": "PipelineMode"}, "direct"]}
    asserted = {
        a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for a in rules["RedshiftNeedsItsTarget"]["Assertions"]
    }
    assert asserted == {"RedshiftTarget", "RedshiftJdbcUrl", "RedshiftSecretArn"}
    # And the Redshift resources exist only when those are given, whatever the Rules say.
    assert not evaluator(template, "streaming", RedshiftMode="serverless").condition("StreamingWithRedshift")
    assert evaluator(template, "streaming+serverless").condition("StreamingWithRedshift")


# --------------------------------------------------------------------------- functions (topology)
def _deployed(spec: FunctionSpec, configuration: str) -> bool:
    mode = "direct" if configuration.startswith("direct") else "streaming"
    return (
        mode in spec.modes
        and (not spec.redshift or "+serverless" in configuration or "+provisioned" in configuration)
        and (not spec.collector or "+collector" in configuration)
    )


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_each_configuration_deploys_the_functions_topology_declares_for_it(
    template: dict[str, Any], defaults: PipelineConfig, configuration: str
) -> None:
    ev = evaluator(template, configuration)
    expected = {logical for logical, spec in functions(defaults).items() if _deployed(spec, configuration)}
    assert set(ev.resources("AWS::Serverless::Function")) == expected


def test_functions_equal_topology_memory_timeout_concurrency_code_and_layers(
    template: dict[str, Any], defaults: PipelineConfig
) -> None:
    """Reliability catalogue S04."""
    declared = functions(defaults)
    assert set(sam_functions(template)) == set(declared)
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == LAMBDA_RUNTIME and globals_["Architectures"] == [LAMBDA_ARCHITECTURE]
    ev = Evaluator(template, {"PipelineMode": "streaming", **REDSHIFT["serverless"]})
    for logical, spec in declared.items():
        p = template["Resources"][logical]["Properties"]
        assert ev.resolve(p["FunctionName"]) == spec.function, logical
        assert p["Handler"] == spec.handler, logical
        assert p["CodeUri"] == f"lambda-artifacts/{spec.artifact}/", logical
        assert (p["MemorySize"], p["Timeout"]) == (spec.memory_mb, spec.timeout_s), logical
        assert p["ReservedConcurrentExecutions"] == {
            "Fn::If": ["ReserveConcurrency", spec.reserved_concurrency, {"Ref": "AWS::NoValue"}]
        }, logical
        assert p.get("Layers", []) == ([{"Ref": "PyarrowLayer"}] if spec.pyarrow_layer else []), logical
        assert "Runtime" not in p and "Architectures" not in p, f"{logical} overrides the Globals"
    layer = template["Resources"]["PyarrowLayer"]["Properties"]
    assert layer["ContentUri"] == "lambda-artifacts/pyarrow-layer/"
    assert layer["CompatibleRuntimes"] == [LAMBDA_RUNTIME] and layer["CompatibleArchitectures"] == [LAMBDA_ARCHITECTURE]


def test_the_artifacts_package_builds_serve_every_handler_with_the_runtime_of_the_template(
    defaults: PipelineConfig,
) -> None:
    """The contract with ``clickstream-etl package``: folder names, handlers, layer, Python version."""
    from pipeline.app import packaging

    assert LAMBDA_RUNTIME == f"python{packaging.DEFAULT_PYTHON}"
    assert packaging.LAYER == "pyarrow-layer"
    for logical, spec in functions(defaults).items():
        artifact = packaging.SPECS_BY_NAME[spec.artifact]
        assert spec.handler in artifact.handlers, logical
    # Extract and Transform never run with pyarrow (cold starts); the others that need it do.
    layered = {spec.artifact for spec in functions(defaults).values() if spec.pyarrow_layer}
    assert layered == {"load", "direct"}
    assert not packaging.SPECS_BY_NAME["extract"].layers and not packaging.SPECS_BY_NAME["transform"].layers


def test_every_built_handler_imports_and_is_callable(defaults: PipelineConfig) -> None:
    for logical, spec in functions(defaults).items():
        module, name = spec.handler.rsplit(".", 1)
        if importlib.util.find_spec(module) is None:
            # Declared ahead of its code (issue 11, item 5): only the direct mode's function.
            assert logical == "DirectFunction", f"{spec.handler} does not exist"
            continue
        handler = getattr(importlib.import_module(module), name)
        assert callable(handler), spec.handler


# Lambda's deprecation dates: https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
_PYTHON_DEPRECATION = {
    "python3.12": date(2028, 10, 31),
    "python3.13": date(2029, 6, 30),
    "python3.14": date(2029, 6, 30),
}


def test_the_runtime_is_not_deprecated(template: dict[str, Any]) -> None:
    """Reliability catalogue S04."""
    runtime = template["Globals"]["Function"]["Runtime"]
    assert runtime in _PYTHON_DEPRECATION, f"{runtime}: add its deprecation date or pick a supported runtime"
    assert datetime.now(UTC).date() < _PYTHON_DEPRECATION[runtime]


def test_every_function_logs_to_its_own_encrypted_log_group_with_retention(template: dict[str, Any]) -> None:
    ev = evaluator(template)
    for logical, function in sam_functions(template).items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        resource = template["Resources"][group]
        assert resource["Type"] == "AWS::Logs::LogGroup"
        assert resource.get("Condition") == function.get("Condition"), logical
        properties = resource["Properties"]
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert properties["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
        assert (
            ev.resolve(properties["LogGroupName"])
            == f"/aws/lambda/{ev.resolve(function['Properties']['FunctionName'])}"
        )
    groups = resources_of(template, "AWS::Logs::LogGroup")
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_the_environment_configures_each_function_for_the_resources_of_the_stack(
    template: dict[str, Any], translated: dict[str, Any], configuration: str
) -> None:
    """The CLICKSTREAM_ETL__* overrides parse (TOML values) and name the stack's own resources."""
    ev = evaluator(translated, configuration)
    tev = evaluator(template, configuration)
    raw_bucket = CONFIGURATIONS[configuration].get("ExistingRawLogsBucket") or name_of(tev, "RawLogsBucket")
    for logical in ev.resources("AWS::Lambda::Function"):
        env = environment(translated, logical, ev)
        config = load_config(environ=env)
        r = config.resources
        assert config.aws.region == REGION
        assert r.log_bucket == raw_bucket
        assert r.output_bucket == name_of(tev, "OutputBucket")
        assert r.ledger_table == name_of(tev, "LedgerTable")
        assert r.raw_stream == name_of(tev, "RawStream") and r.events_stream == name_of(tev, "EventsStream")
        assert r.redshift_firehose == name_of(tev, "RedshiftDeliveryStream")
        assert not [k for k in env if k.startswith(CONFIG_ENV_PREFIX) and "PSEUDONYMIZE" in k], "no secret in env"


def test_the_loader_reaches_the_redshift_target_of_each_mode(translated: dict[str, Any]) -> None:
    from load.redshift.executor import DataApiTarget

    for mode, values in REDSHIFT.items():
        ev = Evaluator(translated, values)
        config = load_config(environ=environment(translated, "RedshiftLoaderFunction", ev))
        target = DataApiTarget.from_config(config.redshift).request_arguments()
        key = "WorkgroupName" if mode == "serverless" else "ClusterIdentifier"
        assert target == {"Database": "dev", key: "analytics", "SecretArn": values["RedshiftSecretArn"]}


# --------------------------------------------------------------------------- event source mappings
def _mappings(translated: dict[str, Any], ev: Evaluator) -> dict[str, dict[str, Any]]:
    """Resolved event source mappings by function logical id (one each)."""
    out: dict[str, dict[str, Any]] = {}
    for logical in ev.resources("AWS::Lambda::EventSourceMapping"):
        properties = ev.resolve(translated["Resources"][logical]["Properties"])
        function = properties["FunctionName"].strip("<>")
        assert function not in out, f"{function} has two mappings"
        out[function] = properties
    return out


def test_stream_mappings_equal_topology(template: dict[str, Any], translated: dict[str, Any]) -> None:
    """Reliability F13: the deployed mappings are the ones run-local simulates (topology.stream_mappings)."""
    ev = evaluator(translated, "streaming")
    tev = evaluator(template, "streaming")
    deployed = _mappings(translated, ev)
    for key, mapping in stream_mappings(load_config(environ=environment(translated, "TransformFunction", ev))).items():
        function = by_name(tev, "AWS::Serverless::Function", mapping.function)
        stream = by_name(tev, "AWS::Kinesis::Stream", mapping.stream)
        queue = by_name(tev, "AWS::SQS::Queue", mapping.on_failure_queue)
        expected = mapping.to_aws(f"<{stream}.Arn>", f"<{function}>", f"<{queue}.Arn>")
        actual = dict(deployed[function])
        actual.setdefault("FunctionResponseTypes", [])
        assert actual == expected, key


def test_the_notification_queue_mapping_equals_topology_in_both_modes(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    mapping = notification_mapping()
    for mode, consumer in (("streaming", "ExtractFunction"), ("direct", "DirectFunction")):
        ev = evaluator(translated, mode)
        tev = evaluator(template, mode)
        queue = by_name(tev, "AWS::SQS::Queue", mapping.queue)
        sqs_mappings = {f: m for f, m in _mappings(translated, ev).items() if m["EventSourceArn"] == f"<{queue}.Arn>"}
        assert list(sqs_mappings) == [consumer], f"{mode}: the notifications reach {consumer} and only it"
        assert sqs_mappings[consumer] == mapping.to_aws(f"<{queue}.Arn>", f"<{consumer}>")
        attributes = tev.resolve(template["Resources"][queue]["Properties"])
        dead_letter = by_name(tev, "AWS::SQS::Queue", mapping.dead_letter_queue)
        assert attributes["VisibilityTimeout"] == mapping.visibility_timeout_s
        assert attributes["RedrivePolicy"] == {
            "deadLetterTargetArn": f"<{dead_letter}.Arn>",
            "maxReceiveCount": mapping.max_receive_count,
        }
        # Lambda refuses a queue whose visibility timeout is shorter than its consumer's timeout, and a
        # busy object's message must come back after the holder's lease (one timeout, claimed at most
        # one timeout after the message was received) can have ended.
        assert mapping.visibility_timeout_s >= 2 * template["Resources"][consumer]["Properties"]["Timeout"]
    assert mapping.function == EXTRACT_FUNCTION and mapping.queue == NOTIFICATION_QUEUE


def mapping_problems(translated: dict[str, Any], ev: Evaluator) -> list[str]:
    """What makes a mapping lose data: reliability.md section 2.2 and topology's docstrings."""
    problems: list[str] = []
    queues = {f"<{q}.Arn>" for q in ev.resources("AWS::SQS::Queue")}
    for function, m in _mappings(translated, ev).items():
        if ":kinesis:" in str(m["EventSourceArn"]) or "Stream" in str(m["EventSourceArn"]):
            if m.get("BisectBatchOnFunctionError") is not True:
                problems.append(f"{function}: no bisect")
            if not 0 <= m.get("MaximumRetryAttempts", -1) <= 10_000:
                problems.append(f"{function}: retries are not bounded")
            if not 60 <= m.get("MaximumRecordAgeInSeconds", -1) <= 604_800:
                problems.append(f"{function}: record age is not bounded")
            if m.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination") not in queues:
                problems.append(f"{function}: no on-failure destination")
            if m.get("StartingPosition") != "TRIM_HORIZON":
                problems.append(f"{function}: starts elsewhere than the oldest record")
            wants = stream_mappings(load_config(environ={}))
            reports = {s.function: s.report_batch_item_failures for s in wants.values()}
            name = ev.resolve(ev.template["Resources"][function]["Properties"]["FunctionName"])
            if reports.get(name) and m.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
                problems.append(f"{function}: partial batch responses would be ignored")
        elif m.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
            problems.append(f"{function}: a busy object's message would be deleted with its batch")
    return problems


def test_no_mapping_can_lose_data_in_any_configuration(translated: dict[str, Any]) -> None:
    """Reliability catalogue F13."""
    for configuration in CONFIGURATIONS:
        assert mapping_problems(translated, evaluator(translated, configuration)) == [], configuration


def _drop(properties: dict[str, Any], key: str) -> None:
    properties.pop(key)


@pytest.mark.parametrize(
    ("mapping", "change", "problem"),
    [
        ("TransformFunctionRawStream", lambda p: _drop(p, "FunctionResponseTypes"), "partial batch responses"),
        ("TransformFunctionRawStream", lambda p: p.update(MaximumRetryAttempts=-1), "retries are not bounded"),
        ("ParquetSinkFunctionEventsStream", lambda p: _drop(p, "MaximumRecordAgeInSeconds"), "record age"),
        ("ParquetSinkFunctionEventsStream", lambda p: p.update(BisectBatchOnFunctionError=False), "no bisect"),
        ("TransformFunctionRawStream", lambda p: _drop(p, "DestinationConfig"), "no on-failure destination"),
        ("ExtractFunctionNotifications", lambda p: _drop(p, "FunctionResponseTypes"), "would be deleted"),
    ],
)
def test_the_mapping_check_fails_when_a_mapping_loses_a_safety_setting(
    translated: dict[str, Any], mapping: str, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    """Reliability catalogue F13."""
    broken = copy.deepcopy(translated)
    change(broken["Resources"][mapping]["Properties"])
    found = mapping_problems(broken, evaluator(broken, "streaming"))
    assert len(found) == 1 and problem in found[0], found


def test_schedules_equal_topology(template: dict[str, Any], defaults: PipelineConfig) -> None:
    ev = evaluator(template, "streaming+serverless")
    for scheduled in scheduled_functions(defaults).values():
        logical = by_name(ev, "AWS::Serverless::Function", scheduled.function)
        p = template["Resources"][logical]["Properties"]
        (event,) = p["Events"].values()
        rule = scheduled.rule()
        assert event["Type"] == "Schedule"
        resolved = ev.resolve(event["Properties"])
        assert (resolved["Name"], resolved["Schedule"], resolved["Enabled"]) == (
            rule["Name"],
            rule["ScheduleExpression"],
            rule["State"] == "ENABLED",
        )
        assert p["Timeout"] == scheduled.timeout_s
        assert p["ReservedConcurrentExecutions"]["Fn::If"][1] == scheduled.reserved_concurrency
        # A run that fails waits for the next one; it is not retried on top of it.
        assert p["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
        for key, value in scheduled.environment.items():
            assert ev.resolve(p["Environment"]["Variables"][key]) == value


def test_the_reconciler_lists_the_log_prefix_and_redrives_to_the_function_of_the_mode(template: dict[str, Any]) -> None:
    variables = template["Resources"]["ExtractReconcilerFunction"]["Properties"]["Environment"]["Variables"]
    for mode, target in (("streaming", EXTRACT_FUNCTION), ("direct", f"{NAME_PREFIX}-direct")):
        ev = evaluator(template, mode, RawLogsPrefix="cf/")
        assert ev.resolve(variables[EXTRACT_FUNCTION_NAME_ENV]) == target
        assert ev.resolve(variables[RECONCILE_PREFIX_ENV]) == "cf/"


def test_object_functions_send_failed_asynchronous_invocations_to_a_queue(template: dict[str, Any]) -> None:
    """Reliability catalogue S04: Continuations and re-drives are asynchronous: after a few retries they land in a
    queue, not nowhere.
    """
    ev = evaluator(template)
    assert name_of(ev, "AsyncFailureQueue") == ASYNC_FAILURE_QUEUE
    for logical in ("ExtractFunction", "DirectFunction"):
        config = template["Resources"][logical]["Properties"]["EventInvokeConfig"]
        assert config["DestinationConfig"]["OnFailure"] == {
            "Type": "SQS",
            "Destination": {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]},
        }
        assert 0 <= config["MaximumRetryAttempts"] <= 2 and config["MaximumEventAgeInSeconds"] <= 21_600


# --------------------------------------------------------------------------- the S3 notification
def notification_configs(ev: Evaluator) -> dict[str, list[dict[str, Any]]]:
    """Bucket name -> its queue/topic/lambda notifications, resolved (the template's own buckets)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for logical, bucket in ev.resources("AWS::S3::Bucket").items():
        notifications = ev.resolve(bucket["Properties"].get("NotificationConfiguration", {}))
        out[name_of(ev, logical)] = [c for kind in notifications.values() for c in kind]
    return out


def triggers(config: dict[str, Any], key: str) -> bool:
    """Whether an ObjectCreated of ``key`` matches the notification (S3's prefix and suffix rules)."""
    rules = {r["Name"]: r["Value"] for r in config.get("Filter", {}).get("S3Key", {}).get("Rules", [])}
    return key.startswith(rules.get("prefix", "")) and key.endswith(rules.get("suffix", ""))


def keys_the_pipeline_writes(config: PipelineConfig, firehose: dict[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of every kind of object the code writes, from its own key planners."""
    r = config.resources
    collector_ms = 1_731_697_200_000  # 2024-11-15T19:00:00Z
    batch = ScreenedBatch(1, 1, ({"collector_tstamp": collector_ms, "event_id": "e"},), (), 0, 0, collector_ms)
    parquet = plan_objects(batch, batch_key("shardId-000000000000", "49590", "49599"), r.events_prefix).objects
    row = BadRow(FailureKind.FIELD_COUNT, ("2 fields",), SourceRef("s3://logs/E2.gz", 3), "a\tb")
    bad = [
        key
        for stage in ("extract", "transform", "load")
        for key in plan_bad_objects([row], prefix=r.bad_prefix, stage=stage, batch_id="b1", etl_tstamp=collector_ms)
    ]
    root = S3Location(r.output_bucket, r.events_prefix)
    files = [S3Object(f"{r.events_prefix}event_date=2024-11-15/event_hour=19/x.parquet", 10, "etag")]
    manifests = [p.manifest_key for p in plan_backfill(root, files, {}, config.redshift.manifest_prefix).partitions]
    # Firehose's object names (https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html):
    # intermediate files, the Redshift COPY manifests, and failed records under ErrorOutputPrefix.
    stream, prefix, errors = firehose["DeliveryStreamName"], firehose["Prefix"], firehose["ErrorOutputPrefix"]
    name = f"{stream}-1-2024-11-15-19-05-00-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    firehose_keys = [
        f"{prefix}2024/11/15/19/{name}.gz",
        f"{prefix}manifests/2024/11/15/19/{name}",
        f"{errors}processing-failed/2024/11/15/19/{name}.gz",
        f"{errors}{name}.gz",
    ]
    keys = [*parquet, *bad, *manifests, *firehose_keys]
    assert len(keys) >= 8
    return [(r.output_bucket, key) for key in keys]


def _firehose(ev: Evaluator) -> dict[str, Any]:
    stream = ev.resolve(ev.template["Resources"]["RedshiftDeliveryStream"]["Properties"])
    s3 = stream["RedshiftDestinationConfiguration"]["S3Configuration"]
    return {"DeliveryStreamName": stream["DeliveryStreamName"], **s3}


def triggered(ev: Evaluator, deployed: PipelineConfig) -> list[str]:
    """The keys the code writes (in ``deployed``'s buckets) that a notification of ``ev`` would announce."""
    notifications = notification_configs(ev)
    firehose = _firehose(Evaluator(ev.template, {**ev.parameters, **REDSHIFT["serverless"]}))
    return [
        f"{bucket}/{key}"
        for bucket, key in keys_the_pipeline_writes(deployed, firehose)
        if any(triggers(c, key) for c in notifications.get(bucket, []))
    ]


def deployed_config(translated: dict[str, Any], configuration: str) -> PipelineConfig:
    """The configuration the functions run with (their environment) in ``configuration``."""
    ev = evaluator(translated, configuration)
    return load_config(environ=environment(translated, "ExtractReconcilerFunction", ev))


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_nothing_the_pipeline_writes_can_trigger_extract(
    template: dict[str, Any], translated: dict[str, Any], configuration: str
) -> None:
    """Reliability catalogue S05: Every key the code writes lands in OutputBucket, which notifies nothing; the raw
    bucket
    notifies for the log prefix and suffix only.  Extract's own guard (is_own_output) refuses them
    too, should someone wire OutputBucket's notifications to the queue by hand."""
    ev = evaluator(template, configuration)
    deployed = deployed_config(translated, configuration)
    assert triggered(ev, deployed) == []
    for bucket, key in keys_the_pipeline_writes(deployed, _firehose(evaluator(template, "streaming+serverless"))):
        assert bucket == name_of(ev, "OutputBucket")
        assert is_own_output(ObjectNotice(bucket, key, "etag", 1), deployed), key
    assert deployed.resources.log_bucket != deployed.resources.output_bucket


def test_the_raw_bucket_notifies_the_queue_for_log_objects_only(template: dict[str, Any]) -> None:
    ev = evaluator(template, "streaming", RawLogsPrefix="cf/")
    raw = name_of(ev, "RawLogsBucket")
    (config,) = notification_configs(ev)[raw]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Queue"] == "<NotificationQueue.Arn>"
    assert triggers(config, "cf/E2EXAMPLE.2024-11-15-19.abcd1234.gz")
    assert not triggers(config, "cf/E2EXAMPLE.2024-11-15-19.abcd1234.parquet")
    assert not triggers(config, "elsewhere/E2EXAMPLE.2024-11-15-19.abcd1234.gz")
    # Exactly one bucket notifies, and only the queue that topology's mapping reads.
    assert [b for b, configs in notification_configs(ev).items() if configs] == [raw]
    assert name_of(ev, "NotificationQueue") == NOTIFICATION_QUEUE
    # Without prefix nor suffix, the filter goes (S3 refuses empty filter rules).
    bare = evaluator(template, "streaming", RawLogsSuffix="")
    (config,) = notification_configs(bare)[raw]
    assert "Filter" not in config


def test_the_notification_check_fails_when_the_output_bucket_would_notify_extract(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Reliability catalogue S05: The bucket, not the filter, keeps Firehose's .gz files away: with the raw bucket's
    default
    filter on OutputBucket, the check finds them."""
    broken = copy.deepcopy(template)
    notification = broken["Resources"]["RawLogsBucket"]["Properties"]["NotificationConfiguration"]
    broken["Resources"]["OutputBucket"]["Properties"]["NotificationConfiguration"] = copy.deepcopy(notification)
    hits = triggered(evaluator(broken, "streaming"), deployed_config(translated, "streaming"))
    assert hits and all("/firehose/" in key for key in hits), hits


def test_an_existing_raw_bucket_gets_no_resource_and_a_notification_to_wire_by_hand(template: dict[str, Any]) -> None:
    """CloudFormation cannot add a notification to a bucket outside the stack: the output says what to add."""
    ev = evaluator(template, "streaming+existing-bucket")
    assert not ev.exists("RawLogsBucket") and not ev.exists("RawLogsBucketPolicy")
    output = template["Outputs"]["ExistingBucketNotification"]
    assert output["Condition"] == "UseExistingRawBucket"
    wiring = json.loads(ev.resolve(output["Value"]))
    (queue,) = wiring["QueueConfigurations"]
    assert queue["QueueArn"] == "<NotificationQueue.Arn>" and queue["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"]: r["Value"] for r in queue["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "cf/", "suffix": ".gz"}
    # The queue accepts that bucket's notifications, and the functions read it.
    statement = ev.resolve(template["Resources"]["NotificationQueuePolicy"]["Properties"])["PolicyDocument"]
    (allow,) = statement["Statement"]
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == "arn:aws:s3:::my-cloudfront-logs"
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    assert ev.resolve(template["Outputs"]["RawLogsBucketName"]["Value"]) == "my-cloudfront-logs"
    new = evaluator(template, "streaming")
    assert new.exists("RawLogsBucket") and "ExistingBucketNotification" not in _outputs(new)


def _outputs(ev: Evaluator) -> set[str]:
    return {name for name, o in ev.template["Outputs"].items() if "Condition" not in o or ev.condition(o["Condition"])}


# --------------------------------------------------------------------------- buckets, keys, encryption
def _policy_of(template: dict[str, Any], bucket: str) -> dict[str, Any]:
    (policy,) = [
        p
        for p in resources_of(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    return dict(policy)


def test_every_bucket_is_private_tls_only_owner_enforced_encrypted_and_logged(template: dict[str, Any]) -> None:
    """Reliability catalogue S02."""
    for logical, bucket in resources_of(template, "AWS::S3::Bucket").items():
        p = bucket["Properties"]
        assert p["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        ), logical
        assert p["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, logical
        (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        if logical == "AccessLogsBucket":  # server access logs can only be delivered to SSE-S3 buckets
            assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        else:
            assert rule == {
                "ServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]},
                },
                "BucketKeyEnabled": True,
            }, logical
            assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}, logical
        policy = _policy_of(template, logical)
        assert policy.get("Condition") == bucket.get("Condition"), logical
        tls = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "TlsOnly"]
        assert tls == [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [{"Fn::GetAtt": [logical, "Arn"]}, {"Fn::Sub": f"${{{logical}.Arn}}/*"}],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ], logical
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        allows = [s for statement in statements for s in policies.alternatives(statement) if s["Effect"] == "Allow"]
        assert all(s["Principal"] != "*" and "aws:SourceAccount" in s["Condition"]["StringEquals"] for s in allows)


def test_the_raw_bucket_is_versioned_and_logs_and_bad_rows_expire(template: dict[str, Any]) -> None:
    """Reliability catalogue S02."""
    raw = template["Resources"]["RawLogsBucket"]["Properties"]
    assert raw["VersioningConfiguration"] == {"Status": "Enabled"}
    assert any(
        r.get("ExpirationInDays") == {"Ref": "RawLogsRetentionDays"} for r in raw["LifecycleConfiguration"]["Rules"]
    )
    rules = template["Resources"]["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    defaults = load_config(environ={}).resources
    bad = [r for r in rules if r.get("Prefix") == defaults.bad_prefix]
    assert bad and bad[0]["ExpirationInDays"] == {"Ref": "BadRowsRetentionDays"}
    assert not [r for r in rules if r.get("Prefix", "").startswith(defaults.events_prefix)], "the dataset never expires"


def test_streams_queues_table_and_logs_are_encrypted_with_the_rotated_key(template: dict[str, Any]) -> None:
    """Reliability catalogue S03."""
    key = template["Resources"]["DataKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    key_arn = {"Fn::GetAtt": ["DataKey", "Arn"]}
    for stream in resources_of(template, "AWS::Kinesis::Stream").values():
        assert stream["Properties"]["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": key_arn}
    for queue in resources_of(template, "AWS::SQS::Queue").values():
        assert queue["Properties"]["KmsMasterKeyId"] == {"Ref": "DataKey"}
    table = template["Resources"]["LedgerTable"]["Properties"]
    assert table["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}
    for statement in key["KeyPolicy"]["Statement"]:
        for option in policies.alternatives(statement):
            assert option["Principal"] != "*" and option["Principal"].get("AWS") != "*"


def test_firehose_reads_the_encrypted_stream_and_writes_encrypted_files_with_errors_to_s3(
    template: dict[str, Any], defaults: PipelineConfig
) -> None:
    """Reliability catalogue S03: Firehose's destination equals load/redshift/firehose_destination.py's; checkov has no
    Firehose check.
    """
    firehose = template["Resources"]["RedshiftDeliveryStream"]
    assert firehose["Condition"] == "StreamingWithRedshift"
    p = firehose["Properties"]
    assert p["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert p["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {"Fn::GetAtt": ["EventsStream", "Arn"]}
    destination = p["RedshiftDestinationConfiguration"]
    expected = firehose_redshift_destination(
        RedshiftTables.from_config(defaults.redshift),
        role_arn="role",
        cluster_jdbc_url="jdbc",
        bucket_arn="bucket",
        s3_prefix=defaults.resources.firehose_prefix,
        secret_arn="secret",
        processing_lambda_arn="function",
    )
    assert destination["CopyCommand"] == expected["CopyCommand"]
    assert destination["RetryOptions"] == expected["RetryOptions"]
    assert destination["S3BackupMode"] == expected["S3BackupMode"]
    s3 = destination["S3Configuration"]
    for key in ("Prefix", "ErrorOutputPrefix", "CompressionFormat", "BufferingHints"):
        assert s3[key] == expected["S3Configuration"][key], key
    assert s3["BucketARN"] == {"Fn::GetAtt": ["OutputBucket", "Arn"]}
    assert s3["EncryptionConfiguration"] == {
        "KMSEncryptionConfig": {"AWSKMSKeyARN": {"Fn::GetAtt": ["DataKey", "Arn"]}}
    }
    (processor,) = destination["ProcessingConfiguration"]["Processors"]
    assert processor["Parameters"] == [
        {"ParameterName": "LambdaArn", "ParameterValue": {"Fn::GetAtt": ["FirehoseTransformFunction", "Arn"]}}
    ]
    assert destination["SecretsManagerConfiguration"]["SecretARN"] == {"Ref": "RedshiftSecretArn"}
    assert "Password" not in destination and "Username" not in destination
    assert destination["CloudWatchLoggingOptions"]["Enabled"] is True
    template_stream = template["Resources"]["EventsStream"]["Properties"]
    assert template_stream["StreamEncryption"]["EncryptionType"] == "KMS"


def test_the_ledger_table_has_the_ledgers_key_ttl_and_point_in_time_recovery(template: dict[str, Any]) -> None:
    from pipeline.aws import ledger

    created: dict[str, Any] = {}

    class Recorder:
        def create_table(self, **kwargs: Any) -> None:
            created.update(kwargs)

        def update_time_to_live(self, **kwargs: Any) -> None:
            created["TimeToLive"] = kwargs["TimeToLiveSpecification"]

    ledger.create_table(Recorder(), "t")
    table = template["Resources"]["LedgerTable"]["Properties"]
    assert table["KeySchema"] == created["KeySchema"]
    assert table["AttributeDefinitions"] == created["AttributeDefinitions"]
    assert table["BillingMode"] == created["BillingMode"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert created["TimeToLive"] == table["TimeToLiveSpecification"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


# --------------------------------------------------------------------------- Glue
def test_the_glue_columns_are_the_canonical_schema_as_the_parquet_files_type_it(template: dict[str, Any]) -> None:
    pa = pytest.importorskip("pyarrow")
    from load.parquet import arrow_schema

    table = template["Resources"]["EventsTable"]["Properties"]["TableInput"]
    columns = table["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == [f.name for f in FIELDS]
    assert columns == sections.glue_columns()
    hive = {pa.string(): "string", pa.int32(): "int", pa.float64(): "double", pa.bool_(): "boolean"}
    for column, arrow in zip(columns, arrow_schema(), strict=True):
        if pa.types.is_timestamp(arrow.type):
            expected = "timestamp"
        elif pa.types.is_decimal(arrow.type):
            expected = f"decimal({arrow.type.precision},{arrow.type.scale})"
        else:
            expected = hive[arrow.type]
        assert column["Type"] == expected, column["Name"]


def test_the_glue_table_projects_the_partitions_of_the_dataset_layout(template: dict[str, Any]) -> None:
    from load.partitions import PartitionKey

    ev = evaluator(template)
    defaults = load_config(environ={}).resources
    table = ev.resolve(template["Resources"]["EventsTable"]["Properties"]["TableInput"])
    bucket = f"s3://{ev.ref('OutputBucket')}/"
    assert table["StorageDescriptor"]["Location"] == f"{bucket}{defaults.events_prefix}"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date", "event_hour"]
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true" and parameters["classification"] == "parquet"
    location = parameters["storage.location.template"]
    partition = PartitionKey("2024-11-05", 7)
    filled = location.replace("${event_date}", partition.date).replace("${event_hour}", f"{partition.hour:02d}")
    assert filled == f"{bucket}{defaults.events_prefix}{partition.format()}/"
    assert parameters["projection.event_date.format"] == "yyyy-MM-dd"
    assert parameters["projection.event_hour.range"] == "0,23" and parameters["projection.event_hour.digits"] == "2"
    assert "SerdeInfo" in table["StorageDescriptor"] and "Parquet" in table["StorageDescriptor"]["InputFormat"]


# --------------------------------------------------------------------------- IAM
def _golden(name: str) -> dict[str, list[str]]:
    path = policies.IAM_DIR / f"{name}.json"
    data: dict[str, list[str]] = json.loads(path.read_text("utf-8"))
    return data


def test_every_role_equals_its_golden_allow_list(template: dict[str, Any]) -> None:
    """Reliability catalogue S01: A permission added to (or removed from) a role shows in deploy/iam/*.json (python -m
    deploy.policies --write).
    """
    files = {path.stem for path in policies.IAM_DIR.glob("*.json")}
    roles = policies.roles(template)
    assert {policies.golden_name(template, role) for role in roles} == files
    for role_name, role in roles.items():
        assert policies.allow_list(role) == _golden(policies.golden_name(template, role_name)), role_name


def test_the_allow_list_check_fails_when_a_role_gains_an_action(template: dict[str, Any]) -> None:
    """Reliability catalogue S01."""
    broken = copy.deepcopy(template)
    statements = broken["Resources"]["TransformRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements.append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${OutputBucket.Arn}/*"}})
    assert policies.allow_list(broken["Resources"]["TransformRole"]) != _golden("TransformFunction")


def test_one_role_per_function_none_shared_and_no_managed_policy(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    users = policies.role_users(template)
    assert sorted(users) == sorted(policies.roles(template))
    assert all(len(u) == 1 for u in users.values()), users
    assert {u for (u,) in users.values()} == set(sam_functions(template)) | {
        "RedshiftDeliveryStream",
        "ReplayStateMachine",
    }
    for role in resources_of(translated, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
    assert len(resources_of(translated, "AWS::IAM::Role")) == len(policies.roles(template))
    assert not resources_of(translated, "AWS::IAM::Policy") and not resources_of(translated, "AWS::IAM::ManagedPolicy")


_STAR_RESOURCE_OK = {
    # X-Ray has no resource-level permissions and no condition keys for these.
    "xray:PutTraceSegments": None,
    "xray:PutTelemetryRecords": None,
    # The Data API's statement calls take no resource; the condition limits them to our statements.
    "redshift-data:DescribeStatement": "redshift-data:statement-owner-iam-userid",
    "redshift-data:GetStatementResult": "redshift-data:statement-owner-iam-userid",
    "redshift-data:CancelStatement": "redshift-data:statement-owner-iam-userid",
}


def test_no_wildcard_action_and_a_wildcard_resource_only_where_aws_requires_one(template: dict[str, Any]) -> None:
    """Reliability catalogue S01."""
    for role_name, role in policies.roles(template).items():
        for statement in policies.statements(role):
            actions = policies.as_list(statement["Action"])
            assert not [a for a in actions if "*" in a], f"{role_name}: {actions}"
            if "*" in policies.patterns(statement["Resource"]):
                assert set(actions) <= _STAR_RESOURCE_OK.keys(), f"{role_name}: * resource for {actions}"
                for action in actions:
                    key = _STAR_RESOURCE_OK[action]
                    if key is not None:
                        assert key in json.dumps(statement.get("Condition", {})), f"{role_name}: {action}"
            resources = policies.patterns(statement["Resource"])
            assert all(r == "*" or r.startswith(("arn:${AWS::Partition}:", "${")) for r in resources), resources


def test_every_kms_grant_is_limited_to_the_services_that_use_the_key(template: dict[str, Any]) -> None:
    """Reliability catalogue S03."""
    for role_name, role in policies.roles(template).items():
        for statement in policies.statements(role):
            if any(a.startswith("kms:") for a in policies.as_list(statement["Action"])):
                services = policies.as_list(statement["Condition"]["StringEquals"]["kms:ViaService"])
                assert services and all("${AWS::Region}.amazonaws.com" in s["Fn::Sub"] for s in services), role_name


def test_extract_invokes_itself_only_and_the_reconciler_only_the_object_function(template: dict[str, Any]) -> None:
    """Reliability catalogue S01."""
    ev = evaluator(template)
    own = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name_of(ev, 'ExtractFunction')}"
    (extract,) = [
        s
        for s in policies.statements(template["Resources"]["ExtractRole"])
        if "lambda:InvokeFunction" in policies.as_list(s["Action"])
    ]
    assert ev.resolve(extract["Resource"]) == own
    assert _golden("ExtractFunction")["lambda:InvokeFunction"] == [
        "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${NamePrefix}-extract"
    ]
    (redrive,) = [
        s
        for s in policies.statements(template["Resources"]["ExtractReconcilerRole"])
        if "lambda:InvokeFunction" in policies.as_list(s["Action"])
    ]
    for mode, function in (("streaming", "ExtractFunction"), ("direct", "DirectFunction")):
        mev = evaluator(template, mode)
        assert (
            mev.resolve(redrive["Resource"]) == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name_of(mev, function)}"
        )


def test_roles_write_logs_to_their_own_log_group_and_trust_only_their_service(template: dict[str, Any]) -> None:
    ev = evaluator(template, "streaming+serverless")
    for role_name, role in policies.roles(template).items():
        (user,) = policies.role_users(template)[role_name]
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if user == "RedshiftDeliveryStream":
            assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
            assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
            continue
        if user == "ReplayStateMachine":
            # No execution logs (its results export records each batch), so no Logs statement either.
            assert trust["Principal"] == {"Service": "states.amazonaws.com"}
            assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
            assert not [
                s for s in policies.statements(role) for a in policies.as_list(s["Action"]) if a.startswith("logs:")
            ]
            continue
        assert trust == {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
        group = name_of(ev, template["Resources"][user]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"])
        (logs,) = [s for s in policies.statements(role) if s.get("Sid") == "Logs"]
        assert ev.resolve(logs["Resource"]) == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*", role_name
        assert not [
            a for s in policies.statements(role) for a in policies.as_list(s["Action"]) if a == "logs:CreateLogGroup"
        ]


# --------------------------------------------------------------------------- alarms
def _alarms(template: dict[str, Any]) -> dict[str, Any]:
    return resources_of(template, "AWS::CloudWatch::Alarm")


def _dimension(alarm: dict[str, Any]) -> Any:
    properties = alarm["Properties"]
    if "Dimensions" in properties:
        return properties["Dimensions"][0]["Value"]
    return properties["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"][0]["Value"]


def test_alarms_cover_errors_throttles_iterator_age_failure_queues_and_the_bad_row_rate(
    template: dict[str, Any],
) -> None:
    alarms = _alarms(template)
    metrics = {(a["Properties"].get("MetricName"), json.dumps(_dimension(a))): a for a in alarms.values()}
    for logical, function in sam_functions(template).items():
        for metric in ("Errors", "Throttles"):
            alarm = metrics[(metric, json.dumps({"Ref": logical}))]
            assert alarm.get("Condition") == function.get("Condition"), (logical, metric)
        if any(e["Type"] == "Kinesis" for e in function["Properties"].get("Events", {}).values()):
            (age,) = [
                a for a in alarms.values() if "IteratorAge" in json.dumps(a) and _dimension(a) == {"Ref": logical}
            ]
            assert age["Properties"]["Threshold"] == {"Ref": "IteratorAgeAlarmSeconds"}
    failure_queues = set(resources_of(template, "AWS::SQS::Queue")) - {"NotificationQueue"}
    watched = {_dimension(a)["Fn::GetAtt"][0] for a in alarms.values() if a["Properties"].get("Namespace") == "AWS/SQS"}
    assert watched == failure_queues
    rates = [a for a in alarms.values() if "BadRows" in json.dumps(a)]
    assert {a["Condition"] for a in rates} == {"IsStreaming", "IsDirect"}
    for alarm in rates:
        assert alarm["Properties"]["Threshold"] == {"Ref": "BadRowRateAlarmPercent"}
        namespaces = {
            m["MetricStat"]["Metric"]["Namespace"] for m in alarm["Properties"]["Metrics"] if "MetricStat" in m
        }
        assert namespaces == {METRICS_NAMESPACE}
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert all(a["Properties"]["AlarmActions"] == topic for a in alarms.values())


def test_the_bad_row_alarm_reads_metrics_the_handlers_emit(template: dict[str, Any]) -> None:
    emitted = {
        service: (ROOT / path).read_text("utf-8")
        for service, path in (("extract", "extract/handler.py"), ("transform", "transform/handler.py"))
    }
    (alarm,) = [
        a for a in _alarms(template).values() if a.get("Condition") == "IsStreaming" and "BadRows" in json.dumps(a)
    ]
    for metric in alarm["Properties"]["Metrics"]:
        if "MetricStat" in metric:
            stat = metric["MetricStat"]["Metric"]
            (dimension,) = stat["Dimensions"]
            assert dimension["Name"] == "service"
            source = emitted[dimension["Value"]]
            assert f'service="{dimension["Value"]}"' in source and f'name="{stat["MetricName"]}"' in source


# --------------------------------------------------------------------------- README
def _readme_section() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    start = text.index("## Deploy to AWS")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_diagram_shows_every_resource_and_its_table_every_parameter(template: dict[str, Any]) -> None:
    section = _readme_section()
    diagram = section[section.index("```mermaid") : section.index("```", section.index("```mermaid") + 3)]
    grouped = {
        "AWS::CloudWatch::Alarm": "Alarms",
        "AWS::Logs::LogGroup": "LogGroups",
        "AWS::Logs::LogStream": "LogGroups",
    }
    for logical, resource in template["Resources"].items():
        node = grouped.get(resource["Type"], logical)
        assert re.search(rf"\b{node}\b", diagram), f"{logical} is not in the README diagram"
    for parameter in template["Parameters"]:
        assert re.search(rf"^\| `{parameter}` \|", section, re.M), f"{parameter} is not in the README table"
    assert "<!-- deploy commands: see below -->" in section


def _iter_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _iter_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _iter_strings(v)


def test_the_template_names_no_account_region_or_hard_coded_arn(template: dict[str, Any]) -> None:
    strings = list(_iter_strings(template["Resources"]))
    assert not [s for s in strings if ACCOUNT in s or "us-east-1" in s]
    assert not [s for s in strings if s.startswith("arn:aws:")], "ARNs use ${AWS::Partition}"
    assert PIPELINE_MODES == tuple(template["Parameters"]["PipelineMode"]["AllowedValues"])


# --------------------------------------------------------------------------- replay state machine (issue 12)
def _replay_definition(template: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(template["Resources"]["ReplayStateMachine"]["Properties"]["Definition"])


def _input_paths(value: Any) -> set[str]:
    """The execution-input fields (``$.name``) a definition reads outside its ItemProcessor."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "ItemProcessor":
                continue
            if (key.endswith(".$") or key.endswith("Path")) and isinstance(item, str) and item.startswith("$."):
                found.add(item[2:].split(".")[0])
            found |= _input_paths(item)
    elif isinstance(value, list):
        for item in value:
            found |= _input_paths(item)
    return found


def test_the_replay_is_a_distributed_map_of_extract_batches_with_retries_and_a_results_export(
    template: dict[str, Any],
) -> None:
    from deploy.asl import problems
    from pipeline.app.replay_map import execution_input
    from pipeline.pacing import RateLimits
    from pipeline.topology import (
        REPLAY_BATCH_INPUT,
        REPLAY_ITEMS_PER_BATCH,
        REPLAY_MAX_BATCH_BYTES,
        REPLAY_STATE_MACHINE,
    )

    resource = template["Resources"]["ReplayStateMachine"]
    definition = _replay_definition(template)
    assert problems(definition) == []
    (map_state,) = definition["States"].values()
    assert map_state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert map_state["ItemReader"]["Resource"] == "arn:${Partition}:states:::s3:getObject"
    assert map_state["ItemReader"]["Parameters"] == {"Bucket": "${OutputBucket}", "Key.$": "$.manifest_key"}
    batcher = map_state["ItemBatcher"]
    assert batcher["MaxItemsPerBatch"] == REPLAY_ITEMS_PER_BATCH
    assert batcher["MaxInputBytesPerBatch"] == REPLAY_MAX_BATCH_BYTES
    assert batcher["BatchInput"] == {f"{name}.$": path for name, path in REPLAY_BATCH_INPUT.items()}
    assert map_state["MaxConcurrencyPath"] == "$.max_concurrency"
    assert map_state["ResultWriter"]["Parameters"] == {"Bucket": "${OutputBucket}", "Prefix.$": "$.results_prefix"}
    # Every field the definition reads is one the CLI's execution input holds.
    sample = execution_input(bucket="b", manifest_key="k", results_prefix="r", max_concurrency=1, pace=RateLimits(1, 1))
    assert _input_paths(definition) <= set(sample)
    (task,) = map_state["ItemProcessor"]["States"].values()
    assert task["Resource"] == "arn:${Partition}:states:::lambda:invoke"
    assert task["Parameters"] == {"FunctionName": "${ObjectFunction}", "Payload.$": "$"}
    throttled, anything = task["Retry"]
    assert "Lambda.TooManyRequestsException" in throttled["ErrorEquals"]
    assert throttled["BackoffRate"] > 1 and throttled["JitterStrategy"] == "FULL" and throttled["MaxAttempts"] >= 5
    assert anything["ErrorEquals"] == ["States.ALL"] and 1 <= anything["MaxAttempts"] <= 5
    # The function per batch is the one that reads objects in each mode.
    substitutions = resource["Properties"]["DefinitionSubstitutions"]
    assert substitutions["OutputBucket"] == {"Ref": "OutputBucket"}
    for configuration, function in (("streaming", "extract"), ("direct", "direct")):
        ev = evaluator(template, configuration)
        assert (
            ev.resolve(substitutions["ObjectFunction"])
            == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:clickstream-etl-{function}"
        )
        assert ev.resolve(resource["Properties"]["Name"]) == REPLAY_STATE_MACHINE


@pytest.mark.parametrize(
    "mutation",
    [
        "inline",
        "no batcher size",
        "oversized batch",
        "catch-all first",
        "dangling next",
        "unknown field",
        "reader type",
    ],
)
def test_the_definition_check_fails_a_broken_map(template: dict[str, Any], mutation: str) -> None:
    from deploy.asl import problems

    definition = _replay_definition(template)
    (map_state,) = definition["States"].values()
    (task,) = map_state["ItemProcessor"]["States"].values()
    if mutation == "inline":
        map_state["ItemProcessor"]["ProcessorConfig"] = {"Mode": "INLINE"}
    elif mutation == "no batcher size":
        map_state["ItemBatcher"] = {"BatchInput": {}}
    elif mutation == "oversized batch":
        map_state["ItemBatcher"]["MaxInputBytesPerBatch"] = 300_000
    elif mutation == "catch-all first":
        task["Retry"].reverse()
    elif mutation == "dangling next":
        task.pop("End")
        task["Next"] = "Nowhere"
    elif mutation == "unknown field":
        map_state["MaxItems"] = 3
    elif mutation == "reader type":
        map_state["ItemReader"]["ReaderConfig"]["InputType"] = "XML"
    assert problems(definition)


def test_the_replay_role_touches_only_replay_files_and_invokes_only_the_object_function(
    template: dict[str, Any],
) -> None:
    role = template["Resources"]["ReplayStateMachineRole"]
    allowed = policies.allow_list(role)
    for action, resources in allowed.items():
        if action.startswith("s3:"):
            assert resources == ["${OutputBucket.Arn}/_replay/*"], action
    assert allowed["lambda:InvokeFunction"] == [
        "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${NamePrefix}-direct",
        "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${NamePrefix}-extract",
    ]
    assert not [a for a in allowed if a.startswith(("dynamodb:", "kinesis:", "iam:"))]


# --------------------------------------------------------------------------- collector (issue 15)
_COLLECTOR_PUBLIC = (
    "CollectorUrl",
    "CollectorUrlPermission",
    "CollectorUrlInvokePermission",
    "CollectorHttpApi",
    "CollectorHttpApiPermission",
    "CollectorDistribution",
)


def test_the_collector_is_off_by_default_and_each_front_door_creates_only_its_own(template: dict[str, Any]) -> None:
    """No public endpoint unless asked for; a Function URL or an HTTP API, behind CloudFront by default."""
    created = {name: set(evaluator(template, name).resources()) for name in CONFIGURATIONS}
    assert not [r for r in created["streaming"] if r.startswith("Collector")]
    assert not [r for r in created["direct"] if r.startswith("Collector")]
    url = {r for r in created["streaming+collector"] if r in _COLLECTOR_PUBLIC}
    assert url == {"CollectorUrl", "CollectorUrlPermission", "CollectorUrlInvokePermission", "CollectorDistribution"}
    api = {r for r in created["streaming+collector-api"] if r in _COLLECTOR_PUBLIC}
    assert api == {"CollectorHttpApi", "CollectorHttpApiPermission"}  # CollectorCloudFront disabled there
    no_stream = set(evaluator(template, "direct", Collector="function-url").resources())
    assert not [r for r in no_stream if r.startswith("Collector")], "the collector needs stream 1"


def test_the_collector_role_puts_on_stream_1_and_nothing_else() -> None:
    allowed = _golden("CollectorFunction")
    assert allowed["kinesis:PutRecords"] == ["${RawStream.Arn}"]
    assert allowed["kms:GenerateDataKey"] == ["${DataKey.Arn}"]
    # and the real-time counter: one write and one read action on its own table (issue 16)
    assert allowed["dynamodb:PutItem"] == allowed["dynamodb:Query"] == ["${RealtimeTable.Arn}"]
    assert allowed["kms:Decrypt"] == ["${DataKey.Arn}"]
    others = {a for a in allowed if not a.startswith(("logs:", "xray:"))}
    assert others == {"kinesis:PutRecords", "kms:GenerateDataKey", "dynamodb:PutItem", "dynamodb:Query", "kms:Decrypt"}


def test_the_collector_front_doors_are_public_and_leave_cors_to_the_function(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    url = resources["CollectorUrl"]["Properties"]
    assert url["AuthType"] == "NONE" and "Cors" not in url
    permissions = {
        name: resources[name]["Properties"]
        for name in ("CollectorUrlPermission", "CollectorUrlInvokePermission", "CollectorHttpApiPermission")
    }
    assert permissions["CollectorUrlPermission"]["Action"] == "lambda:InvokeFunctionUrl"
    assert permissions["CollectorUrlPermission"]["FunctionUrlAuthType"] == "NONE"
    # the October 2025 rule: lambda:InvokeFunction too, and only through the URL
    assert permissions["CollectorUrlInvokePermission"]["InvokedViaFunctionUrl"] is True
    assert permissions["CollectorHttpApiPermission"]["Principal"] == "apigateway.amazonaws.com"
    api = resources["CollectorHttpApi"]["Properties"]
    assert api["ProtocolType"] == "HTTP" and "CorsConfiguration" not in api
    assert api["Target"] == {"Fn::GetAtt": ["CollectorFunction", "Arn"]}


def test_the_collector_distribution_forwards_everything_and_caches_nothing(template: dict[str, Any]) -> None:
    config = template["Resources"]["CollectorDistribution"]["Properties"]["DistributionConfig"]
    behavior = config["DefaultCacheBehavior"]
    assert {"POST", "OPTIONS", "GET", "HEAD"} <= set(behavior["AllowedMethods"])
    assert behavior["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # managed CachingDisabled
    assert behavior["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # AllViewerExceptHostHeader
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    (origin,) = config["Origins"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    ev = evaluator(template, "streaming+collector")
    assert ev.exists("CollectorDistribution") and not ev.exists("CollectorHttpApi")


def test_the_collector_alarms_on_5xx_of_its_front_door(template: dict[str, Any]) -> None:
    alarms = _alarms(template)
    by_metric = {a["Properties"]["MetricName"]: a for a in alarms.values() if "Collector" in json.dumps(_dimension(a))}
    assert set(by_metric) == {"Errors", "Throttles", "Url5xxCount", "5xx"}
    assert by_metric["Url5xxCount"]["Condition"] == "CollectorOnFunctionUrl"
    assert by_metric["5xx"]["Condition"] == "CollectorOnHttpApi"
    assert by_metric["5xx"]["Properties"]["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "CollectorHttpApi"}}]


def test_the_collector_function_serves_the_deployed_handler_with_the_collector_config(defaults: PipelineConfig) -> None:
    spec = functions(defaults)["CollectorFunction"]
    assert spec.handler == "extract.collector.handler" and spec.collector and spec.modes == ("streaming",)
    # its put retries end well within its timeout
    c = defaults.collector
    assert c.put_max_attempts * c.put_max_delay_ms < spec.timeout_s * 1000 / 4
    assert c.max_request_bytes < 6 * 1024 * 1024  # Lambda's synchronous payload limit


# --------------------------------------------------------------------------- dashboard (issue 16)
def test_the_rollup_role_reads_the_events_and_writes_only_the_rollups(template: dict[str, Any]) -> None:
    allowed = policies.allow_list(template["Resources"]["RollupRole"])
    assert allowed == _golden("RollupFunction")
    output = "arn:${AWS::Partition}:s3:::${NamePrefix}-output-${AWS::AccountId}-${AWS::Region}"
    assert allowed["s3:GetObject"] == [f"{output}/events/*"]
    assert allowed["s3:PutObject"] == allowed["s3:DeleteObject"] == [f"{output}/rollups/*"]
    (listing,) = [
        s
        for s in template["Resources"]["RollupRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if isinstance(s, dict) and s.get("Action") == "s3:ListBucket"
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["events/*", "rollups/*"]}}
    function = template["Resources"]["RollupFunction"]
    assert function["Properties"]["Handler"] == "load.rollup_handler.handler" and "Condition" not in function


# --------------------------------------------------------------------------- hosted dashboard (issue 16)
_DASHBOARD_SITE = (
    "DashboardSiteBucket",
    "DashboardSiteBucketPolicy",
    "DashboardOriginAccessControl",
    "DashboardAuthFunction",
    "DashboardDistribution",
)
_DASHBOARD_ON = {"Dashboard": "enabled", "DashboardUser": "team", "DashboardPasswordHash": "ab" * 32}
_DASHBOARD_ARN = f"arn:aws:cloudfront::{ACCOUNT}:distribution/<DashboardDistribution>"


def _dashboard(template: dict[str, Any]) -> Evaluator:
    return evaluator(template, "streaming", **_DASHBOARD_ON)


def _behaviours(ev: Evaluator) -> dict[str, dict[str, Any]]:
    config = ev.resolve(ev.template["Resources"]["DashboardDistribution"]["Properties"]["DistributionConfig"])
    return {"*": config["DefaultCacheBehavior"]} | {b["PathPattern"]: b for b in config["CacheBehaviors"]}


def test_the_hosted_dashboard_is_off_by_default_and_needs_its_credentials(template: dict[str, Any]) -> None:
    """An upgrade exposes nothing new: no distribution unless Dashboard is enabled with a user and hash."""
    assert template["Parameters"]["Dashboard"]["Default"] == "disabled"
    assert template["Parameters"]["DashboardPasswordHash"]["NoEcho"] is True
    for name in CONFIGURATIONS:
        assert not [r for r in evaluator(template, name).resources() if r.startswith("Dashboard")], name
    assert not set(evaluator(template, "streaming", Dashboard="enabled").resources()) & set(_DASHBOARD_SITE)
    assert set(_DASHBOARD_SITE) <= set(_dashboard(template).resources())
    assert set(_DASHBOARD_SITE) <= set(evaluator(template, "direct", **_DASHBOARD_ON).resources())
    asserted = {
        a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"]
        for a in template["Rules"]["DashboardNeedsCredentials"]["Assertions"]
    }
    assert asserted == {"DashboardUser", "DashboardPasswordHash"}
    assert {"DashboardUrl", "DashboardSiteBucketName"} <= _outputs(_dashboard(template))
    assert not {"DashboardUrl", "DashboardSiteBucketName"} & _outputs(evaluator(template))


def test_the_dashboard_origins_are_the_private_buckets_read_through_origin_access_control(
    template: dict[str, Any],
) -> None:
    ev = _dashboard(template)
    config = ev.resolve(template["Resources"]["DashboardDistribution"]["Properties"]["DistributionConfig"])
    origins = {o["Id"]: o for o in config["Origins"]}
    assert set(origins) == {"site", "rollups"}
    buckets = {"site": name_of(ev, "DashboardSiteBucket"), "rollups": name_of(ev, "OutputBucket")}
    for origin_id, origin in origins.items():
        assert origin["DomainName"] == f"{buckets[origin_id]}.s3.{REGION}.amazonaws.com"
        assert origin["OriginAccessControlId"] == "<DashboardOriginAccessControl.Id>"
        assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # OAC, not the legacy identity
        assert "CustomOriginConfig" not in origin
    oac = template["Resources"]["DashboardOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    site = template["Resources"]["DashboardSiteBucket"]
    assert site["Condition"] == "HasDashboard" and "WebsiteConfiguration" not in site["Properties"]
    assert config["DefaultRootObject"] == "index.html"


def test_every_dashboard_path_requires_https_and_basic_auth_on_the_viewer_request(template: dict[str, Any]) -> None:
    ev = _dashboard(template)
    behaviours = _behaviours(ev)
    assert set(behaviours) == {"*", "rollups/manifest.json", "rollups/*"}
    for pattern, behaviour in behaviours.items():
        assert behaviour["ViewerProtocolPolicy"] == "https-only", pattern
        assert behaviour["AllowedMethods"] == ["GET", "HEAD"], pattern
        assert behaviour["FunctionAssociations"] == [
            {"EventType": "viewer-request", "FunctionARN": "<DashboardAuthFunction.FunctionARN>"}
        ], pattern
        assert behaviour["ResponseHeadersPolicyId"] == "67f7725c-6f97-4210-82d7-5512b31e9d03"  # SecurityHeadersPolicy
        assert "OriginRequestPolicyId" not in behaviour  # nothing of the viewer's request reaches S3
        assert behaviour["TargetOriginId"] == ("site" if pattern == "*" else "rollups"), pattern
    # the manifest changes with each rollup run; the parts are named by their digest
    assert behaviours["rollups/manifest.json"]["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    assert behaviours["rollups/*"]["CachePolicyId"] == "658327ea-f89d-4fab-a63d-7e88639e58f6"
    function = template["Resources"]["DashboardAuthFunction"]["Properties"]
    assert function["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0" and function["AutoPublish"] is True
    code = function["FunctionCode"]["Fn::Sub"]
    assert "'${DashboardUser}'" in code and "'${DashboardPasswordHash}'" in code
    assert code.count("${") == 2, "the function's code substitutes the user and the hash only"


def _dashboard_statement(ev: Evaluator, statements: list[Any], sid: str) -> dict[str, Any]:
    (found,) = [s for s in ev.resolve(statements) if s.get("Sid") == sid]
    return dict(found)


def test_the_key_and_bucket_statements_for_cloudfront_name_the_dashboard_distribution_only(
    template: dict[str, Any],
) -> None:
    ev = _dashboard(template)
    resources = template["Resources"]
    only_ours = {"StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": _DASHBOARD_ARN}}
    key = _dashboard_statement(
        ev, resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"], "DashboardDistributionDecrypts"
    )
    assert key["Principal"] == {"Service": "cloudfront.amazonaws.com"} and key["Action"] == "kms:Decrypt"
    assert key["Condition"] == only_ours
    rollups = _dashboard_statement(
        ev, resources["OutputBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"], "DashboardReadsRollups"
    )
    assert rollups["Action"] == "s3:GetObject" and rollups["Condition"] == only_ours
    assert rollups["Resource"] == "<OutputBucket.Arn>/rollups/*"  # never events/ or bad/
    site = _dashboard_statement(
        ev,
        resources["DashboardSiteBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"],
        "DashboardDistributionReads",
    )
    assert site["Action"] == "s3:GetObject" and site["Condition"] == only_ours
    assert site["Resource"] == "<DashboardSiteBucket.Arn>/*"
    # with the dashboard off, neither the key nor the output bucket names CloudFront
    off = evaluator(template)
    for statements in (
        resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"],
        resources["OutputBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"],
    ):
        assert "cloudfront" not in json.dumps(off.resolve(statements))


def test_nothing_of_the_hosted_dashboard_is_public(template: dict[str, Any]) -> None:
    ev = _dashboard(template)
    for logical in ("DashboardSiteBucketPolicy", "OutputBucketPolicy"):
        for statement in ev.resolve(ev.template["Resources"][logical]["Properties"]["PolicyDocument"]["Statement"]):
            if statement["Effect"] == "Allow":
                assert statement["Principal"] not in ("*", {"AWS": "*"}), logical
                assert statement["Condition"]["StringEquals"]["aws:SourceArn"], logical
    site = template["Resources"]["DashboardSiteBucket"]["Properties"]
    assert all(site["PublicAccessBlockConfiguration"].values()) and len(site["PublicAccessBlockConfiguration"]) == 4
    # no Function URL, API or website endpoint comes with it: the distribution is the only door
    created = set(ev.resources()) - set(evaluator(template).resources())
    assert created == set(_DASHBOARD_SITE)
    # the server access logs of the site bucket may be delivered
    (logs,) = [
        s
        for s in template["Resources"]["AccessLogsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if s["Sid"] == "ServerAccessLogs"
    ]
    sources = ev.resolve(logs["Condition"]["ArnLike"]["aws:SourceArn"])
    assert f"arn:aws:s3:::{name_of(ev, 'DashboardSiteBucket')}" in sources


def test_the_realtime_counter_table_exists_with_the_collector_only_and_expires_its_items(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Issue 16's real-time tile: the counter table, its TTL and key, and the collector's settings."""
    assert not evaluator(template, "streaming").exists("RealtimeTable")
    assert not evaluator(template, "direct", Collector="function-url").exists("RealtimeTable")
    ev = evaluator(template, "streaming+collector")
    assert ev.exists("RealtimeTable") and name_of(ev, "RealtimeTable") == "clickstream-etl-realtime"
    table = template["Resources"]["RealtimeTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    env = environment(translated, "CollectorFunction", ev)
    config = load_config(environ={k: v for k, v in env.items() if k.startswith("CLICKSTREAM_ETL__")})
    assert config.collector.realtime_table == "clickstream-etl-realtime"
    assert config.collector.realtime_salt  # set per stack, never the empty default
    statements = template["Resources"]["CollectorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (key,) = [s for s in statements if isinstance(s, dict) and s.get("Sid") == "RealtimeDataKey"]
    assert key["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}
