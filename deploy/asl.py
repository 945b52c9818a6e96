"""A static check of Amazon States Language definitions: the subset template.yaml's state machines use.

Neither cfn-lint (it validates ``AWS::StepFunctions::StateMachine`` definitions loosely and SAM's
not at all) nor moto (its ASL parser predates ``ItemBatcher``) checks a Distributed Map, so this
does, after the ASL specification (https://states-language.net/spec.html) and the Distributed Map
pages of the Step Functions guide
(https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html): the fields each
state type allows and requires, transitions that land on states, retriers whose ``States.ALL``
comes last and alone, and the Distributed Map's reader, batcher, concurrency and writer.
:func:`problems` lists what is wrong, empty when nothing is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

COMMON: Final = frozenset({"Type", "Comment", "Next", "End", "InputPath", "OutputPath"})
ALLOWED: Final[Mapping[str, frozenset[str]]] = {
    "Task": COMMON
    | {
        "Resource",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
        "TimeoutSeconds",
        "HeartbeatSeconds",
        "Credentials",
    },
    "Map": COMMON
    | {
        "ItemProcessor",
        "ItemReader",
        "ItemsPath",
        "ItemSelector",
        "ItemBatcher",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ResultWriter",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
        "Label",
    },
    "Pass": COMMON | {"Result", "ResultPath", "Parameters"},
    "Succeed": frozenset({"Type", "Comment", "InputPath", "OutputPath"}),
    "Fail": frozenset({"Type", "Comment", "Error", "Cause"}),
}
RETRIER_FIELDS: Final = frozenset(
    {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy"}
)
BATCHER_FIELDS: Final = frozenset(
    {"MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath", "BatchInput"}
)
MAX_BATCH_INPUT_BYTES: Final = 262144
"""A batch's input is a state's input, at most 256 KiB."""
READER_INPUT_TYPES: Final = frozenset({"CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"})


def problems(definition: Mapping[str, Any], where: str = "") -> list[str]:
    """What is wrong with ``definition`` (a state machine, or a Map's ItemProcessor)."""
    out: list[str] = []
    states = definition.get("States")
    if not isinstance(states, Mapping) or not states:
        return [f"{where or 'definition'}: States must be a non-empty object"]
    if definition.get("StartAt") not in states:
        out.append(f"{where or 'definition'}: StartAt {definition.get('StartAt')!r} is not a state")
    for name, state in states.items():
        out += _state_problems(f"{where}{name}", state, states)
    return out


def _state_problems(where: str, state: Any, states: Mapping[str, Any]) -> list[str]:
    if not isinstance(state, Mapping):
        return [f"{where}: a state is an object"]
    kind = str(state.get("Type"))
    if kind not in ALLOWED:
        return [f"{where}: Type {kind!r} is not one this check knows ({', '.join(ALLOWED)})"]
    out = [f"{where}: {kind} has no field {key}" for key in sorted(set(state) - ALLOWED[kind])]
    if kind not in ("Succeed", "Fail"):
        if ("Next" in state) == bool(state.get("End")):
            out.append(f"{where}: exactly one of Next and End: true")
        if "Next" in state and state["Next"] not in states:
            out.append(f"{where}: Next {state['Next']!r} is not a state")
    if kind == "Task" and not isinstance(state.get("Resource"), str):
        out.append(f"{where}: a Task needs its Resource")
    for index, retrier in enumerate(state.get("Retry", [])):
        out += _retrier_problems(f"{where}.Retry[{index}]", retrier, last=index == len(state["Retry"]) - 1)
    if kind == "Map":
        out += _map_problems(where, state)
    return out


def _retrier_problems(where: str, retrier: Mapping[str, Any], *, last: bool) -> list[str]:
    out = [f"{where}: no field {key}" for key in sorted(set(retrier) - RETRIER_FIELDS)]
    errors = retrier.get("ErrorEquals")
    if not isinstance(errors, list) or not errors:
        out.append(f"{where}: ErrorEquals must be a non-empty list")
    elif "States.ALL" in errors and (len(errors) > 1 or not last):
        out.append(f"{where}: States.ALL must be alone, in the last retrier")
    if not 0 <= int(retrier.get("MaxAttempts", 3)) <= 99999999:
        out.append(f"{where}: MaxAttempts out of range")
    if float(retrier.get("BackoffRate", 2.0)) < 1.0:
        out.append(f"{where}: BackoffRate must be at least 1")
    if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        out.append(f"{where}: JitterStrategy is FULL or NONE")
    return out


def _map_problems(where: str, state: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    processor = state.get("ItemProcessor")
    if not isinstance(processor, Mapping):
        return [f"{where}: a Map needs its ItemProcessor"]
    config = processor.get("ProcessorConfig", {})
    distributed = config.get("Mode") == "DISTRIBUTED"
    if config.get("Mode", "INLINE") not in ("INLINE", "DISTRIBUTED"):
        out.append(f"{where}: ProcessorConfig.Mode is INLINE or DISTRIBUTED")
    if distributed and config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
        out.append(f"{where}: a Distributed Map's ExecutionType is STANDARD or EXPRESS")
    out += problems({k: v for k, v in processor.items() if k != "ProcessorConfig"}, f"{where}/")
    inline_only = {"ItemReader", "ItemBatcher", "ResultWriter", "Label"} & set(state)
    if not distributed and inline_only:
        out.append(f"{where}: {', '.join(sorted(inline_only))} need a Distributed Map")
    for a, b in (
        ("MaxConcurrency", "MaxConcurrencyPath"),
        ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath"),
    ):
        if a in state and b in state:
            out.append(f"{where}: {a} and {b} exclude each other")
    if "ToleratedFailurePercentage" in state and not 0 <= state["ToleratedFailurePercentage"] <= 100:
        out.append(f"{where}: ToleratedFailurePercentage is 0 to 100")
    out += _reader_problems(where, state.get("ItemReader"))
    out += _batcher_problems(where, state.get("ItemBatcher"))
    writer = state.get("ResultWriter")
    if writer is not None and not str(writer.get("Resource", "")).endswith(":s3:putObject"):
        out.append(f"{where}: ResultWriter writes with s3:putObject")
    return out


def _reader_problems(where: str, reader: Any) -> list[str]:
    if reader is None:
        return []
    resource = str(reader.get("Resource", ""))
    if not resource.endswith((":s3:getObject", ":s3:listObjectsV2")):
        return [f"{where}: ItemReader reads with s3:getObject or s3:listObjectsV2"]
    input_type = reader.get("ReaderConfig", {}).get("InputType")
    if resource.endswith(":s3:getObject") and input_type not in READER_INPUT_TYPES:
        return [f"{where}: ItemReader.ReaderConfig.InputType is one of {', '.join(sorted(READER_INPUT_TYPES))}"]
    return []


def _batcher_problems(where: str, batcher: Any) -> list[str]:
    if batcher is None:
        return []
    out = [f"{where}: ItemBatcher has no field {key}" for key in sorted(set(batcher) - BATCHER_FIELDS)]
    if not (set(BATCHER_FIELDS) - {"BatchInput"}) & set(batcher):
        out.append(f"{where}: ItemBatcher needs a batch size")
    items = batcher.get("MaxItemsPerBatch", 1)
    if not isinstance(items, int) or items < 1:
        out.append(f"{where}: MaxItemsPerBatch is a positive integer")
    size = batcher.get("MaxInputBytesPerBatch", 1)
    if not isinstance(size, int) or not 0 < size <= MAX_BATCH_INPUT_BYTES:
        out.append(f"{where}: MaxInputBytesPerBatch is 1 to {MAX_BATCH_INPUT_BYTES}")
    return out
