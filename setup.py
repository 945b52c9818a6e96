"""The optional compiled build: the Transform core through mypyc, with the same sources as fallback.

Everything about the package lives in ``pyproject.toml``; this file only adds extension modules,
and only when asked:

    CLICKSTREAM_ETL_COMPILE=1 pip install .            # compiled (needs a C compiler)
    pip install .                                      # pure Python (the default, and Lambda's)

The compiled modules are the same ``.py`` files built by mypyc into C extensions, installed
beside their sources: Python imports an extension before a source of the same name, and the
sources stay as the fallback (a wheel without the extensions is the pure build).  Output is the
same either way; ``tests/unit/test_output_oracle.py`` checks it on both builds in CI, and
``clickstream-etl --version`` says which one is installed.  ``clickstream-etl package`` always
builds the Lambda artifacts pure (it clears the variable), since Lambda's platform may not be
the build machine's.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILE_VARIABLE = "CLICKSTREAM_ETL_COMPILE"

# The per-line and per-event code of Extract's parser, the Transform core and the backfill's
# staging and finalize: pure functions and small classes over strings and dicts, where mypyc's
# native calls and attribute access pay.  Not pipeline/iglu.py: users subclass its registries,
# and interpreted classes cannot inherit from compiled ones.
# pipeline/compiled.py holds the same list as module names (it reports what is compiled); a test
# pins the two.
COMPILED_MODULES = (
    "pipeline/cache.py",
    "pipeline/schema.py",
    "pipeline/formats/cloudfront.py",
    "transform/cleaning.py",
    "transform/urls.py",
    "transform/tracker.py",
    "transform/canonicalize.py",
    "transform/enrichments/campaign.py",
    "transform/enrichments/fingerprint.py",
    "transform/enrichments/ip.py",
    "transform/enrichments/referer.py",
    "transform/enrichments/useragent.py",
    "transform/validation.py",
    "pipeline/entities.py",
    "pipeline/app/process.py",
    "load/lake.py",
    "load/dataset.py",
)


def _extensions() -> tuple[list[object], list[str]]:
    """The extension modules and build requirements the environment asks for."""
    if os.environ.get(COMPILE_VARIABLE, "").strip().lower() not in ("1", "true", "yes"):
        return [], []
    try:
        from mypyc.build import mypycify
    except ImportError:  # the requirements pass of a PEP 517 build: ask for mypy, compile next pass
        return [], ["mypy>=1.10"]
    return list(mypycify(list(COMPILED_MODULES), opt_level="3", group_name="clickstream_etl_compiled")), []


extensions, build_requirements = _extensions()
setup(ext_modules=extensions, setup_requires=build_requirements)
