"""``clickstream-etl deploy`` and ``destroy``: parameters checked, a summary, sam run; a clean teardown on moto.

GIVEN a SAM template with CloudFormation short tags, parameters and conditions
WHEN deploy runs with an injected sam runner
THEN bad parameters are all reported at once, the summary counts the resources the conditions
     create and the modeled cost, and sam deploy gets the parameters it was given.
GIVEN a stack on moto whose buckets hold object versions and delete markers, and a bucket of the user's
WHEN destroy runs
THEN the stack's buckets are emptied and deleted with the stack, the user's bucket and a retained one are untouched.
"""

from __future__ import annotations

import argparse
import io
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from pipeline.app.cli import build_parser, main
from pipeline.app.commands import deploy, destroy
from pipeline.app.stack import (
    INSTALL_SAM,
    code_uris,
    evaluate_conditions,
    parse_template,
    resolve_parameters,
    resources_by_type,
)
from pipeline.errors import InputError

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  PipelineMode:
    Type: String
    Default: streaming
    AllowedValues: [streaming, direct]
  RawBucketName:
    Type: String
    Default: ""
    AllowedPattern: "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    ConstraintDescription: an S3 bucket name, or empty for a new bucket
  ShardCount:
    Type: Number
    Default: 1
    MinValue: 1
    MaxValue: 16
  AlarmTopicArn:
    Type: String
    Description: the SNS topic of the alarms
Conditions:
  Streaming: !Equals [!Ref PipelineMode, streaming]
  Direct: !Not [!Condition Streaming]
  NewRawBucket: !Equals [!Ref RawBucketName, ""]
Globals:
  Function:
    Runtime: python3.12
Resources:
  RawBucket:
    Type: AWS::S3::Bucket
    Condition: NewRawBucket
  OutputBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-output"
  RawStream:
    Type: AWS::Kinesis::Stream
    Condition: Streaming
    Properties:
      ShardCount: !Ref ShardCount
      StreamModeDetails:
        StreamMode: PROVISIONED
  EventsStream:
    Type: AWS::Kinesis::Stream
    Condition: Streaming
    Properties:
      ShardCount: !Ref ShardCount
  Extract:
    Type: AWS::Serverless::Function
    Condition: Streaming
    Properties:
      CodeUri: lambda-artifacts/extract
      Handler: extract.handler.handler
      Environment:
        Variables:
          STREAM: !GetAtt RawStream.Arn
          BUCKET: !If [NewRawBucket, !Ref RawBucket, !Ref RawBucketName]
  Direct:
    Type: AWS::Serverless::Function
    Condition: Direct
    Properties:
      CodeUri: lambda-artifacts/direct
      Handler: pipeline.app.direct.handler
      Layers: [!Ref PyarrowLayer]
  PyarrowLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: lambda-artifacts/pyarrow-layer
