"""Iglu schema resolution: schema URIs, registries, and a resolver over them in priority order.

A self-describing entity names its schema as ``iglu:vendor/name/format/version``; a
registry keeps schemas at ``schemas/{vendor}/{name}/{format}/{version}`` (Iglu's static
layout), in a folder, in S3 or behind HTTP.  The :class:`Resolver` asks its registries in
order and remembers the answers (found or not) in a bounded cache, so a schema costs one
lookup per process.  The package ships a subset of Iglu Central (``clickstream_etl_data``'s
``iglu/`` folder; provenance in ``config/iglu/IGLU.md``), asked after the configured ones.

Registries never raise for a schema they do not have (``None``); trouble reaching one
(a timeout, a 5xx, throttling) raises :class:`RegistryUnavailableError`, which is
retryable, and is not remembered.  The S3 registry takes a ``fetch`` callable so that this
module never needs boto3 (the wiring in :mod:`pipeline.aws` gives it one).
"""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

from pipeline.bundled import DATA_PACKAGE
from pipeline.cache import BoundedCache
from pipeline.config import IgluConfig
from pipeline.errors import ConfigError, TransientError

IGLU_URI: Final = re.compile(
    r"iglu:([a-zA-Z0-9._-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z][a-zA-Z0-9_-]*)/([1-9][0-9]*|0)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\Z"
)


class SchemaKey(NamedTuple):
    """An Iglu schema's coordinates; ``model`` is the major version (a table per model in a warehouse)."""

    vendor: str
    name: str
    format: str
    model: int
    revision: int
    addition: int

    @classmethod
    def parse(cls, uri: str) -> SchemaKey | None:
        """The key of ``iglu:vendor/name/format/M-R-A``; None when ``uri`` is not one.

        Memoised (keys are immutable): a log names a handful of schemas, once per entity.
        """
        return _PARSED_KEYS[uri]

    @property
    def version(self) -> str:
        return f"{self.model}-{self.revision}-{self.addition}"

    @property
    def uri(self) -> str:
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def path(self) -> str:
        """Where a static registry keeps it, under its root."""
        return f"schemas/{self.vendor}/{self.name}/{self.format}/{self.version}"


def _parse_key(uri: str) -> SchemaKey | None:
    match = IGLU_URI.match(uri)
    if match is None:
        return None
    vendor, name, fmt, model, revision, addition = match.groups()
    return SchemaKey(vendor, name, fmt, int(model), int(revision), int(addition))


_PARSED_KEYS: Final[BoundedCache[str, SchemaKey | None]] = BoundedCache(4096, _parse_key, max_key_length=512)


class RegistryUnavailableError(TransientError):
    """A registry could not be asked (timeout, 5xx, throttling): retry; nothing was decided."""


class Registry(Protocol):
    name: str

    def lookup(self, key: SchemaKey) -> dict[str, Any] | None:
        """The schema, or None when this registry does not have it."""
        ...


def _parse_schema(text: bytes | str) -> dict[str, Any] | None:
    """A registry's file as a schema; a file that is not a JSON object counts as absent."""
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return schema if isinstance(schema, dict) else None


class FolderRegistry:
    """A static registry in a local folder (or the package's bundled one)."""

    def __init__(self, root: Traversable | Path, name: str | None = None) -> None:
        self._root = root
        self.name = name or str(root)

    def lookup(self, key: SchemaKey) -> dict[str, Any] | None:
        path = self._root.joinpath(*key.path.split("/"))
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise RegistryUnavailableError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return _parse_schema(data)


class HttpRegistry:
    """A static registry over HTTP(S), as Iglu Central and ``iglu-server``'s static paths serve it."""

    def __init__(self, base_url: str, timeout_s: float = 5.0, opener: Callable[..., Any] | None = None):
        """``opener`` is ``urllib.request.urlopen`` unless given (imported here: it costs about
        25 ms of start-up, paid only where an HTTP registry is configured)."""
        if opener is None:
            import urllib.request

            opener = urllib.request.urlopen
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s
        self._open = opener
        self.name = self._base

    def lookup(self, key: SchemaKey) -> dict[str, Any] | None:
        url = f"{self._base}/{key.path}"
        try:
            with self._open(url, timeout=self._timeout) as response:  # noqa: S310 - a configured registry URL
                return _parse_schema(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):  # static S3 websites answer 403 for a missing key
                return None
            if exc.code == 429 or exc.code >= 500:
                raise RegistryUnavailableError(f"{url}: HTTP {exc.code}") from exc
            return None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RegistryUnavailableError(f"{url}: {getattr(exc, 'reason', exc)}") from exc


class S3Registry:
    """A static registry in S3; ``fetch(key)`` returns the object's bytes or None when it is absent
    (and raises RegistryUnavailableError for anything retryable)."""

    def __init__(self, bucket: str, prefix: str, fetch: Callable[[str, str], bytes | None]) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._fetch = fetch
        self.name = f"s3://{bucket}/{self._prefix}"

    def lookup(self, key: SchemaKey) -> dict[str, Any] | None:
        object_key = f"{self._prefix}/{key.path}" if self._prefix else key.path
        data = self._fetch(self._bucket, object_key)
        return None if data is None else _parse_schema(data)


