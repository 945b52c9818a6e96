"""A request -> canonical event: decode the tracker protocol, split URLs, identify, enrich, validate.

:meth:`Canonicalizer.process` is the whole transform of one request (a
:class:`~pipeline.formats.base.Request`, whatever format logged it).  It is pure: the same
request, source and configuration always give the same result (``etl_tstamp`` is an input),
and it never raises for bad data -- every problem becomes a :class:`BadRow`.  The
enrichment steps (:mod:`transform.enrichments`) run in configured order, then the custom
steps of ``transform.steps`` (:mod:`transform.steps`) on the enriched, valid event; the
canonicalizer knows none of them by name.  A step of either kind that raises
:class:`~transform.steps.DropEvent` makes the event a counted skip (``step:<name>``), and one
that raises anything else makes it a bad row naming the step: never an exception out of
:meth:`Canonicalizer.process`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any, Final, NamedTuple

from pipeline import ARTIFACT, __version__
from pipeline.badrows import BadRow, FailureKind, SourceRef
from pipeline.cache import BoundedCache
from pipeline.config import TransformConfig
from pipeline.errors import ConfigError
from pipeline.formats.base import Request, Skip
from pipeline.iglu import Resolver, S3Fetch, resolver_from_config
from pipeline.schema import CanonicalEvent, validate
from transform.cleaning import clean_columns, clean_text
from transform.enrichments import Enrichment, EnrichmentSetup, Hit, Part, build_enrichments, build_page_url_steps
from transform.errors import TransformConfigError
from transform.steps import STEP_FAILURE_KIND, DropEvent, build_steps, failure_message, skip_reason
from transform.tracker import EVENT_TYPES, QueryDecoder
from transform.urls import Redaction, UrlParts, split_url
from transform.validation import VALID, EntityValidator, Verdict

V_ETL: Final = f"{ARTIFACT}-{__version__}"
# Namespace of the deterministic event ids derived from a request (uuid5).
EVENT_ID_NAMESPACE: Final = uuid.UUID("6f1b0c2e-3a59-5d8e-9a57-2c1e0b8f4d31")
PAGE_VIEW: Final = EVENT_TYPES["pv"]
_URL_PARTS: Final = ("urlscheme", "urlhost", "urlport", "urlpath", "urlquery", "urlfragment")
_PAGE_COLUMNS: Final = tuple(f"page_{part}" for part in _URL_PARTS)
_REFR_COLUMNS: Final = tuple(f"refr_{part}" for part in _URL_PARTS)
_URL_CACHE_SIZE: Final = 10_000
_SCREEN_CACHE_SIZE: Final = 2048  # paths: a log's pages and assets, and its tracker path


SKIP_NOT_TRACKER: Final = Skip("not_tracker")
SKIP_ASSET: Final = Skip("asset")
SKIP_METHOD: Final = Skip("method")

Result = CanonicalEvent | BadRow | Skip

_EMAIL_USER_ID: Final = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


class _StepStopped(Exception):
    """A step dropped the event (a :class:`Skip`) or failed on it (the bad row's message), carried
    from the enrichment loop up to :meth:`Canonicalizer.process`, which knows the request."""

    def __init__(self, outcome: Skip | str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _UrlPart(NamedTuple):
    """A URL's columns (validated once) and its parts, for one distinct URL."""

    part: Part
    parts: UrlParts | None
    url: str
    """The URL as stored: redacted of sensitive parameters."""
    tags: tuple[str, ...]
    """``redacted:<name>`` for each parameter redacted (empty for almost every URL)."""


def resolve_pseudonymization_key(config: TransformConfig, environ: dict[str, str] | None = None) -> bytes | None:
    """The HMAC key when pseudonymization is enabled: from the environment, else the config file."""
    settings = config.pseudonymize
    if not settings.enabled:
        return None
    env = os.environ if environ is None else environ
    key = env.get(settings.key_env) or settings.key
    if not key:
        raise TransformConfigError(
            f"pseudonymization is enabled but no key is set: export {settings.key_env} "
            "(at least 16 bytes) or set transform.pseudonymize.key in an overlay file"
        )
    if len(key.encode("utf-8")) < 16:
        raise TransformConfigError("the pseudonymization key must be at least 16 bytes")
    return key.encode("utf-8")


def default_resolver(config: TransformConfig, s3_fetch: S3Fetch | None = None) -> Resolver:
    """The resolver of ``transform.iglu`` (an S3 registry needs ``s3_fetch``)."""
    try:
        return resolver_from_config(config.iglu, s3_fetch)
    except ConfigError as exc:
        raise TransformConfigError(str(exc)) from exc


def _url_columns(column: str, part_columns: tuple[str, ...], redaction: Redaction | None, url: str) -> _UrlPart:
    """The URL column and its split columns, cleaned, redacted and validated (memoised per distinct URL)."""
    url = clean_text(url)  # tabs and control characters, as every string column (transform.cleaning)
    if not url:
        return _UrlPart(Part({}, ()), None, url, ())
    tags: tuple[str, ...] = ()
    if redaction is not None:
        url, redacted = redaction.apply(url)
        tags = tuple(f"redacted:{name}" for name in redacted)
    columns: dict[str, Any] = {column: url}
    split = split_url(url)
    if split is not None:
        columns.update((c, v) for c, v in zip(part_columns, split, strict=True) if v is not None)
    return _UrlPart(Part(columns, tuple(validate(columns))), split, url, tags)


class Canonicalizer:
    """Turns requests into canonical events (or bad rows, or counted skips)."""

    def __init__(
        self,
        config: TransformConfig,
        *,
        pseudonymization_key: bytes | None = None,
        enrichments: Sequence[Enrichment] | None = None,
        steps: Sequence[Enrichment] | None = None,
        validator: EntityValidator | None = None,
        s3_fetch: S3Fetch | None = None,
    ) -> None:
        """Build the transform of ``config``.

        ``enrichments`` replaces the steps ``config`` would build (``transform.enrichments``;
        the page-URL steps of their own sections, ``transform.cross_navigation``, still run
        first); ``steps`` the custom steps (``transform.steps``); ``validator`` the entity
        validation over ``transform.iglu``'s registries (give one or ``s3_fetch`` when a
        registry is in S3: this package never creates AWS clients).
        Raises TransformConfigError when a step cannot be set up or a custom step cannot be resolved.
        """
        self.config = config
        self._tracker_paths = frozenset(config.tracker_paths)
        self._skip_ext = tuple(ext.lower() for ext in config.page_view_skip_extensions)
        self._pv_methods = frozenset(config.page_view_methods)
        self._collector_name = config.collector_name
        redact = config.redact
        redaction = (
            Redaction(frozenset(name.lower() for name in redact.query_params), redact.emails)
            if redact.enabled
            else None
        )
        self._pages: BoundedCache[str, _UrlPart] = BoundedCache(
            _URL_CACHE_SIZE, partial(_url_columns, "page_url", _PAGE_COLUMNS, redaction)
        )
        self._referrers: BoundedCache[str, _UrlPart] = BoundedCache(
            _URL_CACHE_SIZE, partial(_url_columns, "page_referrer", _REFR_COLUMNS, redaction)
        )
        # Without pseudonymization an e-mail address in user_id leaves the pipeline as is: say so.
        self._flag_email_user_ids = not config.pseudonymize.enabled
        self.notices: Counter[str] = Counter()
        """Counts of what the run summary points out (redacted URL parameters, e-mail-shaped user ids)."""
        if validator is None and config.iglu.validate:
            validator = EntityValidator(default_resolver(config, s3_fetch), config.unknown_schemas)
        self._validator = validator
        # The validator's policy, not the config's: an injected validator decides for itself.
        self._reject_unknown = validator is not None and validator.unknown_schemas == "reject"
        # Entities are validated inside the decoder's memo of each self-describing value.
        self._decoder = QueryDecoder(validator.verdict if validator is not None else None)
        setup = EnrichmentSetup(pseudonymization_key)
        if enrichments is None:
            enrichments = build_enrichments(config, setup)
        # The page-URL steps (the _sp linker) first: Snowplow reads them with the page URL.
        self.enrichments: tuple[Enrichment, ...] = (*build_page_url_steps(config, setup), *enrichments)
        # Bound once: one call site serving several step types would otherwise look the method up per event.
        self._steps = tuple(step.apply for step in self.enrichments)
        self.steps: tuple[Enrichment, ...] = tuple(build_steps(config, setup) if steps is None else steps)
        """The custom steps (``transform.steps``), run in order on each enriched, valid event."""
        self._custom = tuple((step.apply, step.name, Skip(skip_reason(step.name))) for step in self.steps)
        self.screens: BoundedCache[tuple[str, str], Skip | None] = BoundedCache(
            _SCREEN_CACHE_SIZE, lambda request: self.screen(*request)
        )
        """:meth:`screen` memoised per (method, path): the ``RequestScreen`` formats apply."""

    # ------------------------------------------------------------------ entry point
    def screen(self, method: str, path: str) -> Skip | None:
        """Why a request with this method and path would be skipped, or None when it makes an event."""
        if method == "GET" and path in self._tracker_paths:
            return None
        if self.config.non_tracker_policy == "skip":
            return SKIP_NOT_TRACKER
        if method not in self._pv_methods:
            return SKIP_METHOD
        if path.lower().endswith(self._skip_ext):
            return SKIP_ASSET
        return None

    def process(self, request: Request, source: SourceRef, etl_tstamp: int) -> Result:
        """Transform one request.  ``source`` names the object; its line is the request's."""
        method, path = request.method, request.path
        try:  # free unless raised (Python 3.11): only a step raising in the enrichment loop gets here
            if method == "GET" and path in self._tracker_paths:
                return self._tracker_event(request, source, etl_tstamp)
            skip = self.screen(method, path)
            if skip is not None:
                return skip
            return self._request_page_view(request, source, etl_tstamp)
        except _StepStopped as stopped:
            outcome = stopped.outcome
            if type(outcome) is Skip:
                return outcome
            return self._bad(STEP_FAILURE_KIND, [str(outcome)], request, source)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _bad(kind: FailureKind, messages: list[str], request: Request, source: SourceRef) -> BadRow:
        return BadRow(kind, tuple(messages), source.at(request.line_no), raw=request.raw)

    def _base_event(self, collector: int, etl_tstamp: int) -> CanonicalEvent:
        return {
            "collector_tstamp": collector,
            "etl_tstamp": etl_tstamp,
            "v_collector": self.config.collector_name,
            "v_etl": V_ETL,
        }

    def _tracker_event(self, request: Request, source: SourceRef, etl_tstamp: int) -> Result:
        query = request.query
        pairs = query.split("&") if query else []
        errors: list[str] = []
        flags: list[str] = []
        specials: dict[str, str] = {}
        fingerprinted: list[str] = []
        collector = request.collector_tstamp
        event: CanonicalEvent = {  # _base_event, inlined: this runs for every tracker hit
            "collector_tstamp": collector,
            "etl_tstamp": etl_tstamp,
            "v_collector": self._collector_name,
            "v_etl": V_ETL,
        }
        verdicts = self._decoder.apply_query(event, pairs, errors, flags, specials, fingerprinted)
        if errors:
            # One bad row says everything wrong: add what validation finds in the decoded fields.
            errors.extend(validate(event))
            return self._bad(FailureKind.TRACKER_PROTOCOL, errors, request, source)
        if verdicts is not None:
            bad = self._entity_verdict(verdicts, flags, request, source)
            if bad is not None:
                return bad
        page_url = specials.get("url") or request.referer
        # Cleaned as every string column (transform.cleaning): the enrichment parses it as stored.
        useragent = clean_text(specials.get("ua") or request.useragent or "")
        if useragent:
            event["useragent"] = useragent
        # derived_tstamp as Snowplow computes it: true_tstamp when sent; else collector_tstamp
        # corrected for the device clock skew, collector - (dvce_sent - dvce_created), when the
        # device created the event before sending it; else collector_tstamp.
        true_tstamp = event.get("true_tstamp")
        if true_tstamp is not None:
            event["derived_tstamp"] = true_tstamp
        else:
            created, sent = event.get("dvce_created_tstamp"), event.get("dvce_sent_tstamp")
            if created is not None and sent is not None and created < sent:
                event["derived_tstamp"] = max(collector - (sent - created), 0)
            else:
                event["derived_tstamp"] = collector
        if "event_id" not in event:
            event["event_id"] = self._derived_event_id(request, source)
        if self._flag_email_user_ids:
            user_id = event.get("user_id")
            if user_id and "@" in user_id and _EMAIL_USER_ID.fullmatch(user_id):
                flags.append("email_shaped_user_id")
                self.notices["email_shaped_user_id"] += 1
        refr, tracker_ip = specials.get("refr"), specials.get("ip")
        parts, hit = self._enrich(event, request, page_url, refr, useragent, tracker_ip, fingerprinted, flags)
        if flags:
            event["etl_tags"] = clean_text(",".join(flags))[:500]
        return self._finish(event, parts, hit, request, source)

    def _request_page_view(self, request: Request, source: SourceRef, etl_tstamp: int) -> Result:
        event = self._base_event(request.collector_tstamp, etl_tstamp)
        (
            event["event"],
            event["event_vendor"],
            event["event_name"],
            event["event_format"],
            event["event_version"],
        ) = PAGE_VIEW
        event["platform"] = "srv"
        scheme = request.scheme or "https"
        if scheme not in ("http", "https"):
            scheme = "https"
        page_url = None
        if request.host:
            page_url = f"{scheme}://{request.host}{request.path}"
            if request.query:
                page_url += "?" + request.query
        useragent = clean_text(request.useragent) if request.useragent else None
        if useragent:
            event["useragent"] = useragent
        event["derived_tstamp"] = request.collector_tstamp
        event["event_id"] = self._derived_event_id(request, source)
        flags: list[str] = []
        parts, hit = self._enrich(event, request, page_url, request.referer, useragent or None, None, None, flags)
        if flags:
            event["etl_tags"] = clean_text(",".join(flags))[:500]
        return self._finish(event, parts, hit, request, source)

    def _enrich(
        self,
        event: CanonicalEvent,
        request: Request,
        page_url: str | None,
        referrer: str | None,
        useragent: str | None,
        tracker_ip: str | None,
        tracker_pairs: list[str] | None,
        flags: list[str],
    ) -> tuple[list[Part], Hit]:
        """Run the enrichment steps; return the columns to merge (page and referrer URLs, the steps' parts)
        and the hit the custom steps see too.

        The steps see the URLs as stored (redacted), never as sent.  Raises :class:`_StepStopped`
        when a step drops the event or fails on it.
        """
        parts: list[Part] = []
        page = refr = None
        if page_url:
            cached = self._pages[page_url]
            parts.append(cached.part)
            page, page_url = cached.parts, cached.url or None
            if cached.tags:
                flags.extend(cached.tags)
                self.notices["redacted_url_parameters"] += 1
        if referrer:
            cached = self._referrers[referrer]
            parts.append(cached.part)
            refr, referrer = cached.parts, cached.url or None
            if cached.tags:
                flags.extend(tag for tag in cached.tags if tag not in flags)
                self.notices["redacted_url_parameters"] += 1
        hit = Hit(request, page_url, page, referrer, refr, useragent, tracker_ip, tracker_pairs)
        try:
            for apply in self._steps:
                part = apply(event, hit)
                if part is not None:
                    parts.append(part)
        except Exception as exc:  # a step's bug or DropEvent: this event's outcome, never the batch's
            name = next(step.name for step in self.enrichments if step.apply == apply)
            outcome = Skip(skip_reason(name)) if isinstance(exc, DropEvent) else failure_message(name, exc)
            raise _StepStopped(outcome) from exc
        return parts, hit

    def _entity_verdict(
        self, verdicts: dict[str, Verdict | None], flags: list[str], request: Request, source: SourceRef
    ) -> BadRow | None:
        """The bad row the event's entities make, or None (valid, or unknown schemas passed and tagged)."""
        in_order = (verdicts.get("unstruct_event"), verdicts.get("contexts"))
        found = [v for v in in_order if v is not None and v is not VALID]
        if not found:
            return None
        verdict = found[0]
        if len(found) > 1:
            verdict = Verdict(verdict.invalid + found[1].invalid, verdict.unresolved + found[1].unresolved)
        if verdict.unresolved and self._reject_unknown:
            messages = [f"{uri}: no registry has this schema" for uri in verdict.unresolved]
            return self._bad(FailureKind.RESOLUTION_ERROR, [*verdict.invalid, *messages], request, source)
        if verdict.invalid:
            return self._bad(FailureKind.SCHEMA_VIOLATION, list(verdict.invalid), request, source)
        for uri in verdict.unresolved:
            flags.append("unknown_schema:" + uri[len("iglu:") :].replace("/jsonschema/", "/"))
        return None

    @staticmethod
    def _derived_event_id(request: Request, source: SourceRef) -> str:
        if request.request_id:
            name = "request:" + request.request_id
        else:
            # The file name (not its folder or bucket) keeps ids equal between a local copy and S3.
            name = f"line:{source.object.rsplit('/', 1)[-1]}:{request.line_no}"
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))

    def _finish(
        self, event: CanonicalEvent, parts: list[Part], hit: Hit, request: Request, source: SourceRef
    ) -> Result:
        """Validate the event, merge the (already validated) enrichment parts, or fail with all errors;
        then run the custom steps on it, if any."""
        problems = validate(event)
        for _, errors in parts:  # unpacked: a named field costs a lookup per access
            if errors:
                problems.extend(errors)
        if problems:
            return self._bad(FailureKind.SCHEMA_VIOLATION, problems, request, source)
        for columns, _ in parts:
            event.update(columns)
        if self._custom:
            return self._run_custom_steps(event, hit, request, source)
        return event

    def _run_custom_steps(self, event: CanonicalEvent, hit: Hit, request: Request, source: SourceRef) -> Result:
        """The custom steps in order on the enriched event; what they changed is then cleaned and validated.

        A step's :class:`Part` is merged at once, so the next step sees it.
        """
        problems: list[str] = []
        before = event.copy()  # the event is valid here: only what the steps change needs checking again
        for apply, name, dropped in self._custom:
            try:
                part = apply(event, hit)
            except DropEvent:
                return dropped
            except Exception as exc:  # whatever a user's code raises: a bad row naming the step, never the batch's end
                return self._bad(STEP_FAILURE_KIND, [failure_message(name, exc)], request, source)
            if part is not None:
                event.update(part.columns)
                problems.extend(part.errors)
        if event != before:  # one C comparison: a step that only filters changes nothing
            changed = {field: value for field, value in event.items() if before.get(field) is not value}
            for field in [field for field, value in changed.items() if value is None]:
                del event[field], changed[field]  # a step may null a field with None; absent is how an event says null
            cleaned = clean_columns(dict(changed))  # as every string column (transform.cleaning)
            for field in changed.keys() - cleaned.keys():
                del event[field]  # left empty by cleaning: null
            event.update(cleaned)
            problems.extend(problem for problem in validate(cleaned) if problem not in problems)
        if problems:
            return self._bad(FailureKind.SCHEMA_VIOLATION, problems, request, source)
        return event


__all__ = ["Canonicalizer", "Result", "Skip", "resolve_pseudonymization_key"]  # Skip: from pipeline.formats.base
