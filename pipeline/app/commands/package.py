"""``clickstream-etl package``: build the Lambda artifacts ``sam deploy`` takes, without Docker.

Plan in :mod:`pipeline.app.packaging` (what goes where), pip does the rest.  Exit codes are the
CLI's: 1 when pip fails (the message has pip's reason), 2 for bad arguments or when it does not
run from a checkout of the project.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tomllib
from pathlib import Path

from pipeline.app.cli import EXIT_OK
from pipeline.errors import InputError

DESCRIPTION = """\
Build one folder per Lambda artifact under OUTPUT, each a CodeUri that `sam deploy` zips as it is:
extract/ (extract.handler, extract.reconciler), transform/ (transform.handler), load/ (the Parquet sink,
the Firehose transformation and the Redshift loader), direct/ (the direct mode's function) and the layer
pyarrow-layer/python/ (pyarrow, for load and direct; Extract and Transform never get it). Binary wheels for
Lambda's Linux come from PyPI through pip's --platform/--python-version/--only-binary=:all:, so no Docker
and no sam build are needed; this project is installed from the local source. boto3 is not shipped: the
Lambda runtime has it. When this machine can import the artifacts (same Python version and architecture),
each handler is imported from its folder alone and its median cold import time of 5 runs is reported.

Then: clickstream-etl deploy --guided"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.app.packaging import ARCHITECTURES, DEFAULT_OUTPUT, DEFAULT_PYTHON

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, metavar="DIR", help=f"folder of the artifacts (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--python-version",
        default=DEFAULT_PYTHON,
        metavar="X.Y",
        help=f"the functions' Lambda Python runtime (default: {DEFAULT_PYTHON})",
    )
    parser.add_argument(
        "--architecture", default="arm64", choices=ARCHITECTURES, help="the functions' architecture (default: arm64)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def project_root() -> Path:
    """The checkout this package runs from (its pyproject.toml names clickstream-etl)."""
    import pipeline

    for candidate in (Path(pipeline.__file__).resolve().parents[1], Path.cwd()):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and 'name = "clickstream-etl"' in pyproject.read_text("utf-8"):
            return candidate
    raise InputError(
        "clickstream-etl package builds from the project's source: run it in a checkout "
        "(git clone, then pip install -e .)"
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.app.packaging import build_artifacts, measure_imports, plan_package

    root = project_root()
    output = Path(args.output).resolve()
    if output == root or root.is_relative_to(output):
        raise InputError(f"--output {args.output} would replace the source tree; name a folder inside it")
    pyproject = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    plan = plan_package(
        pyproject,
        output=output,
        python_version=args.python_version,
        architecture=args.architecture,
        host_python=sys.version_info[:2],
    )

    def log(message: str) -> None:
        print(f"package: {message}", file=sys.stderr, flush=True)

    reports = build_artifacts(plan, root, log=log)
    measurable = plan.target.matches(sys.version_info[:2], platform.machine())
    if measurable:
        log("importing each handler from its folder alone (median of 5)")
        reports = measure_imports(plan, reports)
    if args.json:
        print(
            json.dumps(
                {
                    "target": plan.target.runtime,
                    "architecture": plan.target.architecture,
                    "artifacts": [r.to_json() for r in reports],
                },
                indent=1,
            )
        )
        return EXIT_OK
    print(f"{plan.target.runtime} {plan.target.architecture} artifacts in {output}:")
    for report in reports:
        imports = "  ".join(f"{module} {seconds * 1000:.0f} ms" for module, seconds in report.import_s.items())
        missing = f"  (not written yet: {', '.join(report.missing)})" if report.missing else ""
        print(f"  {report.name:14} {report.bytes / 1e6:7.1f} MB  {report.files:5} files  {imports}{missing}")
    if not measurable:
        print(
            f"  (import times are measured only where the artifacts can be imported: this machine runs "
            f"Python {'.'.join(map(str, sys.version_info[:2]))} on {platform.machine()})"
        )
    print("next: clickstream-etl deploy --guided")
    return EXIT_OK
