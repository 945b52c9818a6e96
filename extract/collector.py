"""Collector Lambda: Snowplow tracker requests (Function URL / HTTP API, payload 2.0) -> stream 1.

A thin adapter: it parses the event into an :class:`~extract.collector_protocol.HttpRequest`,
lets :func:`~extract.collector_protocol.plan_request` decide, puts the planned records with
bounded retries and answers the planned response only once they are durable (503 otherwise,
which trackers retry).  Nothing is created at import; ``run-local --collector`` serves the
same :func:`handle` behind a local HTTP adapter.
See https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html (payload format 2.0).
"""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from extract.collector_protocol import CollectorPlan, HttpRequest, HttpResponse, plan_request, unavailable
from extract.realtime import (
    REALTIME_PATH,
    DynamoRealtimeCounter,
    RealtimeCounter,
    RealtimeCounterAccessError,
    RealtimeCounterError,
    RealtimeSettings,
    plan_mark,
    realtime_response_parts,
)
from pipeline.aws.kinesis import KinesisAccessError, KinesisPutError, KinesisWriter, RecordWriter
from pipeline.config import CollectorConfig, PipelineConfig, load_config
from pipeline.constants import METRICS_NAMESPACE

logger = Logger(service="clickstream-etl-collector")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="collector")


@dataclass(frozen=True)
class CollectorDeps:
    config: CollectorConfig
    writer: RecordWriter
    record_target_bytes: int
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    counter: RealtimeCounter | None = None
    """The real-time tile's counter (None: ``[collector] realtime_table`` is "")."""
    clock: Callable[[], float] = time.time


def build_deps(
    config: PipelineConfig,
    *,
    kinesis: Any,
    dynamodb: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CollectorDeps:
    """The collector's wiring on a Kinesis client: the deployed one, shared with run-local.

    The put's retries are the collector's own (``[collector] put_*``): a tracker waits for the
    answer, so a few short retries, then 503 and the tracker's own retry, beat a long wait.
    """
    c = config.collector
    stream = dataclasses.replace(
        config.stream,
        put_max_attempts=c.put_max_attempts,
        put_base_delay_ms=c.put_base_delay_ms,
        put_max_delay_ms=c.put_max_delay_ms,
    )
    writer = KinesisWriter(kinesis, config.resources.raw_stream, stream, sleep=sleep)
    counter = DynamoRealtimeCounter(dynamodb, c.realtime_table) if c.realtime_table and dynamodb is not None else None
    return CollectorDeps(c, writer, config.stream.record_target_bytes, counter=counter)


@cache
def default_deps() -> CollectorDeps:
    from pipeline.aws.clients import make_client

    config = load_config()
    dynamodb = make_client("dynamodb", config.aws) if config.collector.realtime_table else None
    return build_deps(config, kinesis=make_client("kinesis", config.aws), dynamodb=dynamodb)


def parse_http_event(event: Mapping[str, Any], clock: Callable[[], float] = time.time) -> HttpRequest:
    """A Function URL / HTTP API (payload format 2.0) event as an :class:`HttpRequest`."""
    context = event.get("requestContext") or {}
    http = context.get("http") or {}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    cookies: dict[str, str] = {}
    for item in event.get("cookies") or headers.get("cookie", "").split(";"):
        name, sep, value = str(item).strip().partition("=")
        if sep and name:
            cookies.setdefault(name, value)
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")
    received = context.get("timeEpoch")
    return HttpRequest(
        method=str(http.get("method") or "GET"),
        path=str(event.get("rawPath") or http.get("path") or "/"),
        query=str(event.get("rawQueryString") or ""),
        headers=headers,
        cookies=cookies,
        body=raw,
        source_ip=http.get("sourceIp") or None,
        request_id=str(context.get("requestId") or uuid.uuid4()),
        received_ms=received if type(received) is int else int(clock() * 1000),
    )


def to_http_response(response: HttpResponse) -> dict[str, Any]:
    """The Lambda response (payload format 2.0); the body base64 so the GIF's bytes survive."""
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "cookies": list(response.cookies),
        "body": base64.b64encode(response.body).decode("ascii"),
        "isBase64Encoded": True,
    }


def handle(event: Mapping[str, Any], deps: CollectorDeps) -> dict[str, Any]:
    request = parse_http_event(event, deps.clock)
    if request.path == REALTIME_PATH:
        settings = RealtimeSettings.of(deps.config)
        status, headers, body = realtime_response_parts(
            request.method, request.headers.get("origin"), settings, deps.counter, deps.clock
        )
        return to_http_response(HttpResponse(status, headers, body))
    plan = plan_request(request, deps.config, record_target_bytes=deps.record_target_bytes, new_id=deps.new_id)
    response = plan.response
    if plan.records:
        try:
            deps.writer.put(plan.records)
        except (KinesisPutError, KinesisAccessError) as exc:  # not durable: never acknowledge
            logger.warning("stream 1 put failed; answering 503", extra={"error": str(exc), "route": plan.route})
            metrics.add_metric(name="CollectorUnavailable", unit=MetricUnit.Count, value=1)
            response = unavailable(plan)
        else:
            metrics.add_metric(name="CollectorEvents", unit=MetricUnit.Count, value=plan.events)
            metrics.add_metric(name="CollectorBadRows", unit=MetricUnit.Count, value=plan.bad)
            count_visitor(plan, request, deps)
    return to_http_response(response)


def count_visitor(plan: CollectorPlan, request: HttpRequest, deps: CollectorDeps) -> None:
    """Best effort, after the events are durable: a failed counter write only costs the tile a
    visitor for a few minutes, so it is logged and counted, never answered as a failure."""
    mark = plan_mark(plan.visitor, False, request.received_ms, RealtimeSettings.of(deps.config))
    if mark is None or deps.counter is None:
        return
    try:
        deps.counter.mark(mark)
    except (RealtimeCounterError, RealtimeCounterAccessError) as exc:
        logger.warning("realtime counter write failed; the request is unaffected", extra={"error": str(exc)})
        metrics.add_metric(name="RealtimeCounterFailed", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, default_deps())
