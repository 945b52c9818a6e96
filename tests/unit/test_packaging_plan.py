"""``clickstream-etl package``: the plan (what goes where) as values, and one real build from PyPI.

GIVEN the project's pyproject.toml
WHEN the packaging plan is made for a Lambda runtime
THEN every dependency has its artifacts, Extract and Transform never get pyarrow, the pip flags
     name the runtime's platform, and (slow) each handler imports from its built folder alone.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.app.packaging import (
    ARTIFACT_SPECS,
    DEPENDENCY_ARTIFACTS,
    LAYER,
    ArtifactPlan,
    PackagePlan,
    build_artifacts,
    canonical_name,
    isolated_python,
    measure_imports,
    plan_package,
    prune,
    remove_distributions,
    source_files,
    validate_target,
    wheel_member_kept,
)
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def plan(**kwargs: object) -> PackagePlan:
    return plan_package(PYPROJECT, output=Path("/out"), **kwargs)  # type: ignore[arg-type]


def test_every_dependency_of_the_project_is_placed_in_some_artifacts_or_none() -> None:
    names = {canonical_name(d) for d in PYPROJECT["project"]["dependencies"]}
    assert names <= set(DEPENDENCY_ARTIFACTS)
    targets = {spec.name for spec in ARTIFACT_SPECS} | {LAYER}
    assert all(places <= targets for places in DEPENDENCY_ARTIFACTS.values())


def test_a_new_dependency_without_a_place_is_refused() -> None:
    pyproject = {"project": {"dependencies": [*PYPROJECT["project"]["dependencies"], "requests>=2"]}}
    with pytest.raises(ConfigError, match="requests"):
        plan_package(pyproject, output=Path("/out"))


def test_extract_and_transform_never_get_pyarrow_and_the_layer_has_it() -> None:
    p = plan()
    for name in ("extract", "transform"):
        assert not [r for r in p.artifact(name).requirements if canonical_name(r) == "pyarrow"]
        assert p.artifact(name).layers == ()
    assert [canonical_name(r) for r in p.artifact(LAYER).requirements] == ["pyarrow"]
    assert p.artifact(LAYER).path == Path("/out/pyarrow-layer/python")
    assert p.artifact(LAYER).root == Path("/out/pyarrow-layer")
    for name in ("load", "direct"):
        assert p.artifact(name).layers == (LAYER,)
        assert "pyarrow" not in {canonical_name(r) for r in p.artifact(name).requirements}


def test_boto3_and_the_cli_only_dependencies_ship_nowhere() -> None:
    p = plan()
    shipped = {canonical_name(r) for a in p.artifacts for r in a.requirements}
    assert "boto3" not in shipped and "tqdm" not in shipped
    assert {"boto3", "botocore", "s3transfer"} <= p.runtime_provided


def test_the_artifacts_and_their_handlers_are_the_templates_contract() -> None:
    p = plan()
    assert [a.name for a in p.artifacts] == ["extract", "transform", "load", "direct", LAYER]
    assert p.artifact("extract").handlers == (
        "extract.handler.handler",
        "extract.reconciler.handler",
        "extract.collector.handler",
    )
    assert p.artifact("transform").handlers == ("transform.handler.handler",)
    assert p.artifact("load").handlers == (
        "load.sink_handler.handler",
        "load.firehose_handler.handler",
        "load.redshift_handler.handler",
        "load.compact_handler.handler",
        "load.rollup_handler.handler",
    )
    assert p.artifact("direct").handlers == ("pipeline.app.direct.handler",)


@pytest.mark.parametrize(
    ("python", "architecture", "newest", "absent"),
    [
        ("3.12", "arm64", "manylinux_2_34_aarch64", "manylinux_2_35_aarch64"),
        ("3.13", "x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64"),
        ("3.11", "arm64", "manylinux_2_26_aarch64", "manylinux_2_27_aarch64"),  # Amazon Linux 2
    ],
)
def test_the_pip_flags_name_every_manylinux_tag_the_runtime_can_load(
    python: str, architecture: str, newest: str, absent: str
) -> None:
    target = plan(python_version=python, architecture=architecture).target
    flags = target.pip_flags()
    platforms = [flags[i + 1] for i, flag in enumerate(flags) if flag == "--platform"]
    arch = "aarch64" if architecture == "arm64" else "x86_64"
    assert platforms[0] == f"manylinux2014_{arch}"
    assert f"manylinux_2_17_{arch}" in platforms
    # pyarrow's aarch64 wheels are manylinux_2_28 only: accepted on Amazon Linux 2023, not on 2
    assert (f"manylinux_2_28_{arch}" in platforms) is (python != "3.11")
    assert platforms[-1] == newest and absent not in platforms
    assert "--only-binary=:all:" in flags
    assert flags[flags.index("--python-version") + 1] == python


def test_install_commands_read_only_the_wheelhouse_and_target_the_folder() -> None:
    p = plan()
    command = p.install_command("python", p.artifact("transform"), Path("/wh"))
    assert command[:3] == ["python", "-m", "pip"]
    assert "--no-index" in command and command[command.index("--find-links") + 1] == "/wh"
    assert command[command.index("--target") + 1] == "/out/transform"
    assert "--no-compile" in command
    download = p.download_command("python", Path("/wh"))
    assert {canonical_name(r) for r in p.downloads} == {
        "aws-lambda-powertools",
        "fastavro",
        "ua-parser",
        "fastjsonschema",
        "pyarrow",
    }
    assert "--only-binary=:all:" in download


@pytest.mark.parametrize(("python", "architecture"), [("3.10", "arm64"), ("3", "arm64"), ("3.12", "arm"), ("", "")])
def test_a_target_lambda_does_not_have_is_refused(python: str, architecture: str) -> None:
    with pytest.raises(ConfigError):
        validate_target(python, architecture)


def test_bytecode_ships_only_when_this_interpreter_is_the_targets_version() -> None:
    assert plan(python_version="3.12", host_python=(3, 12)).bytecode
    assert not plan(python_version="3.12", host_python=(3, 11)).bytecode


@pytest.mark.parametrize(
    ("artifact", "member", "kept"),
    [
        ("extract", "pipeline/records.py", True),
        ("extract", "extract/handler.py", True),
        ("extract", "clickstream_etl_data/default.toml", True),
        ("extract", "pipeline/app/cli.py", False),
        ("extract", "pipeline/testing/logs.py", False),
        ("extract", "transform/handler.py", False),
        ("extract", "clickstream_etl_data/iglu/MANIFEST.json", False),
        ("extract", "clickstream_etl_data/samples/README.md", False),
        ("transform", "clickstream_etl_data/iglu/MANIFEST.json", True),
        ("transform", "load/parquet.py", False),
        ("load", "load/sink_handler.py", True),
        # the sink and the compactor type entity columns, the loader entity tables: they resolve schemas
        ("load", "clickstream_etl_data/iglu/MANIFEST.json", True),
        ("load", "extract/stage.py", False),
        ("direct", "pipeline/app/process.py", True),
        ("direct", "pipeline/app/local/runtime.py", False),
        ("direct", "extract/stage.py", True),
        ("direct", "clickstream_etl-0.1.0.dist-info/METADATA", True),
        ("direct", "clickstream_etl-0.1.0.dist-info/RECORD", False),
    ],
)
def test_each_artifact_keeps_only_its_part_of_the_project(artifact: str, member: str, kept: bool) -> None:
    assert wheel_member_kept(member, plan().artifact(artifact)) is kept


def test_the_wheel_is_built_from_the_files_the_build_reads() -> None:
    files = source_files(PYPROJECT)
    assert {"pyproject.toml", "README.md", "LICENSE", "pipeline", "extract", "transform", "load"} <= set(files)
    assert {"config", "samples"} <= set(files)  # the data packages' folders
    assert "tests" not in files and "build" not in files
    # Each is a path of the checkout: a subpackage of a mapped package is read from under its mapping.
    assert [name for name in files if not (ROOT / name).exists()] == []


def test_a_subpackage_is_read_from_under_its_nearest_mapped_ancestor() -> None:
    pyproject = {
        "tool": {
            "setuptools": {
                "packages": ["data", "data.schemas", "data.extra", "data.extra.deep", "plain.sub", "rooted"],
                "package-dir": {"data": "config", "data.extra": "samples/x", "rooted": "src/rooted"},
            }
        }
    }
    assert source_files(pyproject) == ("config", "plain", "pyproject.toml", "samples", "src")


def test_runtime_provided_distributions_are_removed_by_their_record(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "botocore" / "data").mkdir(parents=True)
    (site / "botocore" / "__init__.py").write_text("")
    (site / "botocore" / "data" / "endpoints.json").write_text("{}")
    info = site / "botocore-1.40.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text(
        "botocore/__init__.py,,\nbotocore/data/endpoints.json,,\nbotocore-1.40.0.dist-info/RECORD,,\n../../bin/x,,\n"
    )
    (site / "jmespath").mkdir()
    (site / "jmespath" / "__init__.py").write_text("")
    (site / "jmespath-1.0.1.dist-info").mkdir()
    assert remove_distributions(site, frozenset({"botocore"})) == ["botocore"]
    assert sorted(p.name for p in site.iterdir()) == ["jmespath", "jmespath-1.0.1.dist-info"]


def test_pruning_removes_bulk_and_keeps_the_libraries_the_loader_needs(tmp_path: Path) -> None:
    site = tmp_path
    files = [
        "pyarrow/__init__.py",
        "pyarrow/libarrow.so.2600",
        "pyarrow/libarrow_python.so.2600",
        "pyarrow/libarrow_python.so",
        "pyarrow/libarrow_python.so.2600.1.0",
        "pyarrow/libarrow_flight.so.2600",
        "pyarrow/_flight.cpython-312-aarch64-linux-gnu.so",
        "pyarrow/libarrow_s3.so.2600",
        "pyarrow/include/arrow/api.h",
        "pyarrow/lib.pyx",
        "pyarrow/tests/test_x.py",
        "pkg/__pycache__/m.cpython-311.pyc",
        "pkg-1.0.dist-info/RECORD",
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/licenses/LICENSE",
    ]
    for name in files:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("x")
    prune(site, plan().prune)
    left = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert left == [
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/licenses/LICENSE",
        "pyarrow/__init__.py",
        "pyarrow/libarrow.so.2600",
        "pyarrow/libarrow_python.so.2600",
    ]


def test_the_isolated_interpreter_sees_only_the_stdlib_and_the_given_folders(tmp_path: Path) -> None:
    code = "import sys; print(any('site-packages' in p for p in sys.path)); import pytest"
    done = subprocess.run(
        isolated_python(sys.executable, [tmp_path], code), capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "False"
    assert "No module named 'pytest'" in done.stderr


# --- the real build (PyPI), for this machine's Python and architecture, so it can be imported

_SMOKE = {
    # Each runs in its artifact alone (and its layer): the handlers import, then the code their
    # first invocation runs (lazy imports: fastavro, ua-parser, fastjsonschema, pyarrow) works.
    "extract": """
