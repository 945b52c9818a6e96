"""URL splitting as Snowplow stores it: scheme, host, port (80/443 when absent), path, query, fragment."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote_plus, urlsplit


class UrlParts(NamedTuple):
    scheme: str | None
    host: str | None
    port: int | None
    path: str | None
    query: str | None
    fragment: str | None


_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
def split_url(url: str) -> UrlParts | None:
    """Split an absolute URL; None when it has no scheme and host or cannot be parsed."""
    try:
        result = urlsplit(url.strip())
        host = result.hostname
        port = result.port
    except ValueError:  # e.g. "http://[::1" or a non-numeric port
        return None
    scheme = result.scheme.lower() or None
    if not scheme or not host:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 80)
    return UrlParts(
        scheme,
        host,
        port,
        result.path or None,
        result.query or None,
        result.fragment or None,
    )


def query_params(query: str | None) -> dict[str, str]:
    """Decode a query string into a dict (first value wins); tolerant of malformed pairs."""
    params: dict[str, str] = {}
    if not query:
        return params
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in params:
            continue
        params[name] = unquote_plus(value) if ("%" in value or "+" in value) else value
    return params
