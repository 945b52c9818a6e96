"""Input formats behind one registry.

Each format is one module implementing :class:`~pipeline.formats.base.LogFormat` (read a
stream into lines, parse a line into a :class:`~pipeline.formats.base.Request`) and one
line in :data:`FORMATS`.  Stream-1 records name their format, so Transform parses each
batch the way Extract read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from pipeline.config import ExtractConfig
from pipeline.errors import ConfigError
from pipeline.formats.base import FieldLayout, LogFormat, ReadLimits
from pipeline.formats.cloudfront import CloudFrontW3C, legacy_layout
from pipeline.formats.collector import CollectorPayloads

FORMATS: Final[Mapping[str, Callable[[], LogFormat]]] = {
    CloudFrontW3C.name: CloudFrontW3C,
    CollectorPayloads.name: CollectorPayloads,
}
DEFAULT_FORMAT: Final = CloudFrontW3C.name
"""The format of records that do not name one (stream-1 records written before formats had names)."""


class UnknownFormatError(ConfigError):
    """No format of that name is registered."""


def read_limits(config: ExtractConfig) -> ReadLimits:
    """The reader's limits from ``[extract]`` (``default_fields`` parsed into a layout).

    Raises ConfigError naming the key when ``default_fields`` names no known layout.
    """
    spec = config.default_fields.strip()
    layout: FieldLayout | None = None
    if spec.startswith("legacy-"):
        try:
            layout = legacy_layout(int(spec.removeprefix("legacy-")))
        except ValueError as exc:
            raise ConfigError(f"extract.default_fields: {exc}") from exc
    elif spec:
        layout = FieldLayout.parse(spec)
    return ReadLimits(config.max_line_bytes, config.max_decompressed_bytes, layout)


def get_format(name: str = DEFAULT_FORMAT) -> LogFormat:
    """A new instance of the format called ``name`` (instances hold their own bounded memos)."""
    factory = FORMATS.get(name)
    if factory is None:
        raise UnknownFormatError(f"unknown log format {name!r}; known: {', '.join(sorted(FORMATS))}")
    return factory()
