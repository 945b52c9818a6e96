"""The configured tables, shared by the plan tests."""

from __future__ import annotations

import pytest

from load.redshift.identifiers import RedshiftTables
from pipeline.config import PipelineConfig


@pytest.fixture(scope="module")
def tables(config: PipelineConfig) -> RedshiftTables:
    return RedshiftTables.from_config(config.redshift)
