"""Errors of the load stage."""

from pipeline.errors import PipelineError, TerminalError, TransientError


class LoadError(PipelineError):
    """Base of load errors."""


class SinkWriteError(LoadError, TransientError):
    """Writing to a sink failed in a way that may succeed on retry (disk full, throttling)."""


class DestinationError(LoadError, TerminalError):
    """The destination is unusable (not a folder, not writable)."""
