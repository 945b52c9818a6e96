"""Typed, immutable configuration, resolved once at the edge.

Precedence (highest first): explicit arguments (the CLI passes them as overrides),
environment variables ``CLICKSTREAM_ETL__<SECTION>__<KEY>`` (TOML values), an overlay TOML
file, then the shipped ``config/default.toml``.  Every key is documented in that file;
an unknown key or a value of the wrong type is a :class:`~pipeline.errors.ConfigError`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_type_hints

from pipeline.bundled import data_text
from pipeline.constants import CONFIG_ENV_PREFIX, CONFIG_FILE_ENV
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ExtractConfig:
    format: str
    max_line_bytes: int
    max_decompressed_bytes: int
    default_fields: str


@dataclass(frozen=True)
class IpConfig:
    anonymize: bool
    ipv4_prefix: int
    ipv6_prefix: int


@dataclass(frozen=True)
class UserAgentConfig:
    enabled: bool
    cache_size: int


@dataclass(frozen=True)
class RefererConfig:
    enabled: bool
    dataset: str


@dataclass(frozen=True)
class CampaignConfig:
    enabled: bool
    medium: tuple[str, ...]
    source: tuple[str, ...]
    term: tuple[str, ...]
    content: tuple[str, ...]
    campaign: tuple[str, ...]
    click_ids: Mapping[str, str]


@dataclass(frozen=True)
class PseudonymizeConfig:
    enabled: bool
    fields: tuple[str, ...]
    key_env: str
    key: str

    def __repr__(self) -> str:  # the key never reaches logs
        return f"PseudonymizeConfig(enabled={self.enabled}, fields={self.fields}, key_env={self.key_env!r})"


@dataclass(frozen=True)
class RedactConfig:
    enabled: bool
    query_params: tuple[str, ...]
    emails: bool


@dataclass(frozen=True)
class CrossNavigationConfig:
    enabled: bool
    """Read the ``_sp`` cross-domain linker of the page URL into refr_domain_userid and refr_dvce_tstamp."""


@dataclass(frozen=True)
class BotFlagConfig:
    drop: bool
    """Drop the events of crawlers (a skip counted as ``step:bot_flag``) instead of tagging them."""
    cache_size: int


@dataclass(frozen=True)
class IgluConfig:
    validate: bool
    registries: tuple[str, ...]
    bundled: bool
    cache_size: int
    timeout_ms: int


@dataclass(frozen=True)
class TransformConfig:
    tracker_paths: tuple[str, ...]
    non_tracker_policy: Literal["skip", "page_view"]
    page_view_methods: tuple[str, ...]
    page_view_skip_extensions: tuple[str, ...]
    internal_domains: tuple[str, ...]
    collector_name: str
    fingerprint_algorithm: Literal["md5", "sha1", "sha256"]
    enrichments: tuple[str, ...]
    steps: tuple[str, ...]
    """Custom transform steps (:mod:`transform.steps`): built-in names or ``package.module:attribute``."""
    ip: IpConfig
    useragent: UserAgentConfig
    referer: RefererConfig
    campaign: CampaignConfig
    pseudonymize: PseudonymizeConfig
    redact: RedactConfig
    cross_navigation: CrossNavigationConfig
    bot_flag: BotFlagConfig
    unknown_schemas: Literal["pass", "reject"]
    iglu: IgluConfig


@dataclass(frozen=True)
class LoadConfig:
    compression: str
    compression_level: int
    row_group_size: int
    max_rows_per_file: int
    typed_entities: bool
    compact_after_hours: int
    """Compaction (:mod:`load.compaction`) rewrites an hour partition once its hour ended this long ago."""
    compact_concurrency: int
    """S3 downloads and deletes in flight at once while a partition is compacted."""


@dataclass(frozen=True)
class AwsConfig:
    region: str
    endpoint_url: str
    retry_mode: Literal["standard", "adaptive", "legacy"]
    max_attempts: int
    connect_timeout_ms: int
    read_timeout_ms: int


@dataclass(frozen=True)
class ResourcesConfig:
    log_bucket: str
    output_bucket: str
    raw_stream: str
    events_stream: str
    ledger_table: str
    redshift_firehose: str
    events_prefix: str
    bad_prefix: str
    firehose_prefix: str

    @property
    def output_prefixes(self) -> tuple[str, ...]:
        """Prefixes the pipeline writes to; never read back as logs."""
        return (self.events_prefix, self.bad_prefix, self.firehose_prefix)


@dataclass(frozen=True)
class StreamConfig:
    record_max_bytes: int
    record_target_bytes: int
    put_batch_records: int
    put_max_attempts: int
    put_base_delay_ms: int
    put_max_delay_ms: int
    dedupe_window_days: int
    cross_batch_dedupe: bool
    dedupe_concurrency: int
    timeout_margin_ms: int


@dataclass(frozen=True)
class RedshiftConfig:
    schema: str
    table: str
    staging_table: str
    ledger_table: str
    workgroup: str
    cluster_identifier: str
    database: str
    db_user: str
    secret_arn: str
    copy_role_arn: str
    poll_interval_ms: int
    max_polls: int
    backfill_staging_table: str
    rejects_table: str
    manifest_prefix: str
    load_error_window_minutes: int


@dataclass(frozen=True)
class CollectorConfig:
    """The Lambda collector (``extract/collector.py``); every key is documented in ``config/default.toml``."""

    pixel_paths: tuple[str, ...]
    tp2_paths: tuple[str, ...]
    redirect_paths: tuple[str, ...]
    redirect_domains: tuple[str, ...]
    """Hosts (and their subdomains) ``/r/tp2`` may redirect to; empty turns redirects off."""
    cors_origins: tuple[str, ...]
    cookie_enabled: bool
    cookie_name: str
    cookie_expiry_days: int
    cookie_domains: tuple[str, ...]
    do_not_track_cookie: str
    """``name=value`` of the cookie that makes the collector store nothing; "" for none."""
    max_event_bytes: int
    max_request_bytes: int
    put_max_attempts: int
    put_base_delay_ms: int
    put_max_delay_ms: int
    realtime_table: str
    """The real-time tile's counter table (``extract/realtime.py``); "" turns the counter off."""
    realtime_salt: str
    realtime_window_s: int
    realtime_ttl_s: int
    realtime_cors_origins: tuple[str, ...]


