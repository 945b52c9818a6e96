"""Errors of the extract stage."""

from pipeline.errors import InputError, PipelineError, TransientError


class ExtractError(PipelineError):
    """Base of extract errors."""


class SourceUnreadableError(ExtractError, InputError):
    """A source (file, folder, glob, object) cannot be opened or listed."""


class ExtractTransientError(ExtractError, TransientError):
    """A retryable failure while reading a source."""
