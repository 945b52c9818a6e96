"""Errors of the transform stage.

Data problems are not raised across the record boundary: they become bad rows.
"""

from pipeline.errors import ConfigError, PipelineError


class TransformError(PipelineError):
    """Base of transform errors."""


class TransformConfigError(TransformError, ConfigError):
    """The transform configuration is unusable (missing pseudonymization key, bad dataset)."""
