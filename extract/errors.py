"""Errors of the extract stage."""

from pipeline.errors import InputError, PipelineError, TerminalError, TransientError


class ExtractError(PipelineError):
    """Base of extract errors."""


class SourceUnreadableError(ExtractError, InputError):
    """A source (file, folder, glob, object) cannot be opened or listed."""


class ExtractTransientError(ExtractError, TransientError):
    """A retryable failure while reading a source."""


class ObjectBusyError(ExtractTransientError):
    """An object noticed directly (S3, EventBridge, a continuation, a re-drive) is leased to another
    invocation: the invocation fails so that Lambda retries it, by which time the lease may be free."""


class RedriveRefusedError(ExtractError, TerminalError):
    """Extract could not be invoked for a reason retries will not fix (permissions, a missing function)."""


class MalformedNotificationError(ExtractError, TerminalError):
    """Extract was invoked directly with an event that is not an S3 notification it understands.

    Retrying will not change the event; the invocation fails so that it ends at the function's
    on-failure destination (and in its Errors metric) instead of succeeding silently.
    """
