"""Lambda artifacts without Docker: a typed plan of what goes where, then a thin executor that runs pip.

``clickstream-etl package`` writes one folder per function artifact and one layer folder, each
a ``CodeUri``/``ContentUri`` that ``sam deploy`` zips as it is (no ``sam build``)::

    lambda-artifacts/extract/            extract.handler, extract.reconciler  (no pyarrow)
    lambda-artifacts/transform/          transform.handler                     (no pyarrow)
    lambda-artifacts/load/               load.sink_handler, load.firehose_handler, load.redshift_handler
    lambda-artifacts/direct/             pipeline.app.direct.handler (the direct mode's one function)
    lambda-artifacts/pyarrow-layer/python/   pyarrow, for load and direct

:func:`plan_package` decides everything (requirements per artifact, which of this project's
packages each keeps, the pip flags of the target platform, what is pruned) from the project's
``pyproject.toml``, without I/O; :func:`build_artifacts` carries the plan out: it builds this
project's wheel once from the local source, downloads every dependency once into a wheelhouse
(pip's ``--platform``/``--python-version``/``--only-binary=:all:``, so binary wheels for Lambda's
Linux come from PyPI, whatever this machine is), installs each artifact from that wheelhouse
with ``--no-index``, then prunes.

boto3 is not shipped.  The Lambda Python runtimes include boto3 and botocore (``/var/runtime``),
the handlers import them only when they make their first client (tests/unit/
test_cold_start_imports.py), and our calls need nothing newer than the runtimes carry; shipping
them would add about 25 MB to every function and shadow the runtime's security updates.  They
arrive anyway as aws-xray-sdk's dependency, so the executor removes those distributions (by
their RECORD) after the install: :data:`RUNTIME_PROVIDED`.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pipeline.errors import ConfigError, InputError, TransientError

Architecture = Literal["arm64", "x86_64"]
ARCHITECTURES: Final[tuple[Architecture, ...]] = ("arm64", "x86_64")
DEFAULT_PYTHON: Final = "3.12"
DEFAULT_OUTPUT: Final = "lambda-artifacts"
LAYER: Final = "pyarrow-layer"
PROJECT_DIST: Final = "clickstream_etl"
"""The wheel's distribution name (PEP 427 spelling of ``clickstream-etl``)."""

_PLATFORM_ARCH: Final[Mapping[Architecture, str]] = {"arm64": "aarch64", "x86_64": "x86_64"}
_AL2023_FIRST: Final = (3, 12)
"""Lambda's python3.12 and later run on Amazon Linux 2023 (glibc 2.34), python3.11 on Amazon Linux 2
(glibc 2.26): https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html"""


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact as declared: what it serves and which of this project's files it keeps."""

    name: str
    handlers: tuple[str, ...]
    """``module.function`` of each Lambda handler the artifact serves."""
    packages: tuple[str, ...]
    """This project's top-level packages it keeps (the wheel's folders)."""
    drop: tuple[str, ...] = ()
    """Folders of those packages it leaves out (wheel paths, ``/``-separated)."""
    layers: tuple[str, ...] = ()
    """Layers the functions of this artifact run with."""
    smoke_modules: tuple[str, ...] = ()
    """Modules the functions import lazily on their first invocation, checked with the handlers."""


_ROOF_AND_KIT: Final = ("pipeline/app/", "pipeline/testing/", "clickstream_etl_data/samples/")
_NO_IGLU: Final = (*_ROOF_AND_KIT, "clickstream_etl_data/iglu/")
"""Extract reads no schema; Transform validates entities against the bundled Iglu schemas, and the
load functions type the entity columns and tables with them."""

