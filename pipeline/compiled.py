"""Which build is installed: pure Python (the default), or the optional compiled one.

``CLICKSTREAM_ETL_COMPILE=1 pip install .`` builds the modules below with mypyc into C
extensions installed beside their sources (``setup.py``).  Python imports an extension before a
source of the same name, so nothing else changes: the same code, the same output, faster.
A test pins this list to ``setup.py``'s.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from typing import Final

COMPILED_MODULES: Final = (
    "pipeline.cache",
    "pipeline.schema",
    "pipeline.formats.cloudfront",
    "transform.cleaning",
    "transform.urls",
    "transform.tracker",
    "transform.canonicalize",
    "transform.enrichments.campaign",
    "transform.enrichments.fingerprint",
    "transform.enrichments.ip",
    "transform.enrichments.referer",
    "transform.enrichments.useragent",
    "transform.validation",
    "pipeline.entities",
    "pipeline.app.process",
    "load.lake",
    "load.dataset",
)
"""The modules the compiled build compiles: Extract's line parser, the Transform core, the entity
validation and modelling, and the local dataset's staging and finalize (with its typed entity columns)."""


def compiled_modules() -> tuple[str, ...]:
    """The modules of :data:`COMPILED_MODULES` that Python imports from an extension here."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = []
    for name in COMPILED_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None and spec.origin.endswith(suffixes):
            found.append(name)
    return tuple(found)


def build_description() -> str:
    """``compiled (17 of 17 modules)`` or ``pure Python``, for ``clickstream-etl --version``."""
    found = compiled_modules()
    if not found:
        return "pure Python"
    return f"compiled ({len(found)} of {len(COMPILED_MODULES)} modules)"


__all__ = ["COMPILED_MODULES", "build_description", "compiled_modules"]
