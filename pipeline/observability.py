"""Observability helpers shared by the handlers (Powertools Logger, Metrics and Tracer).

The X-Ray SDK that Powertools' Tracer loads costs about half a second of import time, so
the tracer is created on the first invocation instead of at import, and not at all when
``POWERTOOLS_TRACE_DISABLED`` is true (Powertools' own switch; run-local and tests set it).
Every handler goes through :class:`LazyTracer`, so its first invocation is also where the
AWS SDK's loggers are kept quiet (:func:`quiet_library_loggers`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pipeline.constants import LIBRARY_LOG_LEVEL_ENV, POWERTOOLS_TRACE_DISABLED_ENV

LIBRARY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def quiet_library_loggers(environ: Mapping[str, str] | None = None) -> str:
    """Set the AWS SDK's loggers to WARNING, or to ``CLICKSTREAM_ETL_LIBRARY_LOG_LEVEL``; return the level.

    Powertools at DEBUG would otherwise let botocore log whole requests (PutRecords bodies
    carry raw log lines and client addresses).
    """
    environ = os.environ if environ is None else environ
    level = environ.get(LIBRARY_LOG_LEVEL_ENV, "").strip().upper() or "WARNING"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        level = "WARNING"
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    return level


Handler = TypeVar("Handler", bound=Callable[..., Any])

_DISABLED = frozenset({"1", "true", "yes"})


class LazyTracer:
    """A Powertools Tracer made when first needed; a pass-through when tracing is disabled."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._decorated: dict[int, Callable[..., Any]] = {}

    def capture_lambda_handler(self, handler: Handler) -> Handler:
        @functools.wraps(handler)
        def traced(event: Any, context: Any) -> Any:
            target = self._decorated.get(id(handler))
            if target is None:  # the first invocation of this handler in the container
                quiet_library_loggers()
                target = handler
                if os.environ.get(POWERTOOLS_TRACE_DISABLED_ENV, "").strip().lower() not in _DISABLED:
                    from aws_lambda_powertools import Tracer

                    target = Tracer(service=self.service).capture_lambda_handler(handler)
                self._decorated[id(handler)] = target
            return target(event, context)

        return traced  # type: ignore[return-value]
