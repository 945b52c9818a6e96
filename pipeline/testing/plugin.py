"""The pytest plugin of the testing kit, installed with the package (entry point ``pytest11``).

Every fixture is opt-in by name, and importing this module imports nothing but pytest: moto,
boto3 and the stages load only when a test asks for a fixture that needs them.

Fixtures:

* ``clickstream_config`` -- the :class:`~pipeline.config.PipelineConfig` of the test: the shipped
  defaults (the environment's ``CLICKSTREAM_*`` variables ignored), then the project's TOML file
  named by the ini option ``clickstream_config_file`` (relative to the rootdir; the same file
  ``--config`` takes), then per-test overrides;
* ``clickstream_config_overrides`` -- dotted keys to values applied to every test's configuration:
  none, unless a ``conftest.py`` overrides the fixture; a test's ``clickstream_config`` marker
  applies on top::

      @pytest.mark.clickstream_config({"resources.log_bucket": "my-logs"})
      def test_reads_my_bucket(clickstream_aws): ...

* ``clickstream_aws`` -- an :class:`~pipeline.testing.chain.EmulatedAccount`: moto in-process with
  fake credentials, holding the pipeline's buckets, streams, ledger table and notification queue;
* ``clickstream_sample_logs`` -- a folder of generated, gzipped CloudFront logs (session-scoped;
  two 33-field files of 40 lines, a few malformed);
* ``chain`` -- a :class:`~pipeline.testing.chain.ChainSession` on ``clickstream_aws``: ``send`` logs,
  then ask ``good()``, ``bad()``, ``counts()``, ``reset()``, ``export(path)`` as of Snowplow Micro.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.testing.chain import ChainSession, EmulatedAccount

MARKER = "clickstream_config"


CONFIG_FILE_INI = "clickstream_config_file"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(CONFIG_FILE_INI, "the project's clickstream-etl configuration file (TOML), relative to the rootdir")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``clickstream_config`` marker (so ``--strict-markers`` projects may use it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(overrides): configuration overrides (dotted keys) for the clickstream-etl fixtures of this test",
    )


@pytest.fixture
def clickstream_config_overrides() -> dict[str, Any]:
    """Dotted-key overrides for every test that asks for the configuration: none here.

    Override this fixture (in a ``conftest.py``, a module, a class) to change the configuration of
    many tests at once; a test's ``clickstream_config`` marker applies on top.
    """
    return {}


def _marker_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    # iter_markers yields the closest first (function, class, module): apply the outermost first.
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if len(marker.args) != 1 or not isinstance(marker.args[0], dict) or marker.kwargs:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes one dict of dotted keys, got {marker.args!r}")
        merged.update(marker.args[0])
    return merged


@pytest.fixture
def clickstream_config(request: pytest.FixtureRequest, clickstream_config_overrides: dict[str, Any]) -> PipelineConfig:
    """The pipeline configuration of the test: shipped defaults, the ``clickstream_config_file`` of the
    project's pytest settings, ``clickstream_config_overrides``, then the ``clickstream_config`` markers
    of the test (module, class, function; the closest wins)."""
    from pipeline.testing.chain import default_config

    named = str(request.config.getini(CONFIG_FILE_INI) or "")
    overlay = request.config.rootpath / named if named else None
    if overlay is not None and not overlay.is_file():
        raise pytest.UsageError(f"{CONFIG_FILE_INI} = {named!r}: no such file under {request.config.rootpath}")
    return default_config({**clickstream_config_overrides, **_marker_overrides(request)}, overlay=overlay)


@pytest.fixture
def clickstream_aws(clickstream_config: PipelineConfig) -> Iterator[EmulatedAccount]:
    """An emulated AWS account (moto, in-process) holding the pipeline's resources, for one test."""
    from pipeline.testing.chain import emulated_account

    with emulated_account(clickstream_config) as account:
        yield account


@pytest.fixture(scope="session")
def clickstream_sample_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of generated gzipped CloudFront logs (deterministic; shared by the session: do not modify)."""
    from pipeline.testing.generate import GenerateOptions, generate_logs

    folder = tmp_path_factory.mktemp("clickstream_sample_logs")
    generate_logs(folder, GenerateOptions(files=2, lines_per_file=40, hours=2, malformed_ratio=0.05))
    return folder


@pytest.fixture
def chain(clickstream_aws: EmulatedAccount) -> ChainSession:
    """The whole chain on ``clickstream_aws``, with Snowplow Micro's questions as methods."""
    from pipeline.testing.chain import ChainSession

    return ChainSession(clickstream_aws)
