from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from shared.errors import InvalidRequestError
from shared.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    JsonPage,
    Page,
    answer_bytes,
    decode_cursor,
    decode_scoped_cursor,
    encode_cursor,
    page_limit,
    page_of,
    page_within,
)

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


def test_a_filtered_pages_cursor_goes_on_only_under_the_same_filter_when_decoded():
    key = (datetime(2026, 1, 2, tzinfo=UTC), uuid.uuid4())
    filtered = JsonPage.of("[]", key, "group,room").next_cursor
    plain = JsonPage.of("[]", key).next_cursor
    assert plain == encode_cursor(key) and filtered != plain
    assert decode_scoped_cursor(filtered, KINDS, "group,room") == key
    assert decode_scoped_cursor(plain, KINDS, None) == key
    assert decode_scoped_cursor(None, KINDS, "group") is None
    for cursor, scope in ((filtered, "group"), (filtered, None), (plain, "group,room")):
        with pytest.raises(InvalidRequestError) as refused:
            decode_scoped_cursor(cursor, KINDS, scope)
        assert refused.value.extra == {"reason": "cursor_filter_mismatch"}


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !!",
        encode_cursor(("2026-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000", 7)),
        encode_cursor(("2026-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000", "group", "room")),
        encode_cursor(("2026-01-01T00:00:00+00:00",)),
    ],
)
def test_malformed_filtered_cursor_is_a_400_without_a_reason_when_decoded(cursor):
    with pytest.raises(InvalidRequestError) as refused:
        decode_scoped_cursor(cursor, KINDS, "group")
    assert refused.value.extra == {}


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


class Blob(BaseModel):
    name: str
    text: str


def test_answer_bytes_counts_the_escapes_of_the_body_and_of_lambdas_answer_when_measuring():
    # A quote is \" in the body and \\\" in Lambda's answer; a non-ASCII letter \u00e9, then \\u00e9.
    plain, quoted, accented = (answer_bytes(Blob(name="n", text=t * 1000)) for t in ("a", '"', "\u00e9"))
    assert quoted - plain == 3 * 1000 and accented - plain == 6 * 1000


def test_page_within_keeps_one_item_at_least_and_points_its_cursor_at_the_last_kept_when_items_are_large():
    items = [Blob(name=f"b{n}", text="x" * 400) for n in range(5)]
    page = page_within(Page[Blob](items=items, next_cursor=None), lambda b: (b.name,), max_bytes=1000)
    assert [b.name for b in page.items] == ["b0", "b1"] and decode_cursor(page.next_cursor, (str,)) == ("b1",)
    alone = page_within(Page[Blob](items=items, next_cursor=None), lambda b: (b.name,), max_bytes=10)
    assert [b.name for b in alone.items] == ["b0"]
    small = Page[Blob](items=items[:2], next_cursor="kept")
    assert page_within(small, lambda b: (b.name,), max_bytes=10_000) == small
