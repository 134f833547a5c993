"""Property: however events are duplicated, ordered, batched and split across two concurrent consumers,
thread totals and daily rollups equal the sums over unique event ids."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events.usage import UsageEvent
from shared.services.usage import record_usage
from tests.usage_support import (
    daily_rollups,
    expected_rollups,
    expected_thread_totals,
    make_thread,
    make_user,
    thread_totals,
)

BASE = datetime(2026, 11, 20, tzinfo=UTC)


@st.composite
def scenarios(draw):
    """(event specs, delivery plan): specs index into users/threads made per example."""
    specs = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "user": st.integers(0, 1),
                    "thread": st.one_of(st.none(), st.integers(0, 2)),
                    "model": st.sampled_from(["m-small", "m-large"]),
                    "minutes": st.integers(0, 3 * 24 * 60),  # spans several UTC days
                    "tokens_input": st.integers(0, 5000),
                    "tokens_output": st.integers(0, 5000),
                    "tokens_cached": st.integers(0, 100),
                    "cost": st.decimals(min_value=0, max_value=2, places=8),
                    "cache_hit": st.booleans(),
                    "copies": st.integers(1, 5),
                }
            ),
            min_size=1,
            max_size=25,
        )
    )
    deliveries = [i for i, spec in enumerate(specs) for _ in range(spec["copies"])]
    order = draw(st.permutations(deliveries))
    cuts = draw(st.lists(st.integers(1, 10), min_size=len(order), max_size=len(order)))
    batches, start = [], 0
    for size in cuts:
        if start >= len(order):
            break
        batches.append(order[start : start + size])
        start += size
    consumer = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    return specs, batches, consumer


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_totals_equal_sums_over_unique_events_when_delivered_repeatedly_to_two_consumers(app_container, db, scenario):
    specs, batches, consumer = scenario
    # Fresh users and threads per example: the comparison below only looks at rows keyed by them.
    users = [make_user(db) for _ in range(2)]
    threads = [make_thread(db, users[i % 2]) for i in range(3)]
    events = []
    for spec in specs:
        conv, thread = threads[spec["thread"]] if spec["thread"] is not None else (None, None)
        events.append(
            UsageEvent(
                user_id=users[spec["user"]],
                conversation_id=conv,
                thread_id=thread,
                model=spec["model"],
                provider="bedrock",
                tokens_input=spec["tokens_input"],
                tokens_output=spec["tokens_output"],
                tokens_cached=spec["tokens_cached"],
                cost_usd=Decimal(spec["cost"]),
                cache_hit=spec["cache_hit"],
                occurred_at=BASE + timedelta(minutes=spec["minutes"]),
            )
        )
    work = {True: [], False: []}
    for batch, which in zip(batches, consumer, strict=True):
        work[which].append([events[i] for i in batch])
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def consume(mine):
        try:
            start.wait()
            for batch in mine:
                record_usage(app_container.db, batch)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    runners = [threading.Thread(target=consume, args=(work[w],)) for w in (True, False)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert errors == []

    expected = expected_thread_totals(events)
    for _, thread in threads:
        zero = {"tokens_input": 0, "tokens_output": 0, "tokens_cached": 0, "tokens_total": 0, "requests": 0}
        want = expected.get(thread, {**zero, "cost": Decimal(0), "last_usage_at": None})
        assert thread_totals(db, thread) == want
    ours = {k: v for k, v in daily_rollups(db).items() if k[1] in users}
    assert ours == expected_rollups(events)
    recorded = db.execute("SELECT count(*) FROM model_usage WHERE user_id = ANY(%s)", (users,)).fetchone()[0]
    assert recorded == len(events)
