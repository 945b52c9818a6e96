"""``clickstream-etl destroy``, planned then executed: empty the buckets the stack created, delete it, wait.

:func:`plan_teardown` reads the stack (its resources, parameters and template) and decides, as
values, which buckets to empty: the ``AWS::S3::Bucket`` resources of the stack, never a bucket
the user brought in through a parameter (one whose name is a parameter value is refused even
if the stack lists it), and not one the template keeps (``DeletionPolicy: Retain``), since
CloudFormation would leave it and its data behind on purpose.  :func:`execute_teardown` then
deletes every object version and delete marker of each, deletes the stack and waits for it,
and removes the log groups Lambda created for the stack's functions when the template did
not own them (a leftover peers' teardowns are known for).

Every AWS failure is translated by :func:`pipeline.aws.errors.translate` into
:class:`TeardownError` (terminal) or :class:`TeardownTransientError` (a rerun can help: the
plan is computed again from what is left).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.aws.errors import aws_exceptions, error_code, translate
from pipeline.errors import InputError, TerminalError, TransientError

RETAINED: Final = frozenset({"Retain", "RetainExceptOnCreate"})
DELETE_BATCH: Final = 1000
"""DeleteObjects takes at most 1,000 keys per call."""


class TeardownError(TerminalError):
    """An AWS call of the teardown was refused (permissions, a stack in a state that cannot be deleted)."""


class TeardownTransientError(TransientError):
    """An AWS call of the teardown failed in a way a rerun can fix (throttling, a timeout)."""


def _aws(what: str, exc: BaseException) -> Exception:
    return translate(exc, what, transient=TeardownTransientError, terminal=TeardownError)


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    physical_id: str
    type: str
    status: str


@dataclass(frozen=True)
class TeardownPlan:
    stack_name: str
    stack_id: str
    buckets: tuple[str, ...]
    """Buckets to empty (created by the stack)."""
    kept: tuple[tuple[str, str], ...]
    """(bucket, why) for the stack's buckets left alone."""
    user_buckets: tuple[str, ...]
    """Bucket names the stack's parameters carry: never touched."""
    functions: tuple[str, ...]
    owned_log_groups: tuple[str, ...]
    resources: tuple[StackResource, ...]


@dataclass
class BucketEmptied:
    bucket: str
    versions: int = 0
    delete_markers: int = 0


@dataclass
class TeardownReport:
    stack_name: str
    emptied: list[BucketEmptied] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    resources: int = 0
    log_groups: list[str] = field(default_factory=list)
    stack_deleted: bool = False


def decide_teardown(
    stack_name: str,
    stack_id: str,
    resources: Sequence[StackResource],
    parameter_values: Sequence[str],
    template: dict[str, Any],
) -> TeardownPlan:
    """The plan for these stack facts (pure: the executor and the tests share it)."""
    declared = template.get("Resources") or {}
    user = tuple(sorted({v for v in parameter_values if v}))
    buckets, kept = [], []
    for resource in resources:
        if resource.type != "AWS::S3::Bucket" or not resource.physical_id:
            continue
        policy = str((declared.get(resource.logical_id) or {}).get("DeletionPolicy", "Delete"))
        if resource.physical_id in user:
            kept.append((resource.physical_id, "named by a parameter: the user's bucket"))
        elif policy in RETAINED:
            kept.append((resource.physical_id, f"DeletionPolicy {policy}: the stack keeps it"))
        elif resource.status != "DELETE_COMPLETE":
            buckets.append(resource.physical_id)
    functions = tuple(r.physical_id for r in resources if r.type == "AWS::Lambda::Function" and r.physical_id)
    owned = tuple(r.physical_id for r in resources if r.type == "AWS::Logs::LogGroup" and r.physical_id)
    return TeardownPlan(stack_name, stack_id, tuple(buckets), tuple(kept), user, functions, owned, tuple(resources))


