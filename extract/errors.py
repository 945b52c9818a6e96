"""Errors of the extract stage."""

from pipeline.errors import PipelineError, TerminalError, TransientError


class ExtractError(PipelineError):
    """Base of extract errors."""


class SourceUnreadableError(ExtractError, TerminalError):
    """A source (file, folder, glob, object) cannot be opened or listed."""


class ExtractTransientError(ExtractError, TransientError):
    """A retryable failure while reading a source."""
