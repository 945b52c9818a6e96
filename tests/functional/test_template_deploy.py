"""template.yaml on moto's CloudFormation: translated with aws-sam-translator, deployed, read back (issue 11).

GIVEN the SAM template, its code folders replaced by S3 objects (what ``sam deploy`` uploads)
WHEN it is translated and created as a stack on moto, in each pipeline mode
THEN the event source mappings, queues, functions, schedules, log groups, table and key read back
     with topology's settings; and the deployed handlers, configured only by the template's own
     environment, make no AWS call outside their golden allow-lists (deploy/iam/*.json).

What moto does with the template (moto 5.2; a moto no-op is never taken as proof):

* skipped, resource and all (``MOTO_SKIPS``): bucket policies, the SQS queue policy, Lambda's
  EventInvokeConfig, CloudWatch alarms, Glue database and table, the Firehose delivery stream,
  its log stream.  tests/unit/test_template.py asserts them on the translated template.
* created without some properties (``MOTO_DROPS``): buckets lose their notification, versioning,
  public access block and bucket key; streams their encryption and capacity mode; functions their
  architecture, layers, logging config and tracing; the table its encryption, TTL and
  point-in-time recovery; log groups their KMS key.  Also asserted statically, not here.
* read back here: the mappings (every setting), queue attributes (visibility, redrive, KMS key,
  retention), memory, timeout and reserved concurrency, schedule rules, log group retention,
  key rotation, the table's key schema.

moto also never runs a handler (no Docker) nor delivers bucket notifications from CloudFormation,
so the handlers run in-process with the deployed resources, and their calls are recorded with a
botocore ``before-call`` hook (not a patch of our code) to compare with the allow-lists.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import botocore.handlers
import pytest
from moto import mock_aws

from deploy import policies
from deploy.cfn import ACCOUNT, REGION, Evaluator, load_template, s3_code_key, translate, with_s3_code
from pipeline.config import load_config
from pipeline.testing import LogBuilder, tracker_query
from pipeline.testing.lambda_events import (
    FakeLambdaContext,
    KinesisRecord,
    firehose_event,
    kinesis_event,
    s3_object_created_event,
    sqs_wrapped,
)
from pipeline.topology import functions, notification_mapping, scheduled_functions, stream_mappings

# Powertools warns when an invocation emitted no metric (the reconciler's and loader's early exits).
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

ARTIFACTS = "clickstream-etl-artifacts"
MOTO_SKIPS = frozenset(
    {
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::CloudWatch::Alarm",
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::KinesisFirehose::DeliveryStream",
        "AWS::Logs::LogStream",
    }
)
MOTO_DROPS = {
    "AWS::S3::Bucket": ("NotificationConfiguration", "VersioningConfiguration", "PublicAccessBlockConfiguration"),
    "AWS::Kinesis::Stream": ("StreamEncryption", "StreamModeDetails"),
    "AWS::Lambda::Function": ("Architectures", "Layers", "LoggingConfig", "TracingConfig"),
    "AWS::DynamoDB::Table": ("SSESpecification", "TimeToLiveSpecification", "PointInTimeRecoverySpecification"),
    "AWS::Logs::LogGroup": ("KmsKeyId",),
}
SERVERLESS = {
    "RedshiftMode": "serverless",
    "RedshiftTarget": "analytics",
    "RedshiftWorkgroupId": "0123abcd-0123-4567-89ab-0123456789ab",
    "RedshiftJdbcUrl": f"jdbc:redshift://analytics.{ACCOUNT}.{REGION}.redshift-serverless.amazonaws.com:5439/dev",
    "RedshiftSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:redshift-AbCdEf",
}
CONFIGURATIONS = {
    "streaming": {},
    "streaming+serverless": SERVERLESS,
    "direct": {"PipelineMode": "direct"},
    "streaming+existing-bucket": {"ExistingRawLogsBucket": "my-cloudfront-logs", "RawLogsPrefix": "cf/"},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    return translate(with_s3_code(template, ARTIFACTS))


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "")  # moto never runs the code
    return buffer.getvalue()


@dataclass
class Stack:
    """A stack of the translated template on moto, with clients and the physical ids it got."""

    translated: dict[str, Any]
    parameters: dict[str, str]
    clients: dict[str, Any]
    physical: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            import boto3

            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    @property
    def ev(self) -> Evaluator:
        return Evaluator(self.translated, self.parameters, attributes=self.attribute, refs=self.physical)

    def attribute(self, logical: str, attribute: str) -> str:
        """``Fn::GetAtt`` from what moto created (ARNs and names the tests need)."""
        physical, kind = self.physical[logical], self.types[logical]
        arns = {
            "AWS::Kinesis::Stream": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{physical}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
        }
        if kind == "AWS::SQS::Queue":
            attributes = self.client("sqs").get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])
            values = {"Arn": str(attributes["Attributes"]["QueueArn"]), "QueueName": physical.rsplit("/", 1)[1]}
            return values[attribute]
        if kind == "AWS::KMS::Key":
            # Not DescribeKey: moto keeps a CloudFormation key's policy as an object, and then
            # fails to parse it on every call that checks the policy.
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{physical}"
        return arns[kind]


@pytest.fixture
def deploy(translated: dict[str, Any]) -> Iterator[Callable[[str], Stack]]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        import boto3

        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACTS)
        for folder in ("extract", "transform", "load", "direct", "pyarrow-layer"):
            s3.put_object(Bucket=ARTIFACTS, Key=s3_code_key(f"lambda-artifacts/{folder}/"), Body=_zip())

        def create(configuration: str) -> Stack:
            parameters = CONFIGURATIONS[configuration]
            if parameters.get("ExistingRawLogsBucket"):
                s3.create_bucket(Bucket=parameters["ExistingRawLogsBucket"])
            cfn = boto3.client("cloudformation", region_name=REGION)
            name = f"cs-{configuration.replace('+', '-')}"
            stack = Stack(translated, dict(parameters), {"s3": s3, "cloudformation": cfn})
            # moto warns of each resource it skips, on creation and on every later read of the stack.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cfn.create_stack(
                    StackName=name,
                    TemplateBody=json.dumps(translated),
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                    Capabilities=["CAPABILITY_IAM"],
                )
                (described,) = cfn.describe_stacks(StackName=name)["Stacks"]
                summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
            unsupported = {re.sub(r".*parse (\S+) but.*", r"\1", str(w.message)) for w in caught}
            assert unsupported <= MOTO_SKIPS, [str(w.message) for w in caught]
            assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
            for summary in summaries:
                if summary.get("ResourceType"):  # moto lists what it skipped with no type
                    stack.types[summary["LogicalResourceId"]] = summary["ResourceType"]
                if summary.get("PhysicalResourceId"):  # none for permissions and layer versions
                    stack.physical[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
            return stack

        yield create


# --------------------------------------------------------------------------- the stack reads back
@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_each_configuration_deploys_and_moto_creates_all_but_what_it_skips(
    deploy: Callable[[str], Stack], configuration: str
) -> None:
    stack = deploy(configuration)
    ev = stack.ev
    expected = ev.resources()
    created = {logical for logical in expected if expected[logical]["Type"] not in MOTO_SKIPS}
    assert set(stack.types) == created
    assert {stack.types[logical] for logical in created - set(stack.physical)} <= {
        "AWS::Lambda::Permission",
        "AWS::Lambda::LayerVersion",
    }
    skipped = {r["Type"] for logical, r in expected.items() if logical not in stack.types}
    assert skipped <= MOTO_SKIPS, f"moto now skips {skipped - MOTO_SKIPS} too"
    if configuration == "streaming+existing-bucket":
        assert "RawLogsBucket" not in stack.physical
    if configuration == "direct":
        assert not stack.client("kinesis").list_streams()["StreamNames"]


@pytest.mark.parametrize("configuration", ["streaming", "streaming+serverless", "direct"])
def test_the_mappings_read_back_with_the_settings_topology_declares(
    deploy: Callable[[str], Stack], configuration: str
) -> None:
    """Reliability catalogue F13."""
    stack = deploy(configuration)
    ev = stack.ev
    lam = stack.client("lambda")
    deployed = {m["FunctionArn"].rsplit(":", 1)[1]: m for m in lam.list_event_source_mappings()["EventSourceMappings"]}
    config = load_config(environ={})
    expected: dict[str, dict[str, Any]] = {}
    if configuration.startswith("streaming"):
        for mapping in stream_mappings(config).values():
            stream = {"clickstream-etl-transform": "RawStream", "clickstream-etl-parquet-sink": "EventsStream"}[
                mapping.function
            ]
            queue = stack.ev.resolve({"Fn::GetAtt": [_queue(stack, mapping.on_failure_queue), "Arn"]})
            expected[mapping.function] = mapping.to_aws(stack.attribute(stream, "Arn"), mapping.function, queue)
    consumer = "clickstream-etl-extract" if configuration.startswith("streaming") else "clickstream-etl-direct"
    notifications = notification_mapping()
    queue_arn = stack.attribute("NotificationQueue", "Arn")
    expected[consumer] = notifications.to_aws(queue_arn, consumer)
    assert set(deployed) == set(expected)
    for function, settings in expected.items():
        actual = deployed[function]
        assert actual["State"] in ("Enabled", "Creating")
        for key, value in settings.items():
            if key == "FunctionName":
                assert actual["FunctionArn"].endswith(f":function:{value}")
            elif key == "FunctionResponseTypes" and not value:
                assert not actual.get(key), function
            else:
                assert actual[key] == value, (function, key)
    # The notification queue: visibility past the holder's lease, redrive to its dead-letter queue.
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.physical["NotificationQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert int(attributes["VisibilityTimeout"]) == notifications.visibility_timeout_s
    redrive = attributes["RedrivePolicy"]  # moto echoes the template's object; AWS answers JSON text
    assert (json.loads(redrive) if isinstance(redrive, str) else redrive) == {
        "deadLetterTargetArn": stack.attribute("NotificationDeadLetterQueue", "Arn"),
        "maxReceiveCount": notifications.max_receive_count,
    }
    key_id = stack.physical["DataKey"]
    for logical, kind in stack.types.items():
        if kind == "AWS::SQS::Queue":
            queue = sqs.get_queue_attributes(QueueUrl=stack.physical[logical], AttributeNames=["All"])["Attributes"]
            assert queue["KmsMasterKeyId"] == key_id, logical
    assert ev.exists("NotificationQueue")


def _queue(stack: Stack, name: str) -> str:
    (logical,) = [
        logical
        for logical, kind in stack.types.items()
        if kind == "AWS::SQS::Queue" and stack.physical[logical].endswith(f"/{name}")
    ]
    return logical


@pytest.mark.parametrize("configuration", ["streaming+serverless", "direct"])
def test_functions_schedules_logs_table_and_key_read_back_as_declared(
    deploy: Callable[[str], Stack], configuration: str
) -> None:
    stack = deploy(configuration)
    lam = stack.client("lambda")
    declared = functions(load_config(environ={}))
    deployed = [logical for logical, kind in stack.types.items() if kind == "AWS::Lambda::Function"]
    assert deployed
    for logical in deployed:
        spec = declared[logical]
        configuration_of = lam.get_function(FunctionName=stack.physical[logical])
        function = configuration_of["Configuration"]
        assert function["FunctionName"] == spec.function
        assert (function["Handler"], function["Runtime"]) == (spec.handler, "python3.12")
        assert (function["MemorySize"], function["Timeout"]) == (spec.memory_mb, spec.timeout_s)
        assert configuration_of["Concurrency"]["ReservedConcurrentExecutions"] == spec.reserved_concurrency
    events = stack.client("events")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"]}
    for scheduled in scheduled_functions(load_config(environ={})).values():
        rule = scheduled.rule()
        if scheduled.function not in {declared[f].function for f in deployed}:
            assert rule["Name"] not in rules
            continue
        assert rules[rule["Name"]]["ScheduleExpression"] == rule["ScheduleExpression"]
        (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"].endswith(f":function:{scheduled.function}")
    groups = {g["logGroupName"]: g for g in stack.client("logs").describe_log_groups()["logGroups"]}
    for logical in deployed:
        assert groups[f"/aws/lambda/{declared[logical].function}"]["retentionInDays"] == 30
    table = stack.client("dynamodb").describe_table(TableName=stack.physical["LedgerTable"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert stack.client("kms").get_key_rotation_status(KeyId=stack.physical["DataKey"])["KeyRotationEnabled"]


# --------------------------------------------------------------------------- the calls the code makes
@dataclass(frozen=True)
class Call:
    function: str
    service: str
    operation: str
    params: dict[str, Any]


class CallRecorder:
    """Every AWS operation made while ``function`` is set, with its API parameters: a botocore
    ``before-parameter-build`` handler that every new session picks up (the handlers make their
    own clients)."""

    def __init__(self) -> None:
        self.function = ""
        self.calls: list[Call] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function:
            self.calls.append(Call(self.function, model.service_model.service_name, model.name, dict(params)))


def iam_request(call: Call) -> tuple[str, str]:
    """(IAM action, resource ARN) of a recorded call: the authorization AWS asks for."""
    service, operation, params = call.service, call.operation, call.params
    if service == "s3":
        action = {"HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket"}.get(
            operation, operation
        )
        key = f"/{params['Key']}" if "Key" in params else ""
        return f"s3:{action}", f"arn:aws:s3:::{params['Bucket']}{key}"
    if service == "kinesis":
        return f"kinesis:{operation}", f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{params['StreamName']}"
    if service == "dynamodb":
        table = params.get("TableName") or next(iter(params["RequestItems"]))
        return f"dynamodb:{operation}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    if service == "lambda":
        return "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{params['FunctionName']}"
    if service == "redshift-data":
        if "WorkgroupName" in params:
            # IAM names the workgroup by id; the template's RedshiftWorkgroupId is the one named RedshiftTarget.
            assert params["WorkgroupName"] == SERVERLESS["RedshiftTarget"]
            workgroup = SERVERLESS["RedshiftWorkgroupId"]
            return f"redshift-data:{operation}", f"arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/{workgroup}"
        return f"redshift-data:{operation}", "*"
    raise AssertionError(f"no IAM mapping for {service}.{operation}")


SERVICE_SIDE = {
    "logs:CreateLogStream": "Lambda's runtime writes the function's logs",
    "logs:PutLogEvents": "Lambda's runtime (Firehose for its own group) writes the logs",
    "xray:PutTraceSegments": "Lambda's runtime, with Tracing enabled",
    "xray:PutTelemetryRecords": "Lambda's runtime, with Tracing enabled",
    "kms:Decrypt": "S3, Kinesis, SQS and DynamoDB use the key on the caller's behalf",
    "kms:GenerateDataKey": "S3, Kinesis and SQS use the key on the caller's behalf",
    "sqs:ReceiveMessage": "the SQS event source mapping polls with the function's role",
    "sqs:DeleteMessage": "the SQS event source mapping deletes what the function processed",
    "sqs:GetQueueAttributes": "the SQS event source mapping reads the queue",
    "sqs:SendMessage": "the on-failure destination (Kinesis mapping or asynchronous invocation) sends",
    "kinesis:DescribeStream": "the Kinesis event source mapping (or Firehose) reads the stream",
    "kinesis:DescribeStreamSummary": "the Kinesis event source mapping reads the stream",
    "kinesis:GetRecords": "the Kinesis event source mapping (or Firehose) reads the stream",
    "kinesis:GetShardIterator": "the Kinesis event source mapping (or Firehose) reads the stream",
    "kinesis:ListShards": "the Kinesis event source mapping (or Firehose) reads the stream",
    "secretsmanager:GetSecretValue": "the Data API (and Firehose) read the secret with the caller's permissions",
}
"""Actions AWS services exercise with a role, never a call of our code."""
NOT_A_CALL = {
    (
        "ExtractFunction",
        "s3:ListBucket",
    ): "S3 answers 404 (not 403) for a deleted object only to a caller allowed to list",
    ("ParquetSinkFunction", "s3:ListBucket"): "likewise for the sink's HEAD of an output that is missing",
    ("ParquetSinkFunction", "s3:GetObject"): "HEAD of a dead attempt's outputs before rolling it forward",
    ("RedshiftLoaderFunction", "redshift-data:BatchExecuteStatement"): "the merge: moto's statements never finish",
    ("RedshiftLoaderFunction", "redshift-data:GetStatementResult"): "results of a finished statement (likewise)",
    (
        "DirectFunction",
        "s3:ListBucket",
    ): "S3 answers 404 (not 403) for a deleted object only to a caller allowed to list",
    ("DirectFunction", "s3:DeleteObject"): "deletes the parts of an object abandoned after MAX_TIMEOUTS timeouts",
}
"""Allowed actions the scenario below cannot reach on moto, with the path of the code that needs them."""
FIREHOSE_ACTIONS = {
    "kinesis:DescribeStream",
    "kinesis:GetShardIterator",
    "kinesis:GetRecords",
    "kinesis:ListShards",
    "s3:AbortMultipartUpload",
    "s3:GetBucketLocation",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:PutObject",
    "lambda:InvokeFunction",
    "lambda:GetFunctionConfiguration",
    "secretsmanager:GetSecretValue",
    "logs:PutLogEvents",
    "kms:Decrypt",
    "kms:GenerateDataKey",
}
"""Firehose's role, as https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html lists it
for a Kinesis source, a Lambda transformation and a Redshift destination (its S3 part included)."""


def _log() -> tuple[bytes, int]:
    builder = LogBuilder()
    for n in range(12):
        query = {"e": "pv", "url": f"https://shop.example/{n}", "eid": f"00000000-0000-4000-8000-{n:012d}"}
        builder.add(uri_stem="/i", query=tracker_query(query))
    builder.add(uri_stem="/i", query=tracker_query({"e": "zz"}))  # Transform: tracker protocol violation
    builder.add_raw("not\ta\tcloudfront\tline")  # Transform: field count
    return gzip.compress(builder.to_bytes() + b"\xff\xfe not utf-8\n", mtime=0), 12  # Extract: invalid UTF-8


def _records(stack: Stack, logical: str) -> list[KinesisRecord]:
    kinesis = stack.client("kinesis")
    name = stack.physical[logical]
    out: list[KinesisRecord] = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        response = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        out.extend(
            KinesisRecord(r["Data"], r["PartitionKey"], r["SequenceNumber"], shard["ShardId"], 1_731_697_200.0)
            for r in response["Records"]
        )
    return out


def _environment(stack: Stack, logical: str) -> dict[str, str]:
    variables = stack.translated["Resources"][logical]["Properties"]["Environment"]["Variables"]
    return {k: str(v) for k, v in stack.ev.resolve(variables).items()}


def _fail_once(operation: str, key_prefix: str) -> Callable[..., None]:
    """A hook failing the first ``operation`` on a key under ``key_prefix`` (fault injection, reliability.md 5)."""
    from botocore.exceptions import ClientError

    state = {"failed": False}

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == operation and str(params.get("Key", "")).startswith(key_prefix) and not state["failed"]:
            state["failed"] = True
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, operation)

    return hook


class Scenario:
    """Runs handlers in-process against a moto stack, each with its template environment and a
    fresh container (cleared ``default_deps``), recording its AWS calls."""

    HANDLER_MODULES = (
        "extract.handler",
        "extract.reconciler",
        "transform.handler",
        "load.sink_handler",
        "load.redshift_handler",
        "pipeline.app.direct",
    )

    def __init__(self, deploy: Callable[[str], Stack], configuration: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.recorder = CallRecorder()
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(
            botocore.handlers,
            "BUILTIN_HANDLERS",
            [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", self.recorder)],
        )
        self.stack = deploy(configuration)
        self.s3 = self.stack.client("s3")
        self.raw = self.stack.physical.get("RawLogsBucket", "")

    def run(self, logical: str, call: Callable[[], Any], **overrides: str) -> Any:
        import importlib

        for module in self.HANDLER_MODULES:
            importlib.import_module(module).default_deps.cache_clear()
        with self.monkeypatch.context() as env:
            for name, value in {**_environment(self.stack, logical), **overrides}.items():
                env.setenv(name, value)
            env.setenv("AWS_LAMBDA_FUNCTION_NAME", self.stack.physical[logical])
            self.recorder.function = logical
            try:
                return call()
            finally:
                self.recorder.function = ""

    def context(self, logical: str, remaining_ms: int = 300_000) -> FakeLambdaContext:
        return FakeLambdaContext(remaining_ms, function_name=self.stack.physical[logical])

    def upload(self, key: str, body: bytes) -> dict[str, Any]:
        """Put a log object; the SQS event of its notification (moto's stack has no notification)."""
        put = self.s3.put_object(Bucket=self.raw, Key=key, Body=body)
        created = s3_object_created_event(self.raw, key, etag=put["ETag"].strip('"'), size=len(body))
        return sqs_wrapped(created, queue_arn=self.stack.attribute("NotificationQueue", "Arn"))

    def used_actions(self, template: dict[str, Any]) -> dict[str, set[str]]:
        """Each function's actions; fails on any call outside its allow-list or its resources."""
        ev = self.stack.ev
        used: dict[str, set[str]] = {}
        for call in self.recorder.calls:
            action, resource = iam_request(call)
            allowed = _allowed(ev, template, call.function)
            assert action in allowed, f"{call.function} calls {action}, which its role does not allow"
            assert any(fnmatchcase(resource, p) for p in allowed[action]), f"{call.function}: {action} on {resource}"
            if action == "s3:ListBucket" and call.function == "ExtractReconcilerFunction":
                assert str(call.params.get("Prefix", "")).startswith(ev.parameters["RawLogsPrefix"])
            used.setdefault(call.function, set()).add(action)
        return used


def assert_every_allowed_action_is_needed(template: dict[str, Any], used: dict[str, set[str]], logical: str) -> None:
    declared = set(policies.allow_list(_role_of(template, logical)))
    not_calls = {action for (function, action) in NOT_A_CALL if function == logical}
    unexplained = declared - used.get(logical, set()) - SERVICE_SIDE.keys() - not_calls
    assert unexplained == set(), f"{logical} is allowed actions nothing needs: {sorted(unexplained)}"


@pytest.mark.slow
def test_the_streaming_functions_call_aws_only_within_their_allow_lists(
    deploy: Callable[[str], Stack], template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reliability catalogue S01: GIVEN the streaming stack with Redshift on moto
    WHEN each handler runs with its template environment: Extract (a log, a duplicate notification,
         a continuation), Transform, the Parquet sink (one failed put, then its retry), the
         reconciler, the Firehose transformation and the loader
    THEN every call is an action of the function's golden allow-list on a resource it names, and
         every allowed action is either called, exercised by an AWS service, or listed with its path."""
    from extract import handler as extract_handler
    from extract import reconciler
    from load import firehose_handler, redshift_handler, sink_handler
    from load.errors import StatementTimeoutError
    from transform import handler as transform_handler

    scenario = Scenario(deploy, "streaming+serverless", monkeypatch)
    stack, run, context = scenario.stack, scenario.run, scenario.context
    body, good_lines = _log()
    notification = scenario.upload("E2EXAMPLE.2024-11-15-19.abcd1234.gz", body)
    # Extract: the object, then the same notification again (a duplicate), then one with no time left.
    first = run("ExtractFunction", lambda: extract_handler.handler(notification, context("ExtractFunction")))
    assert first["batchItemFailures"] == [] and first["objects"][0]["outcome"] == "complete"
    again = run("ExtractFunction", lambda: extract_handler.handler(notification, context("ExtractFunction")))
    assert again["objects"][0]["outcome"] == "duplicate"
    late = run("ExtractFunction", lambda: extract_handler.handler(notification, context("ExtractFunction", 1_000)))
    assert late["objects"][0]["outcome"] == "deferred"
    # Transform: stream 1 -> stream 2 and a bad row.
    batch = kinesis_event(_records(stack, "RawStream"), stream_arn=stack.attribute("RawStream", "Arn"))
    transformed = run("TransformFunction", lambda: transform_handler.handler(batch, context("TransformFunction")))
    assert transformed == {"batchItemFailures": []}
    # The Parquet sink: a put fails once (the attempt undoes itself), then the retry writes.
    events = kinesis_event(_records(stack, "EventsStream"), stream_arn=stack.attribute("EventsStream", "Arn"))
    config = load_config(environ=_environment(stack, "ParquetSinkFunction"))
    with monkeypatch.context() as faults:
        fault = _fail_once("PutObject", config.resources.events_prefix)
        faults.setattr(
            botocore.handlers,
            "BUILTIN_HANDLERS",
            [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build.s3.PutObject", fault)],
        )
        with pytest.raises(Exception, match="cannot write"):
            run("ParquetSinkFunction", lambda: sink_handler.handler(events, context("ParquetSinkFunction")))
    written = run("ParquetSinkFunction", lambda: sink_handler.handler(events, context("ParquetSinkFunction")))
    assert written["rows_written"] == good_lines
    # The reconciler: an object no notification announced is re-driven at once (minimum age 0).
    scenario.upload("E2EXAMPLE.2024-11-15-20.ef567890.gz", body)
    summary = run(
        "ExtractReconcilerFunction",
        lambda: reconciler.handler({"source": "aws.events"}, context("ExtractReconcilerFunction")),
        CLICKSTREAM_ETL_RECONCILE_MIN_AGE_S="0",
    )
    assert summary["redriven"] == {"unrecorded": 1}
    # Firehose's transformation: no AWS call at all.
    one = _records(stack, "EventsStream")[0]
    answered = run(
        "FirehoseTransformFunction",
        lambda: firehose_handler.handler(firehose_event([("r1", one.data)]), context("FirehoseTransformFunction")),
    )
    assert answered["records"][0]["result"] == "Ok"
    # The loader: moto's statements never finish, so one poll, then the timeout (and a cancel).
    with pytest.raises(StatementTimeoutError):
        run(
            "RedshiftLoaderFunction",
            lambda: redshift_handler.handler({}, context("RedshiftLoaderFunction")),
            CLICKSTREAM_ETL__REDSHIFT__MAX_POLLS="1",
            CLICKSTREAM_ETL__REDSHIFT__POLL_INTERVAL_MS="0",
        )

    used = scenario.used_actions(template)
    for logical in (
        "ExtractFunction",
        "ExtractReconcilerFunction",
        "TransformFunction",
        "ParquetSinkFunction",
        "FirehoseTransformFunction",
        "RedshiftLoaderFunction",
    ):
        assert_every_allowed_action_is_needed(template, used, logical)
    # Firehose's role is Firehose's alone: the stream, the files Redshift's COPY reads with it, the transformation.
    assert set(policies.allow_list(_role_of(template, "RedshiftDeliveryStream"))) == FIREHOSE_ACTIONS
    # And whatever the code wrote is in the output bucket, where no notification looks.
    listed = scenario.s3.list_objects_v2(Bucket=stack.physical["OutputBucket"])["Contents"]
    assert {item["Key"].split("/", 1)[0] + "/" for item in listed} == {
        config.resources.events_prefix,
        config.resources.bad_prefix,
    }
    assert {item["Key"] for item in scenario.s3.list_objects_v2(Bucket=scenario.raw)["Contents"]} == {
        "E2EXAMPLE.2024-11-15-19.abcd1234.gz",
        "E2EXAMPLE.2024-11-15-20.ef567890.gz",
    }
    bad_kinds = {item["Key"].split("/")[1] for item in listed if item["Key"].startswith(config.resources.bad_prefix)}
    assert bad_kinds == {"field_count", "invalid_utf8", "tracker_protocol_violation"}


def test_the_direct_function_calls_aws_only_within_its_allow_list(
    deploy: Callable[[str], Stack], template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN the direct stack on moto
    WHEN the direct function handles a notification, the same one again, and the reconciler's re-drive
    THEN its calls and the reconciler's stay within their allow-lists, and it writes only to OutputBucket."""
    from extract import reconciler
    from pipeline.app import direct

    scenario = Scenario(deploy, "direct", monkeypatch)
    run, context = scenario.run, scenario.context
    body, good_lines = _log()
    notification = scenario.upload("E2EXAMPLE.2024-11-15-19.abcd1234.gz", body)
    first = run("DirectFunction", lambda: direct.handler(notification, context("DirectFunction")))
    assert first["batchItemFailures"] == []
    again = run("DirectFunction", lambda: direct.handler(notification, context("DirectFunction")))
    assert again["batchItemFailures"] == []
    scenario.upload("E2EXAMPLE.2024-11-15-20.ef567890.gz", body)
    summary = run(
        "ExtractReconcilerFunction",
        lambda: reconciler.handler({"source": "aws.events"}, context("ExtractReconcilerFunction")),
        CLICKSTREAM_ETL_RECONCILE_MIN_AGE_S="0",
    )
    assert summary["redriven"] == {"unrecorded": 1}
    used = scenario.used_actions(template)
    assert "lambda:InvokeFunction" in used["ExtractReconcilerFunction"]
    assert_every_allowed_action_is_needed(template, used, "DirectFunction")
    config = load_config(environ=_environment(scenario.stack, "DirectFunction"))
    listed = scenario.s3.list_objects_v2(Bucket=scenario.stack.physical["OutputBucket"])["Contents"]
    parquet = [item for item in listed if item["Key"].endswith(".parquet")]
    assert parquet and all(item["Key"].startswith(config.resources.events_prefix) for item in parquet)
    assert good_lines == 12


def _role_of(template: dict[str, Any], user: str) -> dict[str, Any]:
    (role,) = [name for name, users in policies.role_users(template).items() if users == [user]]
    return dict(template["Resources"][role])


def _allowed(ev: Evaluator, template: dict[str, Any], logical: str) -> dict[str, list[str]]:
    """The function's golden allow-list with this stack's names and ARNs filled in."""
    golden: dict[str, list[str]] = json.loads((policies.IAM_DIR / f"{logical}.json").read_text("utf-8"))
    assert golden == policies.allow_list(_role_of(template, logical))

    def fill(pattern: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(ev.resolve({"Fn::Sub": "${" + m.group(1) + "}"})), pattern)

    return {action: [fill(p) for p in patterns] for action, patterns in golden.items()}