ARTIFACT_SPECS: Final[tuple[ArtifactSpec, ...]] = (
    ArtifactSpec(
        "extract",
        ("extract.handler.handler", "extract.reconciler.handler", "extract.collector.handler"),
        ("pipeline", "extract", "clickstream_etl_data"),
        drop=_NO_IGLU,
        smoke_modules=("extract.stage", "fastavro"),
    ),
    ArtifactSpec(
        "transform",
        ("transform.handler.handler",),
        ("pipeline", "transform", "clickstream_etl_data"),
        drop=_ROOF_AND_KIT,
        smoke_modules=("transform.stage", "fastavro", "fastjsonschema", "ua_parser"),
    ),
    ArtifactSpec(
        "load",
        (
            "load.sink_handler.handler",
            "load.firehose_handler.handler",
            "load.redshift_handler.handler",
            "load.compact_handler.handler",
            "load.rollup_handler.handler",
        ),
        ("pipeline", "load", "clickstream_etl_data"),
        # the sink and the compactor type the Parquet entity columns, the loader the entity tables
        drop=_ROOF_AND_KIT,
        layers=(LAYER,),
        smoke_modules=("load.sink", "load.parquet"),
    ),
    ArtifactSpec(
        "direct",
        ("pipeline.app.direct.handler",),
        ("pipeline", "extract", "transform", "load", "clickstream_etl_data"),
        # The direct function runs the file core (pipeline.app.process) and the stages; it needs
        # neither the local AWS emulator nor the sample logs.
        drop=("pipeline/app/local/", "pipeline/testing/", "clickstream_etl_data/samples/"),
        layers=(LAYER,),
        smoke_modules=("pipeline.app.process", "load.parquet", "ua_parser", "fastjsonschema"),
    ),
)
SPECS_BY_NAME: Final = {spec.name: spec for spec in ARTIFACT_SPECS}

DEPENDENCY_ARTIFACTS: Final[Mapping[str, frozenset[str]]] = {
    # Every function logs, emits metrics and traces through Powertools.
    "aws-lambda-powertools": frozenset({"extract", "transform", "load", "direct"}),
    # Stream 1 is Avro (pipeline/records.py): written by Extract, read by Transform; stream 2 is JSON.
    "fastavro": frozenset({"extract", "transform"}),
    "ua-parser": frozenset({"transform", "direct"}),
    "fastjsonschema": frozenset({"transform", "direct"}),
    # Only the Parquet writers, through the layer: Extract and Transform never load it (cold starts).
    "pyarrow": frozenset({LAYER}),
    # In the Lambda runtime (see the module docstring).
    "boto3": frozenset(),
    # The CLI's progress bars only.
    "tqdm": frozenset(),
}
"""Which artifacts each of the project's dependencies goes into; every dependency must be listed."""

RUNTIME_PROVIDED: Final = frozenset({"boto3", "botocore", "s3transfer", "python-dateutil", "six", "urllib3"})
"""Distributions the Lambda Python runtime provides (boto3 and its dependencies), removed after install."""

PRUNE_GLOBS: Final[tuple[str, ...]] = (
    "**/__pycache__",  # pip's bytecode is for this machine's Python, not the target's
    "**/tests",
    "*.dist-info/RECORD",
    "*.dist-info/INSTALLER",
    "*.dist-info/REQUESTED",
    "*.dist-info/direct_url.json",
    "bin",  # console scripts of the dependencies
    # pyarrow: C++ headers and sources, Cython sources, its C++ test library; Arrow Flight and
    # the S3 filesystem, which the pipeline never uses (it writes through boto3); the unversioned
    # and fully versioned copies of libarrow_python* (wheels hold no symlinks, the loader wants
    # the SONAME, libarrow_python.so.NNNN).  The layer's import check proves the rest loads.
    "pyarrow/include",
    "pyarrow/src",
    "pyarrow/**/*.pyx",
    "pyarrow/**/*.pxd",
    "pyarrow/**/*.pxi",
    "pyarrow/_pyarrow_cpp_tests*",
    "pyarrow/*flight*",
    "pyarrow/_s3fs*",
    "pyarrow/libarrow_s3*",
    "pyarrow/libarrow_python*.so",
    "pyarrow/libarrow_python*.so.*.*.*",
)

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PYTHON = re.compile(r"^3\.(\d{2})$")