def plan_teardown(cloudformation: Any, stack_name: str) -> TeardownPlan:
    """Read the stack and decide; InputError when there is no such stack."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except aws_exceptions() as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            raise InputError(f"there is no stack named {stack_name} in this account and region") from exc
        raise _aws("CloudFormation DescribeStacks", exc) from exc
    stack = stacks[0]
    resources: list[StackResource] = []
    try:
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack["StackId"]):
            resources.extend(
                StackResource(
                    r["LogicalResourceId"],
                    r.get("PhysicalResourceId", ""),
                    r["ResourceType"],
                    r.get("ResourceStatus", ""),
                )
                for r in page["StackResourceSummaries"]
            )
        body = cloudformation.get_template(StackName=stack["StackId"], TemplateStage="Original")["TemplateBody"]
    except aws_exceptions() as exc:
        raise _aws("CloudFormation ListStackResources", exc) from exc
    template = body if isinstance(body, dict) else _parse(body)
    values = [str(p.get("ParameterValue", "")) for p in stack.get("Parameters", [])]
    return decide_teardown(stack["StackName"], stack["StackId"], resources, values, template)


def _parse(body: str) -> dict[str, Any]:
    from pipeline.app.stack import parse_template

    return parse_template(body)


def empty_bucket(s3: Any, bucket: str) -> BucketEmptied:
    """Delete every object version and delete marker of ``bucket`` (a missing bucket is empty)."""
    done = BucketEmptied(bucket)
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
            markers = [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
            batch = versions + markers
            for start in range(0, len(batch), DELETE_BATCH):
                response = s3.delete_objects(
                    Bucket=bucket, Delete={"Objects": batch[start : start + DELETE_BATCH], "Quiet": True}
                )
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise TeardownError(
                        f"S3 DeleteObjects on {bucket} refused {len(response['Errors'])} objects, e.g. "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )
            done.versions += len(versions)
            done.delete_markers += len(markers)
    except aws_exceptions() as exc:
        if error_code(exc) == "NoSuchBucket":
            return done
        raise _aws(f"S3 emptying {bucket}", exc) from exc
    return done


def execute_teardown(
    plan: TeardownPlan,
    *,
    s3: Any,
    cloudformation: Any,
    logs: Any,
    wait: bool = True,
    log: Callable[[str], None] = lambda _: None,
    waiter_delay_s: int = 10,
) -> TeardownReport:
    """Empty the plan's buckets, delete the stack, wait for it, remove leftover function log groups."""
    report = TeardownReport(plan.stack_name, kept=list(plan.kept), resources=len(plan.resources))
    for bucket in plan.buckets:
        log(f"emptying s3://{bucket}")
        report.emptied.append(empty_bucket(s3, bucket))
    log(f"deleting stack {plan.stack_name}")
    try:
        cloudformation.delete_stack(StackName=plan.stack_id)
        if wait:
            cloudformation.get_waiter("stack_delete_complete").wait(
                StackName=plan.stack_id, WaiterConfig={"Delay": waiter_delay_s, "MaxAttempts": 360}
            )
    except aws_exceptions() as exc:
        raise _aws(f"CloudFormation deleting {plan.stack_name}", exc) from exc
    except Exception as exc:  # botocore's WaiterError: the stack ended DELETE_FAILED
        if type(exc).__name__ != "WaiterError":
            raise
        raise TeardownError(
            f"stack {plan.stack_name} did not delete: {exc}; see its events "
            f"(aws cloudformation describe-stack-events --stack-name {plan.stack_id})"
        ) from exc
    report.stack_deleted = wait
    for function in plan.functions:
        group = f"/aws/lambda/{function}"
        if group in plan.owned_log_groups:
            continue
        try:
            logs.delete_log_group(logGroupName=group)
            report.log_groups.append(group)
        except aws_exceptions() as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise _aws(f"CloudWatch Logs deleting {group}", exc) from exc
    return report
