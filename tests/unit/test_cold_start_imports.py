"""Extract and Transform must import without pyarrow or boto3 (Lambda cold starts, pure core)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["pipeline.formats.cloudfront", "transform.canonicalize", "pipeline.app.process"])
def test_module_imports_without_pyarrow_or_boto3(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in ('pyarrow', 'boto3', 'botocore') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"


@pytest.mark.parametrize(
    "module",
    [
        "extract.handler",
        "extract.reconciler",
        "transform.handler",
        "load.firehose_handler",
        "load.sink_handler",
        "load.redshift_handler",
    ],
)
def test_handler_modules_import_without_pyarrow_or_boto3(module: str) -> None:
    # Clients are created on the first invocation, not at import; the Parquet sink imports
    # pyarrow only when it writes its first batch, and the other load Lambdas never do.
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in ('pyarrow', 'boto3') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"