from extract.handler import handler
from extract.reconciler import handler as reconciler
from pipeline.config import load_config
from pipeline.records import RawBatch, decode_raw, encode_raw
config = load_config(environ={})
batch = RawBatch("b", "k", "e", 0, "date time", (1,), ("line",), "cloudfront")
assert decode_raw(encode_raw(batch)) == batch
""",
    "transform": """
from transform.handler import handler
from pipeline.config import load_config
from transform.canonicalize import Canonicalizer
from transform.stage import transform_raw_record
raw = open(DATA + "/stream1.bin", "rb").read()
out = transform_raw_record(raw, Canonicalizer(load_config(environ={}).transform), 262144, origin="s", arrival_ms=0)
assert out.events and out.chunks, out
open(DATA + "/stream2.bin", "wb").write(out.chunks[0][1])
""",
    "load": """
import load.sink_handler, load.firehose_handler, load.redshift_handler
from pipeline.config import load_config
from pipeline.records import decode_events
from load.parquet import encode_parquet
events = decode_events(open(DATA + "/stream2.bin", "rb").read())
assert encode_parquet(events, load_config(environ={}).load)[:4] == b"PAR1"
""",
    "direct": """
import io
from load.parquet import encode_parquet
from pipeline.app.process import process_stream
from pipeline.badrows import SourceRef
from pipeline.config import load_config
from pipeline.formats import get_format, read_limits
from pipeline.summary import FileSummary
from transform.canonicalize import Canonicalizer
config = load_config(environ={})
data = open(DATA + "/log.gz", "rb").read()
items = process_stream(io.BytesIO(data), SourceRef("s3://b/k"), get_format(), Canonicalizer(config.transform),
                       read_limits(config.extract), FileSummary("k"), 0)