def bundled_registry() -> FolderRegistry:
    """The Iglu Central subset shipped with the package."""
    return FolderRegistry(resources.files(DATA_PACKAGE).joinpath("iglu"), name="bundled Iglu Central")


@dataclass(frozen=True)
class Resolved:
    key: SchemaKey
    schema: dict[str, Any] | None
    """None when no registry has it."""
    registry: str | None


class Resolver:
    """Asks registries in order; remembers every answer (up to ``cache_size`` schemas)."""

    def __init__(self, registries: Sequence[Registry], cache_size: int = 1000) -> None:
        self.registries = tuple(registries)
        self._cache: BoundedCache[SchemaKey, Resolved] = BoundedCache(cache_size, self._ask)

    def resolve(self, key: SchemaKey) -> Resolved:
        """The schema of ``key`` (raises RegistryUnavailableError when a registry cannot be asked)."""
        return self._cache[key]

    def _ask(self, key: SchemaKey) -> Resolved:
        for registry in self.registries:
            schema = registry.lookup(key)
            if schema is not None:
                return Resolved(key, schema, registry.name)
        return Resolved(key, None, None)


S3Fetch = Callable[[str, str], bytes | None]


def resolver_from_settings(
    registries: Sequence[str],
    *,
    bundled: bool,
    cache_size: int,
    timeout_s: float = 5.0,
    s3_fetch: S3Fetch | None = None,
) -> Resolver:
    """The resolver of ``[transform.iglu]``: each entry a folder, an ``http(s)://`` base URL or an
    ``s3://bucket/prefix``, in priority order, then the bundled schemas when ``bundled``.

    Raises ConfigError for an S3 registry when no ``s3_fetch`` is given (the caller has no
    AWS access) or an entry that is none of these.
    """
    built: list[Registry] = []
    for entry in registries:
        if entry.startswith(("http://", "https://")):
            built.append(HttpRegistry(entry, timeout_s))
        elif entry.startswith("s3://"):
            if s3_fetch is None:
                raise ConfigError(f"transform.iglu.registries: {entry} needs S3 access, which is not given here")
            bucket, _, prefix = entry[len("s3://") :].partition("/")
            if not bucket:
                raise ConfigError(f"transform.iglu.registries: {entry!r} names no bucket")
            built.append(S3Registry(bucket, prefix, s3_fetch))
        else:
            folder = Path(entry).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"transform.iglu.registries: {entry!r} is not a folder, an http(s):// or s3:// URL")
            built.append(FolderRegistry(folder))
    if bundled:
        built.append(bundled_registry())
    return Resolver(built, cache_size)


def resolver_from_config(iglu: IgluConfig, s3_fetch: S3Fetch | None = None) -> Resolver:
    """The resolver of a ``[transform.iglu]`` section (every stage that reads schemas uses this one)."""
    return resolver_from_settings(
        iglu.registries,
        bundled=iglu.bundled,
        cache_size=iglu.cache_size,
        timeout_s=iglu.timeout_ms / 1000,
        s3_fetch=s3_fetch,
    )


def family_versions(resolver: Resolver, newest: Iterable[SchemaKey]) -> list[tuple[SchemaKey, dict[str, Any]]]:
    """Every resolvable version of a family and major version, up to the newest of ``newest``.

    A warehouse table (or a lake column) is the merge of a family's versions; registries
    cannot list their schemas, so the versions before the newest one seen are probed: each
    earlier revision's additions from 0 until the first one no registry has, then the
    newest revision's up to its addition.  The keys in ``newest`` are always included when
    they resolve, so a gap in a registry never drops a version that events use.  The result
    depends only on the registries and the newest version, never on which other versions a
    batch happened to hold, so two loads that see the same newest version build the same
    model.  Raises ``ValueError`` when ``newest`` is empty or mixes families.
    """
    seen = sorted(set(newest), key=lambda k: (k.revision, k.addition))
    if not seen:
        raise ValueError("family_versions needs at least one schema key")
    top = seen[-1]
    if any((k.vendor, k.name, k.format, k.model) != (top.vendor, top.name, top.format, top.model) for k in seen):
        raise ValueError("family_versions: the keys are not of one family and major version")
    candidates: list[SchemaKey] = []
    for revision in range(top.revision + 1):
        addition = 0
        while revision < top.revision or addition <= top.addition:
            key = top._replace(revision=revision, addition=addition)
            if resolver.resolve(key).schema is None:
                break
            candidates.append(key)
            addition += 1
    found: dict[SchemaKey, dict[str, Any]] = {}
    for key in (*candidates, *seen):
        schema = resolver.resolve(key).schema
        if schema is not None:
            found[key] = schema
    return sorted(found.items(), key=lambda pair: (pair[0].revision, pair[0].addition))
