"""Errors of the load stage."""

from pipeline.errors import ConfigError, InputError, PipelineError, TerminalError, TransientError


class LoadError(PipelineError):
    """Base of load errors."""


class SinkWriteError(LoadError, TransientError):
    """Writing to a sink failed in a way that may succeed on retry (disk full, throttling)."""


class DestinationError(LoadError, InputError):
    """The destination is unusable (not a folder, not writable)."""


class InvalidIdentifierError(LoadError, ConfigError):
    """A schema, table or column name from configuration is not a safe SQL identifier."""


class StatementTimeoutError(LoadError, TransientError):
    """A Redshift statement did not finish within the configured number of polls.

    The statement may still complete on the server; every plan is idempotent, so running
    it again is safe.
    """


class StatementConflictError(LoadError, TransientError):
    """Redshift aborted a statement for a concurrent transaction (serializable isolation
    violation, lock timeout): run the same plan again."""


class StatementFailedError(LoadError, TerminalError):
    """Redshift ran a statement and it failed (bad SQL, missing table, permissions, bad
    data for a COPY): running it again fails the same way until something is fixed."""

    def __init__(self, message: str, *, label: str = "", query_id: int | None = None) -> None:
        super().__init__(message)
        self.label = label
        """The label of the failed statement in its plan (e.g. ``"copy"``)."""
        self.query_id = query_id
        """Redshift's query id of the failed statement, for sys_load_error_detail."""


class DataApiError(LoadError, TransientError):
    """The Redshift Data API could not be reached or throttled us after botocore's retries."""


class DataApiRequestError(LoadError, TerminalError):
    """The Redshift Data API refused the request (validation, access denied, unknown target)."""


class SinkClaimBusyError(LoadError, TransientError):
    """A chunk or event of the batch is held by an attempt that may still be running (its lease
    has not run out, or its record kept changing): retry the batch later."""


class SinkUndoError(LoadError, TransientError):
    """An attempt failed and could not give its work back either: retry the batch; the retry
    takes the attempt's claims over (at once if its abort was recorded, after its lease otherwise)."""
