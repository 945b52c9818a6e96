"""``clickstream-etl destroy``: empty the buckets the stack created, delete the stack, wait, report.

Plan and executor in :mod:`pipeline.app.teardown`.  Exit codes are the CLI's: 2 when there is
no such stack or the confirmation is missing, 1 when AWS refuses or fails a call (the message
says whether a rerun can help; a rerun plans again from what is left).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from pipeline.app.cli import EXIT_OK
from pipeline.errors import InputError

DESCRIPTION = """\
Tear the stack down without leaving debris:

  1. list the stack's resources, parameters and template;
  2. empty every bucket the stack created: every object version and delete marker. Never a bucket you
     brought in through a parameter (an existing raw-logs bucket), nor one the template keeps
     (DeletionPolicy: Retain);
  3. delete the stack and wait until it is gone;
  4. delete the log groups Lambda created for the stack's functions, when the template did not own them;

then report what it removed. It asks for the stack's name as confirmation unless --yes. It uses the AWS
API directly (boto3, the same credentials as the AWS CLI); it does not need sam."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.app.stack import DEFAULT_STACK

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--stack-name", default=DEFAULT_STACK, metavar="NAME", help=f"the stack to delete (default: {DEFAULT_STACK})"
    )
    parser.add_argument("--region", metavar="REGION", help="its AWS region (default: aws.region of the configuration)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace, *, clients: dict[str, Any] | None = None, out: TextIO | None = None) -> int:
    """``clients`` maps ``"s3"``, ``"cloudformation"`` and ``"logs"`` to clients (tests); else the factory's."""
    from dataclasses import replace

    from pipeline.app.teardown import execute_teardown, plan_teardown
    from pipeline.aws.clients import make_client
    from pipeline.config import load_config

    out = out or sys.stdout
    if clients is None:
        aws = load_config().aws
        if args.region:
            aws = replace(aws, region=args.region)
        clients = {name: make_client(name, aws) for name in ("s3", "cloudformation", "logs")}
    plan = plan_teardown(clients["cloudformation"], args.stack_name)
    out.write(f"stack {plan.stack_name}: {len(plan.resources)} resources\n")
    for bucket in plan.buckets:
        out.write(f"  will empty s3://{bucket} (every version and delete marker)\n")
    for bucket, why in plan.kept:
        out.write(f"  will not touch s3://{bucket}: {why}\n")
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError("destroy deletes data: pass --yes to confirm without a terminal")
        answer = input(f"type the stack name ({plan.stack_name}) to delete it: ")
        if answer.strip() != plan.stack_name:
            raise InputError("not confirmed; nothing was deleted")

    def log(message: str) -> None:
        print(f"destroy: {message}", file=sys.stderr, flush=True)

    report = execute_teardown(
        plan, s3=clients["s3"], cloudformation=clients["cloudformation"], logs=clients["logs"], log=log
    )
    for emptied in report.emptied:
        out.write(
            f"emptied s3://{emptied.bucket}: {emptied.versions} object versions, "
            f"{emptied.delete_markers} delete markers\n"
        )
    for group in report.log_groups:
        out.write(f"deleted log group {group}\n")
    out.write(f"deleted stack {report.stack_name} ({report.resources} resources)\n")
    return EXIT_OK
