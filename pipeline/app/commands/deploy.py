"""``clickstream-etl deploy``: check the parameters, say what will be created and what it costs, run sam deploy.

Plan in :mod:`pipeline.app.stack`; the modeled cost is :mod:`pipeline.app.cost`'s.  Exit codes
are the CLI's: 2 for invalid parameters, a missing template or artifacts, or no ``sam``; 1 when
``sam deploy`` fails (its own output says why).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, cast

from pipeline.app.arguments import key_value, non_negative_float
from pipeline.app.cli import EXIT_FAILED, EXIT_OK
from pipeline.errors import InputError

DESCRIPTION = """\
Deploy the pipeline with AWS SAM, in four steps:

  1. check every --parameter KEY=VALUE against the template's Parameters (names, AllowedValues,
     AllowedPattern, lengths, bounds; a parameter without a default must be given, except with --guided);
  2. decide the template's Conditions for those values and print the resources that will be created,
     by type, and the parameters in force;
  3. print the modeled monthly cost of that deployment at --events-per-second (see clickstream-etl cost);
  4. run `sam deploy` on the template (with --guided, sam asks for the rest and can save it to samconfig.toml;
     without it: --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND --resolve-s3).

The functions deploy from the folders `clickstream-etl package` builds (the template's CodeUri): run it first.
--dry-run stops after step 3. Needs the sam command: pip install 'clickstream-etl[deploy]'.
Tear down with: clickstream-etl destroy --stack-name NAME"""

Runner = Callable[[Sequence[str]], int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.app.stack import DEFAULT_STACK, DEFAULT_TEMPLATE

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--guided", action="store_true", help="let sam deploy ask for the stack's settings")
    parser.add_argument(
        "--stack-name",
        default=DEFAULT_STACK,
        metavar="NAME",
        help=f"the CloudFormation stack (default: {DEFAULT_STACK})",
    )
    parser.add_argument("--region", metavar="REGION", help="the AWS region (default: the AWS CLI's)")
    parser.add_argument(
        "--parameter",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter (repeatable)",
    )
    parser.add_argument(
        "--template", default=DEFAULT_TEMPLATE, metavar="FILE", help=f"the SAM template (default: {DEFAULT_TEMPLATE})"
    )
    parser.add_argument(
        "--events-per-second",
        type=non_negative_float,
        default=10.0,
        metavar="N",
        help="event rate of the cost summary (default: 10)",
    )
    parser.add_argument("--dry-run", action="store_true", help="check and summarize, do not run sam deploy")


def find_sam() -> str | None:
    """The ``sam`` command: on PATH, or beside this Python (a venv not activated)."""
    beside = Path(sys.executable).with_name("sam")
    return shutil.which("sam") or (str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None)


def missing_sam_message() -> str:
    from pipeline.app.stack import INSTALL_SAM

    return f"the sam command (aws-sam-cli) is not installed; install it with: {INSTALL_SAM}"


def _masked(command: Sequence[str], secret: set[str]) -> list[str]:
    """The command line with the values of NoEcho parameter overrides replaced by ****."""
    return [
        f"{word.split('=', 1)[0]}=****" if word.split("=", 1)[0] in secret and "=" in word else word for word in command
    ]


def _run_sam(command: Sequence[str]) -> int:
    return subprocess.run(list(command), check=False).returncode


def run(
    args: argparse.Namespace, *, runner: Runner = _run_sam, sam: str | None = None, out: TextIO | None = None
) -> int:
    """``runner`` runs the sam command line and returns its exit code; ``sam`` replaces the lookup (tests)."""
    from dataclasses import replace

    from pipeline.app import stack
    from pipeline.app.cost import MODES, StreamCapacity, StreamSettings, estimate, load_cost_inputs
    from pipeline.config import load_config

    out = out or sys.stdout
    sam = sam or find_sam()
    if sam is None and not args.dry_run:
        raise InputError(missing_sam_message())
    template_path = Path(args.template)
    template = stack.load_template(template_path)
    parameters = stack.resolve_parameters(template, args.parameter, guided=args.guided)
    conditions = stack.evaluate_conditions(template, parameters, args.region or "")
    created = stack.resources_by_type(template, conditions)
    missing = [uri for uri in stack.code_uris(template, conditions) if not (template_path.parent / uri).is_dir()]

    out.write(f"template {template_path}: stack {args.stack_name}, region {args.region or '(default)'}\n")
    out.write("parameters:\n")
    given = {name for name, _ in args.parameter}
    # NoEcho parameters (a password hash, a secret) are never printed, here or in the sam command below.
    secret = {
        name for name, spec in template.get("Parameters", {}).items() if str(spec.get("NoEcho", "")).lower() == "true"
    }
    for name, value in parameters.items():
        shown = "****" if name in secret and value else value
        out.write(f"  {name} = {shown}{'' if name in given else '  (default)'}\n")
    if conditions:
        out.write("conditions: " + ", ".join(f"{n} {'true' if v else 'false'}" for n, v in conditions.items()) + "\n")
    out.write(f"resources to create ({sum(created.values())}; SAM expands each function into its role and mappings):\n")
    for kind, count in sorted(created.items()):
        out.write(f"  {count:3}  {kind}\n")

    mode = stack.pipeline_mode(parameters)
    inputs = load_cost_inputs()
    if mode in MODES:
        settings = load_config().stream
        # The template's own counts of streams, keys and alarms (its alarms include the Redshift ones).
        counts = stack.template_counts(template, conditions)
        footprint = replace(
            inputs.footprints[mode],
            streams=counts["streams"],
            kms_keys=counts["kms_keys"],
            alarms=counts["alarms"],
            redshift_alarms=0,
        )
        cost = estimate(
            mode,
            args.events_per_second,
            inputs,
            stream=StreamSettings(
                settings.record_target_bytes,
                settings.cross_batch_dedupe,
                settings.dedupe_window_days,
                settings.dedupe_concurrency,
            ),
            stream_capacity=cast("StreamCapacity", stack.stream_capacity(template, conditions, parameters)),
            redshift=stack.with_redshift(parameters),
            footprint=footprint,
        )
        out.write(
            f"modeled cost at {args.events_per_second:g} events/s: ${cost.total:,.2f} a month "
            f"(${cost.fixed:,.2f} fixed), ${cost.per_million():.3f} per million events; itemized by: "
            f"clickstream-etl cost --events-per-second {args.events_per_second:g} --mode {mode}"
            f"{' --redshift' if cost.redshift else ''}\n"
        )
    if missing:
        message = f"the artifacts are not built ({', '.join(missing)}): run clickstream-etl package first"
        if not args.dry_run:
            raise InputError(message)
        out.write(f"warning: {message}\n")
    if args.dry_run:
        return EXIT_OK
    assert sam is not None
    command = stack.sam_deploy_command(
        sam,
        template_path,
        stack_name=args.stack_name,
        region=args.region,
        parameters=parameters,
        given=[name for name, _ in args.parameter],
        guided=args.guided,
    )
    out.write("running: " + " ".join(_masked(command, secret)) + "\n")
    out.flush()
    code = runner(command)
    if code != 0:
        print(f"clickstream-etl: sam deploy exited {code}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
