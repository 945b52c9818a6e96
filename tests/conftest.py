"""Shared fixtures: configuration, a canonicalizer, and a helper running the core on bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.app.process import process_stream
from pipeline.badrows import BadRow, SourceRef
from pipeline.config import PipelineConfig, load_config
from pipeline.formats import get_format, read_limits
from pipeline.summary import FileSummary
from transform.canonicalize import Canonicalizer

ETL_TSTAMP = 1_731_700_000_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the tests marked ``slow`` first, in their collected order, then the rest.

    In a parallel run (``-n auto``) they are then begun first, and xdist's ``worksteal``
    distribution (pyproject.toml) lets an idle worker take half of a busy one's queue, so no
    worker is left finishing a minute-long test alone after the others have run out of work.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@dataclass
class CoreRun:
    events: list[dict[str, Any]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    summary: FileSummary = field(default_factory=lambda: FileSummary("test"))

    @property
    def event(self) -> dict[str, Any]:
        assert len(self.events) == 1, f"expected one event, got {len(self.events)}; bad rows: {self.bad}"
        return self.events[0]


def make_config(overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    return load_config(environ={}, overrides=overrides)


def run_core(
    data: bytes,
    *,
    config: PipelineConfig | None = None,
    canonicalizer: Canonicalizer | None = None,
    source: str = "s3://bucket/logs/E2EXAMPLE.2024-11-15-19.abcd1234.gz",
    expect_gzip: bool | None = None,
    limits: Any = None,
    key: bytes | None = None,
) -> CoreRun:
    config = config or make_config()
    canonicalizer = canonicalizer or Canonicalizer(config.transform, pseudonymization_key=key)
    run = CoreRun(summary=FileSummary(source))
    for item in process_stream(
        io.BytesIO(data),
        SourceRef(source),
        get_format(config.extract.format),
        canonicalizer,
        limits or read_limits(config.extract),
        run.summary,
        ETL_TSTAMP,
        expect_gzip=expect_gzip,
    ):
        if isinstance(item, dict):
            run.events.append(item)
        else:
            run.bad.append(item)
    assert run.summary.conserved, run.summary
    assert run.summary.good == len(run.events) and run.summary.bad == len(run.bad)
    return run


@pytest.fixture(scope="session")
def config() -> PipelineConfig:
    return make_config()


@pytest.fixture(scope="session")
def canonicalizer(config: PipelineConfig) -> Canonicalizer:
    return Canonicalizer(config.transform)


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
