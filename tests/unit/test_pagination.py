from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from shared.errors import InvalidRequestError
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor, page_limit, page_of

KINDS = (datetime, uuid.UUID)


def test_cursor_round_trips_typed_values_when_encoded_and_decoded():
    key = (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    cursor = encode_cursor(key)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor, KINDS) == key
    assert decode_cursor(encode_cursor((7, "x")), (int, str)) == (7, "x")


def test_no_cursor_means_first_page_when_absent_or_empty():
    assert decode_cursor(None, KINDS) is None
    assert decode_cursor("", KINDS) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00"]').decode(),
        base64.urlsafe_b64encode(b'["yesterday", "00000000-0000-0000-0000-000000000000"]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        "A" * 5000,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_malformed_cursor_is_a_400_when_decoded(cursor):
    with pytest.raises(InvalidRequestError):
        decode_cursor(cursor, KINDS)


@pytest.mark.parametrize("key", [2**63, -(2**63) - 1, 10**30])
def test_integer_cursor_is_a_400_when_beyond_bigint(key):
    with pytest.raises(InvalidRequestError):
        decode_cursor(encode_cursor((key,)), (int,))


def test_integer_cursor_is_accepted_when_at_the_ends_of_bigint():
    for key in (2**63 - 1, -(2**63)):
        assert decode_cursor(encode_cursor((key,)), (int,)) == (key,)


def test_limit_defaults_to_50_and_is_capped_at_200_when_given():
    assert page_limit(None) == DEFAULT_LIMIT == 50
    assert page_limit(10) == 10
    assert page_limit(10_000) == MAX_LIMIT == 200
    with pytest.raises(InvalidRequestError):
        page_limit(0)


def test_page_has_a_next_cursor_only_when_an_extra_row_was_fetched():
    rows = [(i, f"r{i}") for i in range(4)]
    page = page_of(rows, 3, key=lambda r: (r[0],))
    assert page.items == rows[:3] and decode_cursor(page.next_cursor, (int,)) == (2,)
    last = page_of(rows[:3], 3, key=lambda r: (r[0],))
    assert last.items == rows[:3] and last.next_cursor is None
    assert page_of([], 3, key=lambda r: (r[0],)).next_cursor is None
