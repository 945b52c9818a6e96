"""The shared error base: every error says whether retrying can help.

Stage packages (``extract.errors``, ``transform.errors``, ``load.errors``) derive their own
errors from these.  Data errors never travel as exceptions across a record boundary: they
become bad rows (``pipeline.badrows``).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of all clickstream-etl errors."""

    retryable: bool = False


class TransientError(PipelineError):
    """Infrastructure trouble (throttling, timeouts, 5xx): retrying the same input may succeed."""

    retryable = True


class TerminalError(PipelineError):
    """Retrying the same input will fail the same way (bad arguments, missing source, bad config)."""

    retryable = False


class InputError(TerminalError):
    """What the user gave cannot be used as it is (arguments, configuration, source, destination).

    The CLI exits 2 for these: fixing the input, not retrying, is what helps.
    """


class ConfigError(InputError):
    """The configuration is invalid; the message names the key and the problem."""
