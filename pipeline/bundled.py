"""Files shipped inside the package: the default configuration, data sets, the sample logs.

They live in the data package ``clickstream_etl_data`` (the repository's ``config/`` folder,
with ``samples/`` as its ``samples`` subpackage), named so that it never collides with a
user's own ``config`` module, and are found the same way from a checkout, an editable or a
plain install, and from any working folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

DATA_PACKAGE: Final = "clickstream_etl_data"
SAMPLES_PACKAGE: Final = f"{DATA_PACKAGE}.samples"


def data_text(name: str) -> str:
    """The text of a shipped data file (``default.toml``, ``referers.json``)."""
    return resources.files(DATA_PACKAGE).joinpath(name).read_text("utf-8")


def sample_logs() -> Path:
    """The folder of the shipped sample CloudFront logs (three small gzipped files)."""
    folder = resources.files(SAMPLES_PACKAGE).joinpath("cloudfront")
    path = Path(str(folder))
    if not path.is_dir():  # pragma: no cover - a zipped install; pip never makes one
        raise FileNotFoundError(f"the sample logs are not on disk ({folder}); reinstall clickstream-etl")
    return path
