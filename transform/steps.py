"""Custom transform steps: your own functions over the canonical event, listed in ``transform.steps``.

A step is the same thing as a built-in enrichment (:class:`~transform.enrichments.base.Enrichment`):
an object with a ``name`` and ``apply(event, hit)``.  The steps of ``[transform] steps`` run in the
order listed, after every built-in enrichment, on the enriched event (``mkt_*``, ``br_*``,
``refr_*`` and the other enrichment columns already set), and only on events that are valid so
far: an event that is already a bad row never reaches them.

Each entry of ``transform.steps`` is one of

* the name of a built-in step (:data:`BUILTIN_STEPS`: ``"bot_flag"``), or
* an import path ``"package.module:attribute"`` (``attribute`` may be dotted) naming

  - a **function** ``(event, hit) -> Mapping[str, Any] | Part | None``; the step's name is the
    function's ``__name__`` (or its ``name`` attribute when it has one);
  - a **class or object with** ``from_config(config, setup)``, the factory the built-in
    enrichments have: it gets the :class:`~pipeline.config.TransformConfig` and the
    :class:`~transform.enrichments.base.EnrichmentSetup` and returns the step (an object with
    a ``name`` string and an ``apply(event, hit)`` method), or None to leave itself out;
  - an **object** that already has ``name`` and ``apply``.

Paths are resolved when the transform is built (:func:`build_steps`, called by
:class:`~transform.canonicalize.Canonicalizer`): a module that cannot be imported, a missing
attribute, something that is not callable, a function that cannot take ``(event, hit)``, a
class without ``from_config``, or two steps of one name is a
:class:`~transform.errors.TransformConfigError` naming ``transform.steps`` (the CLI exits 2),
never a failure in the middle of a batch.  The module must be importable where the transform
runs (installed, or on ``PYTHONPATH``).

What a step may do with an event, through ``apply(event, hit)``:

* **change it**: set or delete fields of ``event`` (a dict of canonical field name to value; an
  absent field or None is null), or return a mapping of fields to set (None deletes), or a
  :class:`~transform.enrichments.base.Part`, whose columns are merged and whose errors make the
  event a bad row.  ``hit`` (:class:`~transform.enrichments.base.Hit`) is the request behind the
  event, read-only: the raw request, the page URL and referrer as stored, the user agent.
* **drop it**: raise :class:`DropEvent`.  The event is neither good nor bad: it is a skip
  counted in the run summary's ``skipped_by_reason`` as ``step:<name>`` (:func:`skip_reason`),
  so ``lines_read == good + bad + skipped`` holds in the backfill and in the Lambda stage alike.
* **fail**: any other exception makes that event a bad row (:data:`STEP_FAILURE_KIND`) whose
  message names the step and the exception (:func:`failure_message`), with the usual source
  coordinates and raw line; the rest of the batch goes on.

After the steps, the event is cleaned (tabs and control characters in string columns, as every
string column is: :mod:`transform.cleaning`) and validated against the canonical schema like any
event: a step that writes a value of the wrong type or width makes a ``schema_violation`` bad
row listing every problem.

A step runs once per event, so it should be pure and cheap: no I/O per event, and a memo
(:class:`pipeline.cache.BoundedCache`) for anything computed from a value that repeats (a user
agent, a URL).  Example, ``mypkg/steps.py``::

    from transform.steps import DropEvent

    def drop_internal(event, hit):
        if (event.get("user_ipaddress") or "").startswith("10."):
            raise DropEvent("internal traffic")  # a skip, counted as step:drop_internal
        if (event.get("page_urlpath") or "").startswith("/checkout"):
            return {"se_label": "checkout"}
        return None

and ``[transform] steps = ["mypkg.steps:drop_internal"]``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from pipeline.badrows import FailureKind
from pipeline.config import TransformConfig
from pipeline.schema import CanonicalEvent
from transform.enrichments.base import Enrichment, EnrichmentSetup, Hit, Part
from transform.errors import TransformConfigError

STEPS_KEY: Final = "transform.steps"

BUILTIN_STEPS: Final[Mapping[str, str]] = {
    "bot_flag": "transform.enrichments.bots:BotFlagEnrichment",
}
"""Built-in steps by name, as import paths: a step module is imported only when it is listed."""

SKIP_PREFIX: Final = "step:"
_DETAIL_CAP: Final = 1000  # an exception's text may hold a whole payload: the bad row keeps the raw line anyway

STEP_FAILURE_KIND: Final = FailureKind.ENRICHMENT_FAILURE
"""The kind of the bad row of an event a step raised on.  ``pipeline.badrows`` has no kind for
a failed enrichment yet (Snowplow's ``enrichment_failures``); the message says which step failed."""

StepFunction = Callable[[CanonicalEvent, Hit], "Mapping[str, Any] | Part | None"]
"""A plain function as a step: called with the event and its hit, for each event."""


class DropEvent(Exception):  # not "...Error": dropping an event is an outcome, not a failure
    """Raised by a step's ``apply`` to drop the event: counted as the skip ``step:<name>``, never a bad row.

    ``reason`` is for the reader of the step's code and its tests; the count is per step, so
    that a reason built from the data cannot multiply the summary's keys.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def skip_reason(name: str) -> str:
    """The ``skipped_by_reason`` key of the events the step ``name`` drops: ``step:<name>``."""
    return SKIP_PREFIX + name


def failure_message(name: str, exc: BaseException) -> str:
    """The bad-row message of an event the step ``name`` raised ``exc`` on (the detail capped at 1,000 characters)."""
    detail = str(exc)[:_DETAIL_CAP]
    kind = type(exc).__qualname__
    return f"step {name!r} failed: {kind}: {detail}" if detail else f"step {name!r} failed: {kind}"


class FunctionStep:
    """A function ``(event, hit) -> Mapping | Part | None`` as a step (see the module docstring)."""

    __slots__ = ("function", "name")

    def __init__(self, name: str, function: StepFunction) -> None:
        self.name = name
        self.function = function

    def apply(self, event: CanonicalEvent, hit: Hit) -> Part | None:
        """Call the function; a mapping it returns is set into ``event`` (a None value deletes the field)."""
        result = self.function(event, hit)
        if result is None or isinstance(result, Part):
            return result
        if not isinstance(result, Mapping):
            raise TypeError(f"a step returns a mapping of fields, a Part or None, not {type(result).__name__}")
        for field, value in result.items():
            if value is None:
                event.pop(field, None)
            else:
                event[field] = value
        return None

    def __repr__(self) -> str:
        return f"FunctionStep({self.name!r})"


def build_steps(config: TransformConfig, setup: EnrichmentSetup) -> tuple[Enrichment, ...]:
    """The steps of ``transform.steps``, in order (those whose factory returns None left out).

    Raises :class:`~transform.errors.TransformConfigError` naming ``transform.steps`` for an
    entry that cannot be resolved or is listed twice, a step that cannot be built, and two steps
    of one name.
    """
    entries = config.steps
    if len(set(entries)) != len(entries):
        raise TransformConfigError(f"{STEPS_KEY} lists a step twice: {list(entries)}")
    steps: list[Enrichment] = []
    names: dict[str, str] = {}
    for entry in entries:
        step = load_step(entry, config, setup)
        if step is None:
            continue
        if step.name in names:
            raise TransformConfigError(
                f"{STEPS_KEY}: {names[step.name]!r} and {entry!r} are both named {step.name!r} "
                "(skips and bad rows name the step: give one a name attribute)"
            )
        names[step.name] = entry
        steps.append(step)
    return tuple(steps)


def load_step(entry: str, config: TransformConfig, setup: EnrichmentSetup) -> Enrichment | None:
    """Resolve one entry of ``transform.steps`` into a step (None: its factory left it out).

    Raises :class:`~transform.errors.TransformConfigError` naming the key and the entry.
    """
    path = BUILTIN_STEPS.get(entry, entry)
    module_name, colon, attribute = path.partition(":")
    if not colon or not module_name or not attribute:
        raise TransformConfigError(
            f"{STEPS_KEY}: {entry!r} is neither a built-in step ({', '.join(BUILTIN_STEPS)}) "
            "nor an import path 'package.module:attribute'"
        )
    target = _resolve(entry, module_name, attribute)
    factory = getattr(target, "from_config", None)
    if factory is not None:
        if not callable(factory):
            raise TransformConfigError(f"{STEPS_KEY}: {entry!r}: from_config is not callable")
        try:
            built = factory(config, setup)
        except TransformConfigError:
            raise
        except Exception as exc:  # a user's factory may raise anything: say which entry, and stop here
            raise TransformConfigError(f"{STEPS_KEY}: {entry!r} could not be set up: {_describe(exc)}") from exc
        return None if built is None else _checked_step(entry, built)
    if isinstance(target, type):
        raise TransformConfigError(f"{STEPS_KEY}: {entry!r} is a class without a from_config(config, setup) factory")
    if isinstance(getattr(target, "name", None), str) and callable(getattr(target, "apply", None)):
        return _checked_step(entry, target)
    if not callable(target):
        raise TransformConfigError(
            f"{STEPS_KEY}: {entry!r} is a {type(target).__name__}, not a function (event, hit) or a step class"
        )
    _check_signature(entry, target)
    name = getattr(target, "name", None)
    if not isinstance(name, str) or not name:
        name = getattr(target, "__name__", None) or attribute
    return FunctionStep(name, target)


def _import(module_name: str) -> Any:
    """The module, from the Python path or else the current folder (as ``python -m`` finds it).

    A console script such as ``clickstream-etl`` does not put the current folder on the path, so a
    ``mysteps.py`` beside the user's ``pipeline.toml`` would not import without this.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.split(".", maxsplit=1)[0] or here in sys.path:
            raise
        sys.path.append(here)  # after everything else: it never shadows an installed module
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError:
            sys.path.remove(here)
            raise exc from None


def _resolve(entry: str, module_name: str, attribute: str) -> Any:
    try:
        target: Any = _import(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while it is imported
        reason = _describe(exc)
        raise TransformConfigError(f"{STEPS_KEY}: cannot import {module_name!r} for {entry!r}: {reason}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise TransformConfigError(f"{STEPS_KEY}: {entry!r}: {module_name} has no attribute {attribute!r}") from exc
    return target


def _checked_step(entry: str, step: Any) -> Enrichment:
    name = getattr(step, "name", None)
    if not isinstance(name, str) or not name:
        raise TransformConfigError(f"{STEPS_KEY}: {entry!r}: the step needs a non-empty name string")
    apply = getattr(step, "apply", None)
    if not callable(apply):
        raise TransformConfigError(f"{STEPS_KEY}: {entry!r}: the step needs an apply(event, hit) method")
    _check_signature(entry, apply)
    return step  # type: ignore[no-any-return]


def _check_signature(entry: str, function: Callable[..., Any]) -> None:
    """Refuse, at build time, a callable that cannot be called as ``(event, hit)``."""
    import inspect  # only while the transform is built: inspect is a heavy import for a cold start

    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: they will be called as they are
        return
    try:
        signature.bind({}, None)
    except TypeError as exc:
        raise TransformConfigError(
            f"{STEPS_KEY}: {entry!r} cannot be called as (event, hit): {signature} ({exc})"
        ) from exc


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


__all__ = [
    "BUILTIN_STEPS",
    "STEP_FAILURE_KIND",
    "DropEvent",
    "FunctionStep",
    "StepFunction",
    "build_steps",
    "failure_message",
    "load_step",
    "skip_reason",
]