def canonical_name(requirement: str) -> str:
    """The PEP 503 name of a requirement string (``"ua-parser[regex]>=1.0"`` -> ``"ua-parser"``)."""
    match = _NAME.match(requirement)
    if not match:
        raise ConfigError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


@dataclass(frozen=True)
class Target:
    """The Lambda runtime an artifact is built for."""

    python_version: str
    architecture: Architecture

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python_version.split(".")
        return int(major), int(minor)

    @property
    def glibc_minor(self) -> int:
        return 34 if self.version_tuple >= _AL2023_FIRST else 26

    @property
    def platforms(self) -> tuple[str, ...]:
        """pip ``--platform`` tags: manylinux2014 and every manylinux_2_N up to the runtime's glibc.

        pip does not widen a ``--platform`` tag to older glibc versions, so each is listed: a
        wheel tagged only ``manylinux_2_28`` (pyarrow's for aarch64) is accepted, one built for
        a newer glibc than the runtime's is not."""
        arch = _PLATFORM_ARCH[self.architecture]
        return (f"manylinux2014_{arch}", *(f"manylinux_2_{minor}_{arch}" for minor in range(17, self.glibc_minor + 1)))

    @property
    def runtime(self) -> str:
        return f"python{self.python_version}"

    def pip_flags(self) -> list[str]:
        flags: list[str] = []
        for platform in self.platforms:
            flags += ["--platform", platform]
        return [*flags, "--python-version", self.python_version, "--implementation", "cp", "--only-binary=:all:"]

    def matches(self, python: tuple[int, int], machine: str) -> bool:
        """Whether an interpreter of version ``python`` on ``machine`` can import these artifacts."""
        return python == self.version_tuple and _PLATFORM_ARCH[self.architecture] == machine.replace("arm64", "aarch64")


@dataclass(frozen=True)
class ArtifactPlan:
    """What one folder receives."""

    name: str
    path: Path
    """The folder pip installs into (for the layer, its ``python/`` subfolder)."""
    root: Path
    """The folder ``sam deploy`` zips (CodeUri / ContentUri)."""
    requirements: tuple[str, ...]
    keep: tuple[str, ...]
    """Wheel paths of this project kept (folder prefixes); empty for the layer."""
    drop: tuple[str, ...]
    handlers: tuple[str, ...]
    layers: tuple[str, ...]
    smoke_modules: tuple[str, ...]

    @property
    def is_layer(self) -> bool:
        return not self.keep


@dataclass(frozen=True)
class PackagePlan:
    """Everything :func:`build_artifacts` does, as values."""

    output: Path
    target: Target
    artifacts: tuple[ArtifactPlan, ...]
    downloads: tuple[str, ...]
    """Every requirement of every artifact: downloaded once, resolved together."""
    source_files: tuple[str, ...]
    """Files and folders of the source tree the wheel is built from."""
    prune: tuple[str, ...] = PRUNE_GLOBS
    runtime_provided: frozenset[str] = RUNTIME_PROVIDED
    bytecode: bool = False
    """Ship unchecked-hash bytecode (only when this interpreter is the target's version)."""

    def artifact(self, name: str) -> ArtifactPlan:
        return next(a for a in self.artifacts if a.name == name)

    def layer_paths(self, artifact: ArtifactPlan) -> list[Path]:
        return [self.artifact(layer).path for layer in artifact.layers]

    def download_command(self, python: str, wheelhouse: Path) -> list[str]:
        return [
            python,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(wheelhouse),
            *self.target.pip_flags(),
            *self.downloads,
        ]

    def install_command(self, python: str, artifact: ArtifactPlan, wheelhouse: Path) -> list[str]:
        return [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--target",
            str(artifact.path),
            "--no-compile",
            "--disable-pip-version-check",
            *self.target.pip_flags(),
            *artifact.requirements,
        ]

    def wheel_command(self, python: str, source: Path, wheelhouse: Path) -> list[str]:
        return [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheelhouse), str(source)]


