"""Observability helpers shared by the handlers (Powertools Logger, Metrics and Tracer).

The X-Ray SDK that Powertools' Tracer loads costs about half a second of import time, so
the tracer is created on the first invocation instead of at import, and not at all when
``POWERTOOLS_TRACE_DISABLED`` is true (Powertools' own switch; run-local and tests set it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.constants import POWERTOOLS_TRACE_DISABLED_ENV

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
            if target is None:
                target = handler
                if os.environ.get(POWERTOOLS_TRACE_DISABLED_ENV, "").strip().lower() not in _DISABLED:
                    from aws_lambda_powertools import Tracer

                    target = Tracer(service=self.service).capture_lambda_handler(handler)
                self._decorated[id(handler)] = target
            return target(event, context)

        return traced  # type: ignore[return-value]
