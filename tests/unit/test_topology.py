"""The deployed wiring that keeps notifications from being lost (reliability catalogue F07, F08)."""

from __future__ import annotations

import importlib
import json

from extract.stage import MAX_LEASE_MS
from pipeline.config import PipelineConfig
from pipeline.constants import EXTRACT_FUNCTION_NAME_ENV
from pipeline.topology import (
    EXTRACT_FUNCTION,
    EXTRACT_TIMEOUT_S,
    notification_mapping,
    scheduled_functions,
)


def test_the_notification_queue_reports_item_failures_and_hides_a_busy_message_past_its_lease() -> None:
    mapping = notification_mapping()
    aws = mapping.to_aws("arn:queue", "arn:function")
    assert mapping.function == EXTRACT_FUNCTION
    # Without it Lambda ignores batchItemFailures and deletes a busy object's message.
    assert aws["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # A busy message returns after the holder's lease can have ended (at most two timeouts).
    assert mapping.visibility_timeout_s >= 6 * EXTRACT_TIMEOUT_S >= 2 * EXTRACT_TIMEOUT_S
    attributes = mapping.queue_attributes("arn:dlq")
    assert attributes["VisibilityTimeout"] == str(mapping.visibility_timeout_s)
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 5}
    assert EXTRACT_TIMEOUT_S * 1000 <= MAX_LEASE_MS  # the lease cap never cuts a real invocation short


def test_the_extract_reconciler_is_a_scheduled_function_that_invokes_extract(config: PipelineConfig) -> None:
    """Reliability catalogue L07 (listing part): one run at a time (reserved concurrency 1) over a shared cursor."""
    reconciler = scheduled_functions(config)["extract_reconciler"]
    assert reconciler.schedule == "rate(15 minutes)"
    assert reconciler.rule()["ScheduleExpression"] == "rate(15 minutes)"
    assert reconciler.invokes == (EXTRACT_FUNCTION,)
    assert reconciler.environment[EXTRACT_FUNCTION_NAME_ENV] == EXTRACT_FUNCTION
    assert reconciler.lists_bucket == config.resources.log_bucket
    assert reconciler.ledger_table == config.resources.ledger_table
    assert reconciler.reserved_concurrency == 1 and reconciler.timeout_s <= 15 * 60
    module, name = reconciler.handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