def validate_target(python_version: str, architecture: str) -> Target:
    """The target of ``--python-version`` and ``--architecture``; ConfigError when Lambda has no such runtime."""
    match = _PYTHON.match(python_version)
    if not match or int(match.group(1)) < 11:
        raise ConfigError(f"--python-version {python_version!r}: give a Lambda Python runtime, 3.11 or later (3.12)")
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"--architecture {architecture!r}: one of {', '.join(ARCHITECTURES)}")
    return Target(python_version, architecture)


def _package_folder(package: str, package_dir: Mapping[str, str]) -> str:
    """The folder setuptools reads ``package`` from: under its nearest ancestor's ``package-dir`` mapping."""
    parts = package.split(".")
    for depth in range(len(parts), 0, -1):
        mapped = package_dir.get(".".join(parts[:depth]))
        if mapped is not None:
            return "/".join([mapped.rstrip("/"), *parts[depth:]])
    root = package_dir.get("", "")
    return "/".join([root.rstrip("/"), *parts]) if root else "/".join(parts)


def source_files(pyproject: Mapping[str, Any]) -> tuple[str, ...]:
    """The paths a wheel build reads: pyproject.toml, the readme, the licence files, the package folders."""
    project = pyproject.get("project", {})
    setuptools = pyproject.get("tool", {}).get("setuptools", {})
    package_dir: Mapping[str, str] = setuptools.get("package-dir", {})
    folders = {_package_folder(package, package_dir).split("/")[0] for package in setuptools.get("packages", ())}
    readme = project.get("readme")
    files = {"pyproject.toml", *([readme] if isinstance(readme, str) else []), *project.get("license-files", ())}
    return tuple(sorted(files | folders))


def plan_package(
    pyproject: Mapping[str, Any],
    *,
    output: Path,
    python_version: str = DEFAULT_PYTHON,
    architecture: str = "arm64",
    host_python: tuple[int, int] | None = None,
) -> PackagePlan:
    """The plan for ``clickstream-etl package``, from the project's parsed ``pyproject.toml``.

    Each dependency goes where :data:`DEPENDENCY_ARTIFACTS` says; a dependency it does not list
    is a ConfigError (decide where it goes before it ships).  ``host_python`` is the version of
    the interpreter that will run the build: bytecode is shipped only when it is the target's.
    """
    target = validate_target(python_version, architecture)
    dependencies = pyproject.get("project", {}).get("dependencies", [])
    unplaced = sorted({canonical_name(d) for d in dependencies} - set(DEPENDENCY_ARTIFACTS))
    if unplaced:
        raise ConfigError(
            f"dependencies with no artifact: {', '.join(unplaced)}; add them to "
            "pipeline.app.packaging.DEPENDENCY_ARTIFACTS (an empty set ships them nowhere)"
        )

    def requirements(artifact: str) -> tuple[str, ...]:
        return tuple(d for d in dependencies if artifact in DEPENDENCY_ARTIFACTS[canonical_name(d)])

    artifacts = [
        ArtifactPlan(
            name=spec.name,
            path=output / spec.name,
            root=output / spec.name,
            requirements=requirements(spec.name),
            keep=(*(f"{package}/" for package in spec.packages), f"{PROJECT_DIST}-"),
            drop=spec.drop,
            handlers=spec.handlers,
            layers=spec.layers,
            smoke_modules=spec.smoke_modules,
        )
        for spec in ARTIFACT_SPECS
    ]
    artifacts.append(
        ArtifactPlan(
            name=LAYER,
            path=output / LAYER / "python",  # Lambda puts /opt/python on sys.path
            root=output / LAYER,
            requirements=requirements(LAYER),
            keep=(),
            drop=(),
            handlers=(),
            layers=(),
            smoke_modules=("pyarrow.parquet", "pyarrow.compute", "pyarrow.dataset"),
        )
    )
    downloads = tuple(dict.fromkeys(r for a in artifacts for r in a.requirements))
    return PackagePlan(
        output=output,
        target=target,
        artifacts=tuple(artifacts),
        downloads=downloads,
        source_files=source_files(pyproject),
        bytecode=host_python == target.version_tuple,
    )


