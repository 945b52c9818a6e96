"""The percent-decoding fast paths give exactly what urllib gives, value or failure."""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.formats.cloudfront import _unescape
from transform.tracker import ParamDecodeError, decode

# Escapes of every kind (valid UTF-8 sequences, lone continuation bytes, cut sequences, bad hex,
# a bare %), pluses, ASCII and not: the cases where a decoder could differ.
_PIECES = st.one_of(
    st.sampled_from(["%", "%2", "%zz", "%41", "%c3%a9", "%C3%A9", "%e2%82%ac", "%f0%9f%98%80", "%c3", "%a9", "%ff"]),
    st.sampled_from(["+", " ", "a", "=", "&", "%2B", "%25", "%20", "é", "€", "😀", "\x00"]),
    st.text(max_size=4),
)
texts = st.lists(_PIECES, max_size=12).map("".join)


def _urllib_decode(value: str) -> str | type[Exception]:
    try:
        return unquote_plus(value, errors="strict")
    except UnicodeDecodeError:
        return ParamDecodeError


def _ours(value: str) -> str | type[Exception]:
    try:
        return decode(value)
    except ParamDecodeError:
        return ParamDecodeError


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(texts)
@example("%c3%a9+%e2%82%ac")
@example("%c3é%a9")  # an escape split by a non-ASCII character: each ASCII run alone fails
@example("%ff")
def test_tracker_values_decode_as_unquote_plus_does(value: str) -> None:
    assert _ours(value) == _urllib_decode(value)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(texts)
@example("Mozilla/5.0%20(X11;%20Linux)")
@example("%ff%20")
def test_header_values_unescape_as_unquote_does(value: str) -> None:
    try:
        expected = unquote(value, errors="strict")
    except UnicodeDecodeError:
        expected = value  # kept as logged
    assert _unescape(value) == expected