"""

TOPIC = "AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:alarms"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    for folder in ("extract", "direct", "pyarrow-layer"):
        (tmp_path / "lambda-artifacts" / folder).mkdir(parents=True)
    return path


def deploy_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["deploy", *argv])


class Sam:
    """Records the command lines it is asked to run (the injected runner)."""

    def __init__(self, code: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.code = code

    def __call__(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        return self.code


def test_the_template_loader_tolerates_cloudformation_short_tags() -> None:
    template = parse_template(TEMPLATE)
    variables = template["Resources"]["Extract"]["Properties"]["Environment"]["Variables"]
    assert variables["STREAM"] == {"Fn::GetAtt": ["RawStream", "Arn"]}
    assert variables["BUCKET"] == {"Fn::If": ["NewRawBucket", {"Ref": "RawBucket"}, {"Ref": "RawBucketName"}]}
    assert template["Conditions"]["Direct"] == {"Fn::Not": [{"Condition": "Streaming"}]}


def test_every_bad_parameter_is_reported_at_once() -> None:
    template = parse_template(TEMPLATE)
    with pytest.raises(InputError) as raised:
        resolve_parameters(
            template,
            [("PipelineMode", "batch"), ("RawBucketName", "Bad_Bucket"), ("ShardCount", "40"), ("Colour", "red")],
        )
    message = str(raised.value)
    assert "PipelineMode: 'batch' is not one of streaming, direct" in message
    assert "RawBucketName: 'Bad_Bucket' does not match" in message and "an S3 bucket name" in message
    assert "ShardCount: 40 is above 16" in message
    assert "Colour: the template has no such parameter" in message
    assert "AlarmTopicArn: required" in message and "the SNS topic of the alarms" in message


def test_guided_deploys_leave_the_missing_parameters_to_sam() -> None:
    parameters = resolve_parameters(parse_template(TEMPLATE), [], guided=True)
    assert "AlarmTopicArn" not in parameters and parameters["PipelineMode"] == "streaming"


def test_the_conditions_decide_what_each_mode_creates() -> None:
    template = parse_template(TEMPLATE)
    topic = ("AlarmTopicArn", "arn")
    streaming = resolve_parameters(template, [topic])
    direct = resolve_parameters(template, [topic, ("PipelineMode", "direct"), ("RawBucketName", "my-logs")])
    s = evaluate_conditions(template, streaming)
    d = evaluate_conditions(template, direct)
    assert resources_by_type(template, s) == {
        "AWS::S3::Bucket": 2,
        "AWS::Kinesis::Stream": 2,
        "AWS::Serverless::Function": 1,
        "AWS::Serverless::LayerVersion": 1,
    }
    assert resources_by_type(template, d) == {
        "AWS::S3::Bucket": 1,  # the raw bucket is the user's
        "AWS::Serverless::Function": 1,
        "AWS::Serverless::LayerVersion": 1,
    }
    assert code_uris(template, d) == ["lambda-artifacts/direct", "lambda-artifacts/pyarrow-layer"]


def test_deploy_prints_the_summary_and_the_cost_then_runs_sam_deploy(template: Path) -> None:
    sam, out = Sam(), io.StringIO()
    args = deploy_args("--template", str(template), "--stack-name", "clicks", "--region", "eu-west-1",
                       "--parameter", TOPIC, "--parameter", "ShardCount=2")  # fmt: skip
    assert deploy.run(args, runner=sam, sam="/usr/bin/sam", out=out) == 0
    text = out.getvalue()
    assert "PipelineMode = streaming  (default)" in text and "ShardCount = 2\n" in text
    assert "  2  AWS::Kinesis::Stream" in text and "  2  AWS::S3::Bucket" in text
    assert "modeled cost at 10 events/s: $" in text and "--mode streaming" in text
    [command] = sam.commands
    assert command[:4] == ["/usr/bin/sam", "deploy", "--template-file", str(template)]
    assert command[command.index("--stack-name") + 1] == "clicks"
    assert command[command.index("--region") + 1] == "eu-west-1"
    assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND", "--resolve-s3"} <= set(command)
    overrides = command[command.index("--parameter-overrides") + 1 :]
    assert overrides == ["AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:alarms", "ShardCount=2"]


def test_guided_passes_through_to_sam(template: Path) -> None:
    sam = Sam()
    assert (
        deploy.run(deploy_args("--template", str(template), "--guided"), runner=sam, sam="sam", out=io.StringIO()) == 0
    )
    [command] = sam.commands
    assert "--guided" in command and "--capabilities" not in command and "--parameter-overrides" not in command


def test_the_direct_mode_summary_has_no_streams(template: Path) -> None:
    out = io.StringIO()
    args = deploy_args("--template", str(template), "--parameter", TOPIC, "--parameter", "PipelineMode=direct",
                       "--dry-run", "--events-per-second", "1")  # fmt: skip
    assert deploy.run(args, runner=Sam(), sam="sam", out=out) == 0
    assert "Kinesis" not in out.getvalue() and "--mode direct" in out.getvalue()


def test_a_failing_sam_deploy_exits_1(template: Path) -> None:
    args = deploy_args("--template", str(template), "--parameter", TOPIC)
    assert deploy.run(args, runner=Sam(code=3), sam="sam", out=io.StringIO()) == 1


def test_deploy_refuses_before_sam_when_the_artifacts_are_not_built(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    sam = Sam()
    with pytest.raises(InputError, match="run clickstream-etl package first"):
        deploy.run(
            deploy_args("--template", str(tmp_path / "template.yaml"), "--parameter", TOPIC), runner=sam, sam="sam"
        )
    assert sam.commands == []


def test_without_sam_deploy_says_how_to_install_it(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty" / "python"))
    assert main(["deploy", "--template", str(template), "--parameter", TOPIC]) == 2
    assert INSTALL_SAM in capsys.readouterr().err


def test_deploy_and_destroy_help_document_the_flow(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("deploy", "destroy", "package"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    text = capsys.readouterr().out
    assert "sam deploy" in text and "clickstream-etl package" in text and INSTALL_SAM in text
    assert "every object version and delete marker" in text and "DeletionPolicy: Retain" in text


# --- destroy on moto

STACK_TEMPLATE = """\
Parameters:
  RawBucketName:
    Type: String
Resources:
  OutputBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: {output}
      VersioningConfiguration:
        Status: Enabled
  BadRowsBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: {bad}
  KeptBucket:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
    Properties:
      BucketName: {kept}
Outputs:
  RawBucket:
    Value: !Ref RawBucketName
