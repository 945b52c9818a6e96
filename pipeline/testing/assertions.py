"""Assertion helpers whose failures say what went wrong: conservation, duplicates, bad rows, fields.

Each raises ``AssertionError`` with a message meant to be read in a pytest report: the
accounting equation with its numbers, the duplicated keys, every bad row (kind, messages,
where it came from, its raw payload), every field that differs from the expected one.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from pipeline.badrows import BadRow

_RAW_SHOWN = 300  # characters of a bad row's raw payload quoted in a failure message


class Conserving(Protocol):
    """A summary that knows whether it accounts for all its input (``FileSummary``, ``ExtractResult``...)."""

    @property
    def conserved(self) -> bool: ...


class HasBadRows(Protocol):
    """A result carrying its bad rows (the kit's ``StageRun``, ``ChainRun``, ``TransformOutput``)."""

    @property
    def bad(self) -> Sequence[BadRow]: ...


def assert_conserved(summary: Conserving) -> None:
    """Fail unless every input line of ``summary`` is accounted for (``lines_read == good + bad + skipped``).

    The message gives the equation with the summary's own numbers and the skip reasons.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    if summary.conserved:
        return
    names = ("lines_read", "good", "bad", "skipped")
    values = {name: getattr(summary, name) for name in names if isinstance(getattr(summary, name, None), int)}
    if len(values) == len(names):
        accounted = values["good"] + values["bad"] + values["skipped"]
        equation = (
            f"lines_read {values['lines_read']} != good {values['good']} + bad {values['bad']}"
            f" + skipped {values['skipped']} (= {accounted}; {values['lines_read'] - accounted:+d} unaccounted)"
        )
    else:
        equation = "its input is not accounted for"
    reasons = getattr(summary, "skipped_by_reason", None)
    detail = f"; skipped by reason: {dict(reasons)}" if reasons else ""
    raise AssertionError(f"summary not conserved: {equation}{detail}\n{summary!r}")


def assert_no_duplicates(
    events: Iterable[Mapping[str, Any]], *, by: Sequence[str] = ("event_id", "event_fingerprint")
) -> None:
    """Fail if two events share the fields ``by`` (default: natural duplicates, same id and fingerprint).

    ``by=("event_id",)`` also catches synthetic duplicates (same id, different content).  The
    message lists each duplicated key and how many times it occurs.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    counts = Counter(tuple(event.get(name) for name in by) for event in events)
    duplicated = {key: n for key, n in counts.items() if n > 1}
    if duplicated:
        shown = "\n".join(
            f"  {dict(zip(by, key, strict=True))}: {n} times" for key, n in sorted(duplicated.items(), key=str)
        )
        total = sum(counts.values())
        raise AssertionError(f"{len(duplicated)} duplicated {'/'.join(by)} among {total} events:\n{shown}")


def describe_bad_row(row: BadRow) -> str:
    """One bad row in a few readable lines: kind, source coordinates, messages, raw payload (shortened)."""
    raw = row.raw if isinstance(row.raw, str) else repr(row.raw)
    if len(raw) > _RAW_SHOWN:
        raw = raw[:_RAW_SHOWN] + f"... ({len(raw)} characters)"
    where = row.source.object + (f" line {row.source.line}" if row.source.line is not None else "")
    messages = "".join(f"\n      - {message}" for message in row.messages)
    return f"  {row.kind.value} at {where}{messages}\n      raw: {raw}"


class AnswersBadRows(Protocol):
    """Something asked for its bad rows by a call (the kit's ``ChainSession.bad()``)."""

    def bad(self) -> Sequence[BadRow]: ...


def assert_no_bad_rows(result: HasBadRows | AnswersBadRows | Iterable[BadRow]) -> None:
    """Fail if ``result`` holds any bad row, printing each (kind, source, messages, raw payload).

    ``result`` is a run with ``.bad`` (``StageRun``, ``ExtractRun``, ``ChainRun``), a ``ChainSession``
    (its ``bad()``), or the bad rows themselves.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    found = getattr(result, "bad", None)
    if found is None:
        rows = list(result)  # type: ignore[arg-type]
    else:
        rows = list(found() if callable(found) else found)
    if rows:
        kinds = Counter(row.kind.value for row in rows)
        shown = "\n".join(describe_bad_row(row) for row in rows)
        raise AssertionError(f"{len(rows)} bad rows ({dict(sorted(kinds.items()))}):\n{shown}")


def _mismatches(actual: Any, expected: Any, path: str, out: list[str]) -> None:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key, value in expected.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                close = difflib.get_close_matches(str(key), [str(k) for k in actual], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                out.append(f"{where}: missing{hint}, expected {value!r}")
            else:
                _mismatches(actual[key], value, where, out)
    elif actual != expected:
        out.append(f"{path}: expected {expected!r}, got {actual!r}")


def assert_event_matches(event: Mapping[str, Any], partial: Mapping[str, Any]) -> None:
    """Fail unless every field of ``partial`` equals the event's; other fields of ``event`` are ignored.

    A nested mapping in ``partial`` is matched partially too (e.g. against a parsed context).
    Every difference is listed (``field: expected X, got Y``); a field the event lacks is named,
    with the closest field name it has.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    problems: list[str] = []
    _mismatches(event, partial, "", problems)
    if problems:
        shown = "\n".join(f"  {problem}" for problem in problems)
        label = event.get("event_id", "?")
        raise AssertionError(f"event {label} does not match ({len(problems)} of {len(partial)} fields):\n{shown}")
