"""Fixtures shared by the functional tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.app.local.runtime import serve_moto


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port), with ``AWS_ENDPOINT_URL`` pointing at it: tests about the wire."""
    with serve_moto() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        yield endpoint