def wheel_member_kept(name: str, artifact: ArtifactPlan) -> bool:
    """Whether a file of this project's wheel goes into ``artifact``."""
    if name.startswith(f"{PROJECT_DIST}-") and ".dist-info/" in name:
        return not name.endswith(("/RECORD", "/INSTALLER", "/REQUESTED"))
    return name.startswith(artifact.keep) and not name.startswith(artifact.drop)


# --- the executor ------------------------------------------------------------------------------


class PackagingError(TransientError):
    """pip failed (PyPI unreachable, a wheel missing for the target): the message has pip's reason."""


Runner = Callable[[Sequence[str]], None]


def run_pip(command: Sequence[str]) -> None:
    """Run one pip command; PackagingError with the tail of its output when it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
        raise PackagingError(f"{' '.join(command[1:5])} failed:\n  " + "\n  ".join(tail))


@dataclass(frozen=True)
class ArtifactReport:
    name: str
    root: Path
    bytes: int
    files: int
    handlers: tuple[str, ...]
    import_s: Mapping[str, float] = field(default_factory=dict)
    """Median cold import time of each handler module (seconds), when this machine can import it."""
    missing: tuple[str, ...] = ()
    """Handler modules not in the artifact (not written yet)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.root),
            "bytes": self.bytes,
            "files": self.files,
            "handlers": list(self.handlers),
            "import_s": {k: round(v, 4) for k, v in self.import_s.items()},
            "missing": list(self.missing),
        }


def folder_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files), len(files)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_distributions(site: Path, names: frozenset[str]) -> list[str]:
    """Remove the installed distributions named ``names`` from the ``--target`` folder ``site`` (by their RECORD)."""
    removed = []
    emptied: set[Path] = set()
    for info in sorted(site.glob("*.dist-info")):
        name = canonical_name(info.name[: -len(".dist-info")].rsplit("-", 1)[0])
        if name not in names:
            continue
        record = info / "RECORD"
        if record.is_file():
            for line in record.read_text("utf-8").splitlines():
                relative = line.split(",", 1)[0]
                if relative and not relative.startswith(("/", "..")):
                    _remove(site / relative)
                    emptied.add((site / relative).parent)
        _remove(info)
        removed.append(name)
    # The package folders those files leave empty (and their empty parents, up to site).
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        while folder != site and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed


def prune(site: Path, globs: Sequence[str]) -> None:
    for pattern in globs:
        for path in sorted(site.glob(pattern), key=lambda p: len(p.parts), reverse=True):
            _remove(path)


def _copy_source(source: Path, dest: Path, files: Sequence[str]) -> None:
    # From a clean copy: a build/ folder an older build left in the checkout would leak into the wheel.
    # Compiled extensions (the optional mypyc build, setup.py) are this machine's, not Lambda's.
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", "*.so", "*.pyd")
    for name in files:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=ignored)
        elif path.is_file():
            shutil.copy2(path, dest / name)
        else:
            raise InputError(f"{path} is missing: run clickstream-etl package from a checkout of the project")


