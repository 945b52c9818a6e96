"""Fixtures shared by the Redshift load tests on DuckDB: the sample's events, the config, its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from load.redshift.identifiers import RedshiftTables
from pipeline.config import PipelineConfig
from tests.conftest import make_config, run_core

SAMPLE = Path(__file__).resolve().parents[4] / "samples" / "cloudfront" / "E2EXAMPLE1ABCD.2024-11-15-09.90344bfc.gz"


@pytest.fixture(scope="module")
def sample_events() -> list[dict[str, Any]]:
    return run_core(SAMPLE.read_bytes()).events


@pytest.fixture
def config() -> PipelineConfig:
    return make_config()


@pytest.fixture
def tables(config: PipelineConfig) -> RedshiftTables:
    return RedshiftTables.from_config(config.redshift)