"""


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    import boto3

    with mock_aws():
        yield {name: boto3.client(name, region_name="us-east-1") for name in ("s3", "cloudformation", "logs")}


def _names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {key: f"clicks-{key}-{suffix}" for key in ("output", "bad", "kept", "user")}


def _stack(aws: dict[str, Any], names: dict[str, str]) -> str:
    s3 = aws["s3"]
    s3.create_bucket(Bucket=names["user"])
    s3.put_object(Bucket=names["user"], Key="logs/E1.2024-11-15-11.gz", Body=b"the user's logs")
    stack = f"clicks-{uuid.uuid4().hex[:8]}"
    aws["cloudformation"].create_stack(
        StackName=stack,
        TemplateBody=STACK_TEMPLATE.format(**names),
        Parameters=[{"ParameterKey": "RawBucketName", "ParameterValue": names["user"]}],
    )
    # moto's CloudFormation ignores VersioningConfiguration; the bucket is versioned as the template asks.
    s3.put_bucket_versioning(Bucket=names["output"], VersioningConfiguration={"Status": "Enabled"})
    for version in range(3):  # three versions, then a delete marker
        s3.put_object(Bucket=names["output"], Key="events/part-0.parquet", Body=f"v{version}".encode())
    s3.delete_object(Bucket=names["output"], Key="events/part-0.parquet")
    s3.put_object(Bucket=names["output"], Key="events/part-1.parquet", Body=b"x")
    s3.put_object(Bucket=names["bad"], Key="bad/field_count/x.jsonl", Body=b"{}")
    s3.put_object(Bucket=names["kept"], Key="keep-me", Body=b"kept")
    return stack


def test_destroy_empties_the_stacks_buckets_every_version_and_leaves_the_users_bucket(aws: dict[str, Any]) -> None:
    # GIVEN a stack whose versioned bucket holds versions and a delete marker, and the user's bucket as a parameter
    names = _names()
    stack = _stack(aws, names)
    stack_id = aws["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]["StackId"]
    out = io.StringIO()
    # WHEN destroy runs, confirmed
    args = build_parser().parse_args(["destroy", "--stack-name", stack, "--yes"])
    assert destroy.run(args, clients=aws, out=out) == 0
    # THEN the stack's buckets were emptied and are gone with the stack
    text = out.getvalue()
    assert f"emptied s3://{names['output']}: 4 object versions, 1 delete markers" in text
    assert f"emptied s3://{names['bad']}: 1 object versions, 0 delete markers" in text
    buckets = {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]}
    assert names["output"] not in buckets and names["bad"] not in buckets
    status = aws["cloudformation"].describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
    assert status == "DELETE_COMPLETE"
    # AND the user's bucket and the retained bucket are untouched
    assert (
        aws["s3"].get_object(Bucket=names["user"], Key="logs/E1.2024-11-15-11.gz")["Body"].read() == b"the user's logs"
    )
    assert f"will not touch s3://{names['kept']}: DeletionPolicy Retain" in text
    assert names["user"] not in text.split("deleted stack")[0].replace(f"will not touch s3://{names['user']}", "")
    assert aws["s3"].get_object(Bucket=names["kept"], Key="keep-me")["Body"].read() == b"kept"


def test_a_bucket_named_by_a_parameter_is_never_emptied_even_when_the_stack_lists_it() -> None:
    from pipeline.app.teardown import StackResource, decide_teardown

    resources = [
        StackResource("Raw", "my-logs", "AWS::S3::Bucket", "CREATE_COMPLETE"),
        StackResource("Output", "stack-output", "AWS::S3::Bucket", "CREATE_COMPLETE"),
        StackResource("Extract", "stack-extract", "AWS::Lambda::Function", "CREATE_COMPLETE"),
    ]
    plan = decide_teardown("s", "id", resources, ["my-logs", "streaming"], {"Resources": {}})
    assert plan.buckets == ("stack-output",)
    assert plan.kept == (("my-logs", "named by a parameter: the user's bucket"),)
    assert plan.functions == ("stack-extract",)


def test_destroy_of_a_stack_that_does_not_exist_exits_2(aws: dict[str, Any]) -> None:
    args = build_parser().parse_args(["destroy", "--stack-name", "no-such-stack", "--yes"])
    with pytest.raises(InputError, match="no stack named no-such-stack"):
        destroy.run(args, clients=aws, out=io.StringIO())


def test_destroy_without_a_terminal_asks_for_yes(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    names = _names()
    stack = _stack(aws, names)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(InputError, match="--yes"):
        destroy.run(build_parser().parse_args(["destroy", "--stack-name", stack]), clients=aws, out=io.StringIO())
    assert aws["s3"].list_object_versions(Bucket=names["output"]).get("Versions")  # nothing was deleted


def test_a_noecho_parameter_is_never_printed_but_reaches_sam(template: Path) -> None:
    """The dashboard's password hash (NoEcho) is masked in the summary and the printed sam command."""
    text = template.read_text().replace(
        "  AlarmTopicArn:\n",
        "  DashboardPasswordHash:\n    Type: String\n    NoEcho: true\n    Default: ''\n  AlarmTopicArn:\n",
    )
    template.write_text(text)
    secret = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    sam, out = Sam(), io.StringIO()
    args = deploy_args(
        "--template", str(template), "--parameter", TOPIC, "--parameter", f"DashboardPasswordHash={secret}"
    )
    assert deploy.run(args, runner=sam, sam="/usr/bin/sam", out=out) == 0
    printed = out.getvalue()
    assert secret not in printed and "DashboardPasswordHash = ****" in printed
    assert "DashboardPasswordHash=****" in printed  # the printed command line
    [command] = sam.commands
    assert f"DashboardPasswordHash={secret}" in command  # sam still gets the value