events = [i for i in items if isinstance(i, dict)]
assert events and encode_parquet(events, config.load)[:4] == b"PAR1"
""",
}


def _stream1_record(log: Path) -> bytes:
    import io

    from pipeline.badrows import SourceRef
    from pipeline.formats import get_format
    from pipeline.formats.base import LogLine
    from pipeline.records import RawBatch, encode_raw

    lines = [i for i in get_format().read(io.BytesIO(log.read_bytes()), SourceRef("s3://b/k")) if type(i) is LogLine]
    fields = " ".join(lines[0].layout.names)  # type: ignore[union-attr]
    return encode_raw(
        RawBatch("b", "k", "e", 0, fields, tuple(i.line_no for i in lines), tuple(i.text for i in lines), "cloudfront")
    )


@pytest.mark.slow
def test_package_builds_every_artifact_from_pypi_and_each_handler_imports_from_its_folder_alone(
    tmp_path: Path,
) -> None:
    # GIVEN the plan for this machine's runtime (so the binary wheels can be imported here)
    from pipeline.testing.generate import GenerateOptions, generate_logs

    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    architecture = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    p = plan_package(
        PYPROJECT,
        output=tmp_path / "lambda-artifacts",
        python_version=host,
        architecture=architecture,
        host_python=sys.version_info[:2],
    )
    # WHEN it is built (pip against PyPI: one wheel, one wheelhouse, five folders)
    reports = build_artifacts(p, ROOT, workdir=tmp_path)
    # THEN Extract and Transform hold no pyarrow, nothing holds boto3, the layer holds pyarrow
    by_name = {r.name: r for r in reports}
    assert set(by_name) == {"extract", "transform", "load", "direct", LAYER}
    for artifact in p.artifacts:
        tops = {path.name.split("-")[0] for path in artifact.path.iterdir()}
        assert not tops & {"boto3", "botocore", "s3transfer"}, artifact.name
        if artifact.name in ("extract", "transform", "load", "direct"):
            assert "pyarrow" not in tops, artifact.name
            assert not list(artifact.path.glob("pyarrow*")), artifact.name
    assert (p.artifact(LAYER).path / "pyarrow" / "parquet").is_dir()
    assert not list(p.artifact(LAYER).path.glob("pyarrow/*flight*"))
    assert by_name["direct"].missing == ("pipeline.app.direct.handler",) or not by_name["direct"].missing
    # AND each artifact's code runs with only its folder (and its layer) importable
    data = tmp_path / "data"
    data.mkdir()
    [log] = generate_logs(data, GenerateOptions(files=1, lines_per_file=300, malformed_ratio=0))
    log.rename(data / "log.gz")
    (data / "stream1.bin").write_bytes(_stream1_record(data / "log.gz"))
    for name in ("extract", "transform", "load", "direct"):
        artifact: ArtifactPlan = p.artifact(name)
        paths = [artifact.path, *p.layer_paths(artifact)]
        loaded_check = "import sys\nprint(sorted(m for m in ('pyarrow', 'boto3') if m in sys.modules))"
        code = f"DATA = {str(data)!r}\n{_SMOKE[name]}\n{loaded_check}"
        done = subprocess.run(isolated_python(sys.executable, paths, code), capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
        loaded = json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))
        assert loaded == (["pyarrow"] if name in ("load", "direct") else []), name
    # AND the handlers' cold import times are measured (median of 3 here, 5 in the command)
    measured = {r.name: r for r in measure_imports(p, reports, runs=3)}
    assert set(measured["extract"].import_s) == {"extract.handler", "extract.reconciler", "extract.collector"}
    assert all(0 < seconds < 10 for r in measured.values() for seconds in r.import_s.values())
