"""Percent-decoding as ``urllib.parse.unquote`` does it, without its detour for ASCII text.

Tracker parameters and CloudFront's header values are percent-decoded once per distinct
value.  ``unquote`` splits its text into ASCII runs and decodes each with
``unquote_to_bytes``; an ASCII text (nearly all of them: what is not ASCII gets encoded) is
one run, so it goes to ``unquote_to_bytes`` at once.  ``tests/unit/test_percent_decoding.py``
compares both callers with urllib on crafted escapes.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes


def unquote_strict(text: str) -> str:
    """``unquote(text, errors="strict")``: raises :class:`UnicodeDecodeError` where the escapes are not UTF-8."""
    if text.isascii():
        return unquote_to_bytes(text).decode("utf-8")
    return unquote(text, errors="strict")


__all__ = ["unquote_strict"]
