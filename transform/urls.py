"""URLs as Snowplow stores them: split into scheme, host, port (80/443 when absent), path,
query and fragment; and redacted of the parameters that carry secrets or personal data."""

from __future__ import annotations

import re
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


REDACTED = "REDACTED"
"""What a redacted parameter's value becomes (its name stays, so the URL still says what was there)."""

_EMAIL_RE = re.compile(r"[^@\s/?#&=:]+@[^@\s/?#&=:]+\.[A-Za-z]{2,}")


class Redaction(NamedTuple):
    """The parameters whose values leave no URL: by name (lower case), and any e-mail-shaped value."""

    names: frozenset[str]
    emails: bool

    def apply(self, url: str) -> tuple[str, tuple[str, ...]]:
        """``url`` with the values of sensitive query and fragment parameters replaced by
        :data:`REDACTED`, and the names of the parameters redacted (each once, in order)."""
        if "=" not in url:
            return url, ()
        base, hash_mark, fragment = url.partition("#")
        path, question_mark, query = base.partition("?")
        redacted: list[str] = []
        query = self._pairs(query, redacted) if question_mark else query
        fragment = self._pairs(fragment, redacted) if hash_mark and "=" in fragment else fragment
        if not redacted:
            return url, ()
        return f"{path}{question_mark}{query}{hash_mark}{fragment}", tuple(dict.fromkeys(redacted))

    def _pairs(self, text: str, redacted: list[str]) -> str:
        changed = False
        pairs = text.split("&")
        for index, pair in enumerate(pairs):
            name, equals, value = pair.partition("=")
            if not equals or not value or value == REDACTED:
                continue
            key = (unquote_plus(name) if "%" in name or "+" in name else name).lower()
            if key in self.names or (
                self.emails and ("@" in value or "%40" in value) and _EMAIL_RE.search(unquote_plus(value))
            ):
                pairs[index] = f"{name}={REDACTED}"
                redacted.append(key)
                changed = True
        return "&".join(pairs) if changed else text