@dataclass(frozen=True)
class PipelineConfig:
    extract: ExtractConfig
    transform: TransformConfig
    load: LoadConfig
    aws: AwsConfig
    resources: ResourcesConfig
    stream: StreamConfig
    redshift: RedshiftConfig
    collector: CollectorConfig


_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "transform.non_tracker_policy": ("skip", "page_view"),
    "transform.fingerprint_algorithm": ("md5", "sha1", "sha256"),
    "transform.unknown_schemas": ("pass", "reject"),
}

T = TypeVar("T")


def default_document() -> dict[str, Any]:
    """The shipped defaults as a TOML document."""
    return tomllib.loads(data_text("default.toml"))


def load_config(
    overlay: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Resolve the configuration: defaults, overlay file, environment, then explicit overrides.

    ``overrides`` maps dotted keys (``"transform.non_tracker_policy"``) to values.
    """
    environ = os.environ if environ is None else environ
    document = default_document()
    overlay = overlay or environ.get(CONFIG_FILE_ENV) or None
    if overlay:
        path = Path(overlay)
        try:
            layer = tomllib.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        _merge(document, layer, str(path))
    for name, raw in environ.items():
        if not name.startswith(CONFIG_ENV_PREFIX):
            continue
        dotted = name[len(CONFIG_ENV_PREFIX) :].lower().replace("__", ".")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare string is accepted as-is
        _set(document, dotted, value, name)
    for dotted, value in (overrides or {}).items():
        _set(document, dotted, value, "argument")
    return _build(PipelineConfig, document, "")


def _merge(base: dict[str, Any], layer: Mapping[str, Any], origin: str, prefix: str = "") -> None:
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{origin}: unknown configuration key {dotted!r}")
        if isinstance(base[key], dict) and isinstance(value, dict) and not dotted.endswith("click_ids"):
            _merge(base[key], value, origin, dotted + ".")
        else:
            base[key] = value


def _set(document: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    *parents, leaf = dotted.split(".")
    node = document
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: unknown configuration key {dotted!r}")
        node = child
    if leaf not in node:
        raise ConfigError(f"{origin}: unknown configuration key {dotted!r}")
    node[leaf] = value


def _build(cls: type[T], document: Mapping[str, Any], prefix: str) -> T:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in document:
        if key not in known:
            raise ConfigError(f"unknown configuration key {prefix}{key!r}")
    for f in fields(cls):  # type: ignore[arg-type]
        dotted = f"{prefix}{f.name}"
        if f.name not in document:
            raise ConfigError(f"missing configuration key {dotted!r}")
        values[f.name] = _coerce(hints[f.name], document[f.name], dotted)
    return cls(**values)


def _coerce(hint: Any, value: Any, dotted: str) -> Any:  # noqa: PLR0911, PLR0912 - one branch per setting type
    if isinstance(hint, type) and is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{dotted} must be a table")
        return _build(hint, value, dotted + ".")
    origin = getattr(hint, "__origin__", None)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{dotted} must be a list of strings, got {value!r}")
        return tuple(value)
    if origin is Mapping:
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{dotted} must be a table of strings")
        return dict(value)
    if origin is Literal:
        choices = _CHOICES.get(dotted, tuple(hint.__args__))
        if value not in choices:
            raise ConfigError(f"{dotted} must be one of {', '.join(choices)}; got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{dotted} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{dotted} must be an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{dotted} must not be negative, got {value}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{dotted} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{dotted}: unsupported setting type {hint!r}")  # pragma: no cover