def build_artifacts(
    plan: PackagePlan,
    source: Path,
    *,
    run: Runner = run_pip,
    python: str = sys.executable,
    log: Callable[[str], None] = lambda _: None,
    workdir: Path | None = None,
) -> list[ArtifactReport]:
    """Carry out ``plan`` from the project checkout ``source``: the wheel, the wheelhouse, each folder.

    Replaces only the plan's own folders under ``plan.output``.  Raises PackagingError when pip
    fails, InputError when ``source`` is not a checkout.
    """
    with tempfile.TemporaryDirectory(prefix="clickstream-package-", dir=workdir) as tmp:
        tmp_path = Path(tmp)
        copy, wheelhouse = tmp_path / "source", tmp_path / "wheelhouse"
        copy.mkdir()
        wheelhouse.mkdir()
        log("building the project's wheel from the local source")
        _copy_source(source, copy, plan.source_files)
        run(plan.wheel_command(python, copy, tmp_path / "project"))
        wheels = sorted((tmp_path / "project").glob(f"{PROJECT_DIST}-*.whl"))
        if not wheels:
            raise PackagingError("pip wheel produced no clickstream_etl wheel")
        log(f"downloading {len(plan.downloads)} requirements for {plan.target.runtime} {plan.target.architecture}")
        run(plan.download_command(python, wheelhouse))
        reports = []
        for artifact in plan.artifacts:
            _remove(artifact.root)
            artifact.path.mkdir(parents=True)
            if artifact.requirements:
                log(f"installing {artifact.name}: {', '.join(artifact.requirements)}")
                run(plan.install_command(python, artifact, wheelhouse))
            remove_distributions(artifact.path, plan.runtime_provided)
            if not artifact.is_layer:
                with zipfile.ZipFile(wheels[-1]) as wheel:
                    members = [m for m in wheel.namelist() if wheel_member_kept(m, artifact)]
                    wheel.extractall(artifact.path, members)
            prune(artifact.path, plan.prune)
            if plan.bytecode:
                _compile(artifact.path)
            size, files = folder_size(artifact.root)
            missing = tuple(h for h in artifact.handlers if not _module_file(artifact.path, h.rsplit(".", 1)[0]))
            reports.append(
                ArtifactReport(artifact.name, artifact.root, size, files, artifact.handlers, missing=missing)
            )
        return reports


def _compile(path: Path) -> None:
    import compileall
    import py_compile

    # Lambda's code folder is read-only, so without these every cold start compiles every module it imports.
    compileall.compile_dir(
        str(path), quiet=2, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )


def _module_file(path: Path, module: str) -> Path | None:
    base = path.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# --- import checks -----------------------------------------------------------------------------


def isolated_python(python: str, paths: Sequence[Path], code: str) -> list[str]:
    """The command running ``code`` with only the stdlib and ``paths`` importable (no site-packages,
    no user site, no environment, no bytecode written): what a Lambda function's folder sees."""
    prelude = f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
    return [python, "-I", "-S", "-B", "-c", prelude + code]


def import_time(python: str, paths: Sequence[Path], module: str, runs: int = 5) -> float:
    """Median wall time of importing ``module`` in a fresh interpreter, over ``runs`` runs (seconds)."""
    code = (
        "import importlib, time\n"
        "start = time.perf_counter()\n"
        f"importlib.import_module({module!r})\n"
        "print(time.perf_counter() - start)\n"
    )
    times = []
    for _ in range(runs):
        done = subprocess.run(isolated_python(python, paths, code), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PackagingError(f"{module} does not import from its artifact:\n{done.stderr.strip()[-1500:]}")
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def measure_imports(
    plan: PackagePlan, reports: Sequence[ArtifactReport], *, python: str = sys.executable, runs: int = 5
) -> list[ArtifactReport]:
    """Each report with the median cold import time of its handler modules (artifact and its layers only)."""
    measured = []
    for report in reports:
        artifact = plan.artifact(report.name)
        paths = [artifact.path, *plan.layer_paths(artifact)]
        modules = artifact.smoke_modules if artifact.is_layer else [h.rsplit(".", 1)[0] for h in artifact.handlers]
        times = {
            module: import_time(python, paths, module, runs)
            for module in dict.fromkeys(modules)
            if artifact.is_layer or _module_file(artifact.path, module)
        }
        measured.append(
            ArtifactReport(report.name, report.root, report.bytes, report.files, report.handlers, times, report.missing)
        )
    return measured
