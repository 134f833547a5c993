"""The aggregator: exactly-once totals from SQS batches, redrives and poison records."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.events.usage import UsageEvent
from shared.services.usage import record_usage
from tests.helpers import FakeLambdaContext, load_event
from tests.usage_support import (
    daily_rollups,
    expected_rollups,
    expected_thread_totals,
    make_thread,
    make_user,
    sqs_event,
    thread_totals,
)


def _event(user_id, conversation_id, thread_id, **overrides) -> UsageEvent:
    values = {
        "user_id": user_id,
        "conversation_id": conversation_id,
        "thread_id": thread_id,
        "model": "anthropic.claude-3-haiku",
        "provider": "bedrock",
        "tokens_input": 100,
        "tokens_output": 40,
        "tokens_cached": 10,
        "cost_usd": Decimal("0.00012345"),
        "occurred_at": datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return UsageEvent(**values)


def test_real_sqs_event_is_recorded_in_rollups_when_its_records_are_new(app_container, db):
    from functions.usage_aggregator import lambda_handler

    response = lambda_handler(load_event("sqs_usage_batch"), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert db.execute("SELECT count(*) FROM model_usage").fetchone()[0] == 2
    row = db.execute("SELECT requests_count, prompt_tokens, total_tokens, cost_usd FROM usage_daily").fetchone()
    assert row == (2, 420, 618, Decimal("0.00035250"))


def test_batch_adds_only_new_events_to_thread_totals_when_some_were_recorded_before(app_container, db):
    user = make_user(db)
    conv, thread = make_thread(db, user)
    events = [_event(user, conv, thread, tokens_input=i + 1) for i in range(5)]
    first = record_usage(app_container.db, events[:3])
    second = record_usage(app_container.db, events)  # three of these are redeliveries
    assert (first.inserted, second.inserted, second.duplicates) == (3, 2, 3)
    totals = thread_totals(db, thread)
    assert totals == expected_thread_totals(events)[thread]
    assert daily_rollups(db) == expected_rollups(events)


def test_redriven_message_changes_nothing_when_its_event_was_recorded(app_container, db):
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    event = _event(user, conv, thread)
    assert lambda_handler(sqs_event([event.model_dump_json()]), FakeLambdaContext()) == {"batchItemFailures": []}
    before = (thread_totals(db, thread), daily_rollups(db))
    # A redrive from the dead-letter queue: a new message id, the same body and event id.
    redrive = sqs_event([event.model_dump_json()], message_ids=[str(uuid.uuid4())])
    assert lambda_handler(redrive, FakeLambdaContext()) == {"batchItemFailures": []}
    assert (thread_totals(db, thread), daily_rollups(db)) == before
    assert db.execute("SELECT count(*) FROM model_usage").fetchone()[0] == 1


def test_only_the_poison_record_is_reported_when_one_of_ten_is_malformed(app_container, db):
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    events = [_event(user, conv, thread) for _ in range(9)]
    bodies = [e.model_dump_json() for e in events]
    bodies.insert(4, json.dumps({"version": 1, "model": "x", "provider": "y", "tokens_input": -5}))
    sqs = sqs_event(bodies)
    response = lambda_handler(sqs, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": sqs["Records"][4]["messageId"]}]}
    assert thread_totals(db, thread)["requests"] == 9
    assert thread_totals(db, thread) == expected_thread_totals(events)[thread]


@pytest.mark.parametrize(
    "overflow",
    [
        {"tokens_input": 3_000_000_000},
        {"tokens_input": 2**30, "tokens_output": 2**30},  # each fits, their total_tokens does not
        {"latency_ms": 2**31},
        {"message_id": 2**63},
    ],
    ids=["tokens", "total-tokens", "latency", "message-id"],
)
def test_only_the_record_is_reported_when_a_number_is_too_large_for_its_column(app_container, db, overflow):
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    good = _event(user, conv, thread)
    bad = good.model_dump(mode="json") | {"event_id": str(uuid.uuid4())} | overflow
    sqs = sqs_event([good.model_dump_json(), json.dumps(bad)])
    response = lambda_handler(sqs, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": sqs["Records"][1]["messageId"]}]}
    assert thread_totals(db, thread) == expected_thread_totals([good])[thread]


@pytest.mark.parametrize("field", ["model", "provider", "classification"])
def test_only_the_record_is_reported_when_a_text_holds_a_nul_character(app_container, db, field):
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    good = _event(user, conv, thread)
    bad = good.model_dump(mode="json") | {"event_id": str(uuid.uuid4()), field: "x\u0000y"}
    sqs = sqs_event([good.model_dump_json(), json.dumps(bad)])
    response = lambda_handler(sqs, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": sqs["Records"][1]["messageId"]}]}
    assert thread_totals(db, thread) == expected_thread_totals([good])[thread]


def test_totals_sum_past_the_integer_range_when_events_are_as_large_as_their_columns(app_container, db):
    user = make_user(db)
    conv, thread = make_thread(db, user)
    events = [_event(user, conv, thread, tokens_input=2**31 - 1, tokens_output=0, tokens_cached=2**31 - 1)] * 3
    events = [e.model_copy(update={"event_id": uuid.uuid4()}) for e in events]
    assert record_usage(app_container.db, events).inserted == 3
    assert thread_totals(db, thread) == expected_thread_totals(events)[thread]
    assert daily_rollups(db) == expected_rollups(events)


def test_every_record_is_reported_when_the_whole_batch_is_malformed(app_container, db):
    from functions.usage_aggregator import lambda_handler

    sqs = sqs_event(["not json", '{"version": 2}'])
    response = lambda_handler(sqs, FakeLambdaContext())
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        r["messageId"] for r in sqs["Records"]
    )


def test_usage_is_kept_with_null_references_when_the_user_and_thread_were_deleted(app_container, db):
    user = make_user(db)
    conv, thread = make_thread(db, user)
    event = _event(user, conv, thread, message_id=987654)
    db.execute("DELETE FROM users WHERE id = %s", (user,))  # cascades to the conversation and thread
    assert record_usage(app_container.db, [event]).inserted == 1
    row = db.execute("SELECT user_id, conversation_id, thread_id, message_id FROM model_usage").fetchone()
    assert row == (None, None, None, None)
    assert list(daily_rollups(db))[0][1] is None


@pytest.mark.parametrize("together", [False, True], ids=["one-at-a-time", "in-one-statement"])
def test_rollups_of_deleted_users_are_summed_exactly_when_two_had_usage_on_the_same_day_and_model(
    app_container, db, together
):
    alice, bob, carol = make_user(db), make_user(db), make_user(db)
    events = [
        _event(alice, None, None, tokens_input=7, cost_usd=Decimal("0.00000013"), cost_avoided_usd=Decimal("0.5")),
        _event(bob, None, None, tokens_output=3, cost_usd=Decimal("0.12345678"), cache_hit=True),
        _event(bob, None, None, model="amazon.nova-micro", cost_usd=Decimal("0.00000001")),
        _event(carol, None, None),
    ]
    record_usage(app_container.db, events)
    # Bob had usage on the same day, model and provider as alice.
    if together:
        db.execute("DELETE FROM users WHERE id = ANY(%s)", ([alice, bob],))
    else:
        db.execute("DELETE FROM users WHERE id = %s", (alice,))
        db.execute("DELETE FROM users WHERE id = %s", (bob,))
    erased = [e.model_copy(update={"user_id": None}) if e.user_id in (alice, bob) else e for e in events]
    assert daily_rollups(db) == expected_rollups(erased)
    # Each deleted user's rows stay apart under a key of their own (migration 0551), so reports still count two.
    kept = db.execute(
        "SELECT model_name, count(DISTINCT deleted_user_key) FROM usage_daily WHERE user_id IS NULL"
        " GROUP BY model_name ORDER BY model_name"
    ).fetchall()
    assert kept == [("amazon.nova-micro", 1), ("anthropic.claude-3-haiku", 2)]


def test_same_event_twice_in_one_batch_counts_once_when_delivered_together(app_container, db):
    user = make_user(db)
    conv, thread = make_thread(db, user)
    event = _event(user, conv, thread)
    assert record_usage(app_container.db, [event, event]).inserted == 1
    assert thread_totals(db, thread)["requests"] == 1


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-15:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc"],
)
def test_only_the_record_is_reported_when_its_time_is_outside_the_years_a_date_holds_in_utc(
    app_container, db, occurred_at
):
    # Stored, such a time made the thread's last_usage_at (and the day's rollup) a value the driver cannot
    # read back: every later read of the thread failed.
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    good = _event(user, conv, thread)
    bad = good.model_dump(mode="json") | {"event_id": str(uuid.uuid4()), "occurred_at": occurred_at}
    sqs = sqs_event([good.model_dump_json(), json.dumps(bad)])
    response = lambda_handler(sqs, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": sqs["Records"][1]["messageId"]}]}
    assert thread_totals(db, thread) == expected_thread_totals([good])[thread]


def test_record_counts_on_its_utc_day_when_its_offset_is_beyond_what_postgresql_parses(app_container, db):
    # +23:59 is a valid ISO offset; PostgreSQL takes at most +-15:59, so the batch's one transaction failed and
    # every record of the batch went back to the queue, again and again.
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    good = _event(user, conv, thread)
    far = good.model_dump(mode="json") | {"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-23T10:00:00+23:59"}
    response = lambda_handler(sqs_event([good.model_dump_json(), json.dumps(far)]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    days = db.execute("SELECT day, requests_count FROM usage_daily ORDER BY day").fetchall()
    assert days == [(date(2026, 11, 22), 2)]


def test_events_count_on_their_own_utc_day_and_month_when_delivered_after_midnight_in_reverse_order(app_container, db):
    # A late event still counts where it happened: the last instant of November (nanoseconds cut off, not rounded into
    # December) stays in November, whatever arrived before it.
    from functions.usage_aggregator import lambda_handler

    user = make_user(db)
    conv, thread = make_thread(db, user)
    december = _event(user, conv, thread, occurred_at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    november = december.model_dump(mode="json") | {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-30T23:59:59.9999999Z",
    }
    lambda_handler(sqs_event([december.model_dump_json()]), FakeLambdaContext())
    assert lambda_handler(sqs_event([json.dumps(november)]), FakeLambdaContext()) == {"batchItemFailures": []}
    days = db.execute("SELECT day, requests_count FROM usage_daily ORDER BY day").fetchall()
    assert days == [(date(2026, 11, 30), 1), (date(2026, 12, 1), 1)]
    assert thread_totals(db, thread)["last_usage_at"] == datetime(2026, 12, 1, tzinfo=UTC)


def test_time_without_an_offset_is_read_as_utc_when_the_session_time_zone_is_not_utc(app_env, monkeypatch, db):
    # libpq's PGTZ sets the session TimeZone, as a laptop's embedded server or a non-default parameter group does.
    monkeypatch.setenv("PGTZ", "Pacific/Kiritimati")  # UTC+14
    from functions.usage_aggregator import lambda_handler
    from shared.bootstrap import container, get_settings

    get_settings.cache_clear()
    container.cache_clear()
    try:
        body = {"model": "m", "provider": "p", "occurred_at": "2026-11-22T10:00:00"}
        assert lambda_handler(sqs_event([json.dumps(body)]), FakeLambdaContext()) == {"batchItemFailures": []}
    finally:
        container().db.close()
        container.cache_clear()
        get_settings.cache_clear()
    assert db.execute("SELECT day FROM usage_daily").fetchall() == [(date(2026, 11, 22),)]


def test_only_the_record_is_reported_when_the_database_refuses_an_event_that_passed_validation(app_container, db):
    # A rule of the data model the event's validation does not know (here one added for the test; in production
    # a value PostgreSQL refuses that the event model let through): the batch's one transaction failed on every
    # delivery, holding back every other event of the batch until all of them reached the dead-letter queue.
    from functions.usage_aggregator import lambda_handler

    db.execute("ALTER TABLE model_usage ADD CONSTRAINT test_refuses_poison CHECK (model_name <> 'poison')")
    user = make_user(db)
    conv, thread = make_thread(db, user)
    events = [_event(user, conv, thread, tokens_input=i + 1) for i in range(4)]
    poison = _event(user, conv, thread, model="poison")
    bodies = [e.model_dump_json() for e in events]
    bodies.insert(2, poison.model_dump_json())
    bodies.append("not json")
    sqs = sqs_event(bodies)
    response = lambda_handler(sqs, FakeLambdaContext())
    failed = sorted(f["itemIdentifier"] for f in response["batchItemFailures"])
    assert failed == sorted([sqs["Records"][2]["messageId"], sqs["Records"][5]["messageId"]])
    assert thread_totals(db, thread) == expected_thread_totals(events)[thread]
    assert daily_rollups(db) == expected_rollups(events)
    # Delivered again (the poison record alone, or the whole batch), nothing is counted twice.
    assert lambda_handler(sqs, FakeLambdaContext())["batchItemFailures"] == response["batchItemFailures"]
    assert thread_totals(db, thread) == expected_thread_totals(events)[thread]


def test_refused_event_is_logged_whole_when_it_was_recorded_without_a_queue(app_container, db, caplog):
    # Recorded synchronously (no queue, or SQS unreachable), a refused event has no dead-letter queue to wait in:
    # its log line is all that is left of it, and an id alone cannot be sent again once the cause is fixed.
    db.execute("ALTER TABLE model_usage ADD CONSTRAINT test_refuses_poison CHECK (model_name <> 'poison')")
    poison = _event(None, None, None, model="poison")
    outcome = record_usage(app_container.db, [_event(None, None, None), poison])
    assert (outcome.inserted, outcome.refused) == (1, frozenset({poison.event_id}))
    (entry,) = [r for r in caplog.records if r.getMessage() == "usage event refused by the database"]
    assert UsageEvent.model_validate(json.loads(json.dumps(getattr(entry, "event", None)))) == poison
