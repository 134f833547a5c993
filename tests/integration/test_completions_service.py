"""The completion service on real PostgreSQL: messages, context, cache, usage events, spend limit."""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal

import pytest

from shared.auth.principal import Principal
from shared.db import ConnectionProvider, Database
from shared.errors import ConflictError, NotFoundError, RateLimitedError
from shared.providers.base import ProviderRequest, ProviderResult
from shared.providers.registry import ProviderRegistry
from shared.services.completions import CompletionService
from shared.settings import Settings
from tests.ai_helpers import FakePublisher, add_model, add_thread, add_user

# The month's spend and what reservations still hold (every reservation row, expired or not).
SPEND = "SELECT spent_usd, (SELECT coalesce(sum(amount_usd), 0) FROM ai_spend_reservations) FROM ai_spend_months"


class RecordingRegistry(ProviderRegistry):
    """The real registry, remembering each request the provider was sent."""

    def __init__(self, settings: Settings, delay: float = 0.0):
        super().__init__(settings)
        self.requests: list[ProviderRequest] = []
        self._delay = delay

    def for_model(self, provider, **kwargs):
        inner = super().for_model(provider, **kwargs)
        registry = self

        class Recording:
            name = inner.name

            def complete(self, request: ProviderRequest) -> ProviderResult:
                registry.requests.append(request)
                time.sleep(registry._delay)
                return inner.complete(request)

        return Recording()


class FailingProvider:
    """A provider that is down."""

    name = "local"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        from shared.providers.base import ProviderError

        raise ProviderError("upstream is down")


@pytest.fixture
def make_service(database_url, app_env, monkeypatch):
    made = []

    def build(delay: float = 0.0, **env: str) -> tuple[CompletionService, RecordingRegistry, FakePublisher]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        db = Database(ConnectionProvider(lambda: {"conninfo": database_url}))
        made.append(db)
        registry = RecordingRegistry(settings, delay)
        publisher = FakePublisher()
        return CompletionService(db, registry, publisher, settings), registry, publisher

    yield build
    for db in made:
        db.close()


def test_stores_user_and_ai_messages_and_publishes_one_priced_event_when_the_cache_misses(db, make_service):
    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    answer = service.complete_in_thread(user, thread, content="What is Confab?")
    rows = db.execute(
        "SELECT sender_kind, sender_id, content, model_id FROM messages WHERE thread_id = %s ORDER BY id", (thread,)
    ).fetchall()
    assert [r[0] for r in rows] == ["user", "ai"]
    assert rows[0][1] == user and rows[1][2] == answer.message.content and rows[1][3] == "local-echo"
    assert "What is Confab?" in answer.message.content
    assert registry.requests[0].messages[0].role == "system"
    assert registry.requests[0].messages[0].content == "You are Confab's test model."
    (event,) = publisher.events
    usage = answer.usage
    expected = (Decimal(usage.tokens_input) * Decimal("0.5") + Decimal(usage.tokens_output) * Decimal("1.5")) / 1000
    assert usage.cost_usd == expected.quantize(Decimal("0.00000001")) and usage.cost_usd > 0
    assert event.cost_usd == usage.cost_usd and not event.cache_hit
    assert (event.user_id, event.conversation_id, event.thread_id) == (user, conversation, thread)
    assert event.message_id == answer.message.id and event.model == "local-echo" and event.provider == "local"
    assert event.tokens_input == usage.tokens_input > 0


def test_second_identical_deterministic_question_is_a_free_hit_recording_cost_avoided_when_asked_twice(
    db, make_service
):
    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    _, thread_a = add_thread(db, user, model_id="local-echo")
    _, thread_b = add_thread(db, user, model_id="local-echo")
    first = service.complete_in_thread(user, thread_a, content="Define entropy.", temperature=0)
    second = service.complete_in_thread(user, thread_b, content="Define entropy.", temperature=0)
    assert len(registry.requests) == 1
    assert second.message.content == first.message.content
    assert second.usage.cache_hit and second.usage.cost_usd == 0
    assert second.usage.cost_avoided_usd == first.usage.cost_usd > 0
    hit_event = publisher.events[1]
    assert hit_event.cache_hit and hit_event.cost_usd == 0 and hit_event.cost_avoided_usd == first.usage.cost_usd
    assert db.execute("SELECT hit_count FROM ai_cache").fetchone()[0] == 1


def test_cost_avoided_is_the_first_calls_exact_cost_when_that_cost_has_eight_decimals(db, make_service):
    service, _, publisher = make_service()
    add_model(db, price_in="0.123457", price_out="0.654321")
    user = add_user(db)
    _, thread_a = add_thread(db, user, model_id="local-echo")
    _, thread_b = add_thread(db, user, model_id="local-echo")
    first = service.complete_in_thread(user, thread_a, content="Define entropy.", temperature=0)
    second = service.complete_in_thread(user, thread_b, content="Define entropy.", temperature=0)
    assert first.usage.cost_usd != first.usage.cost_usd.quantize(Decimal("0.000001"))  # beyond 6 decimals
    assert second.usage.cache_hit and second.usage.cost_avoided_usd == first.usage.cost_usd
    assert publisher.events[1].cost_avoided_usd == first.usage.cost_usd


def test_nondeterministic_requests_are_not_cached_when_temperature_is_above_zero(db, make_service):
    service, registry, _ = make_service()
    add_model(db)
    user = add_user(db)
    _, thread_a = add_thread(db, user, model_id="local-echo")
    _, thread_b = add_thread(db, user, model_id="local-echo")
    service.complete_in_thread(user, thread_a, content="Tell a story.", temperature=0.8)
    second = service.complete_in_thread(user, thread_b, content="Tell a story.", temperature=0.8)
    assert len(registry.requests) == 2 and not second.usage.cache_hit
    assert db.execute("SELECT count(*) FROM ai_cache").fetchone()[0] == 0


def test_users_with_different_private_context_never_share_an_entry_when_asking_the_same_question(db, make_service):
    service, registry, _ = make_service()
    add_model(db)
    alice = add_user(db, tone="formal", info="Alice is a cardiologist in Lyon")
    bob = add_user(db, tone="casual")
    _, thread_a = add_thread(db, alice, model_id="local-echo")
    _, thread_b = add_thread(db, bob, model_id="local-echo")
    service.complete_in_thread(alice, thread_a, content="Plan my week.")
    answer_b = service.complete_in_thread(bob, thread_b, content="Plan my week.")
    assert len(registry.requests) == 2 and not answer_b.usage.cache_hit
    assert "cardiologist" not in answer_b.message.content
    assert "cardiologist" in registry.requests[0].messages[1].content
    assert all("cardiologist" not in m.content for m in registry.requests[1].messages)
    assert db.execute("SELECT count(*) FROM ai_cache").fetchone()[0] == 2


def test_same_private_properties_still_do_not_share_when_two_users_have_identical_ones(db, make_service):
    service, registry, _ = make_service()
    add_model(db)
    alice, bob = add_user(db, tone="formal"), add_user(db, tone="formal")
    _, thread_a = add_thread(db, alice, model_id="local-echo")
    _, thread_b = add_thread(db, bob, model_id="local-echo")
    service.complete_in_thread(alice, thread_a, content="Plan my week.")
    assert not service.complete_in_thread(bob, thread_b, content="Plan my week.").usage.cache_hit


def test_context_includes_recent_thread_messages_within_the_budget_when_the_thread_is_long(db, make_service):
    service, registry, _ = make_service()
    add_model(db, context_window=400, max_output=100, system_prompt=None)
    user = add_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    for i in range(40):
        db.execute(
            "INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content) "
            " VALUES (%s,%s,%s,%s,%s)",
            (conversation, thread, user, "user" if i % 2 == 0 else "ai", f"message number {i} " + "x" * 40),
        )
    service.complete_in_thread(user, thread, content="And now?")
    sent = registry.requests[0].messages
    assert sent[-1].content == "And now?" and 1 < len(sent) < 41
    assert sent[-2].content.startswith("message number 39") and sent[-2].role == "assistant"
    assert sum(len(m.content) for m in sent) // 4 <= 300


def test_thread_is_404_when_the_caller_is_not_a_participant(db, make_service):
    service, _, publisher = make_service()
    add_model(db)
    owner, stranger = add_user(db), add_user(db)
    _, thread = add_thread(db, owner, model_id="local-echo")
    with pytest.raises(NotFoundError):
        service.complete_in_thread(stranger, thread, content="hi")
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0 and publisher.events == []


def test_repeated_idempotency_key_returns_the_same_answer_without_a_second_call_when_retried(db, make_service):
    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    first = service.complete_in_thread(user, thread, content="hello", temperature=0.5, idempotency_key="k1")
    again = service.complete_in_thread(user, thread, content="hello", temperature=0.5, idempotency_key="k1")
    assert again.message.id == first.message.id and again.usage == first.usage
    assert len(registry.requests) == 1 and len(publisher.events) == 1
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 2


def test_spend_limit_answers_429_before_the_provider_when_the_month_is_spent(db, make_service):
    service, registry, _ = make_service(MONTHLY_SPEND_LIMIT_USD="0.01")
    add_model(db, price_in="10", price_out="10")
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    db.execute(
        "INSERT INTO ai_spend_months (user_id, month, spent_usd) VALUES (%s, date_trunc('month', now())::date, 0.0099)",
        (user,),
    )
    with pytest.raises(RateLimitedError):
        service.complete_in_thread(user, thread, content="one more", temperature=0.7)
    assert registry.requests == []
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def _race(complete, threads) -> list[str]:
    """`complete(thread_id)` for every thread at once; "ok" or "429" for each, in the order they finish."""
    outcomes: list[str] = []

    def call(thread_id):
        try:
            complete(thread_id)
            outcomes.append("ok")
        except RateLimitedError:
            outcomes.append("429")

    workers = [threading.Thread(target=call, args=(t,)) for t in threads]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return outcomes


def test_concurrent_calls_cannot_overspend_the_limit_when_they_race(db, make_service):
    # Worst case per call is about 0.105 USD (a token per byte of the context, 20 out) and the real cost about
    # 0.035: five real costs exceed the limit, so without reservations the racing calls would all pass the check
    # and overspend.
    limit = Decimal("0.15")
    service, registry, _ = make_service(delay=0.4, MONTHLY_SPEND_LIMIT_USD=str(limit))
    add_model(db, price_in="1", price_out="1")
    user = add_user(db)
    threads = [add_thread(db, user, model_id="local-echo")[1] for _ in range(6)]
    outcomes = _race(
        lambda thread_id: service.complete_in_thread(
            user, thread_id, content=f"race {thread_id}", temperature=0.9, max_tokens=20
        ),
        threads,
    )
    spent, reserved = db.execute(SPEND).fetchone()
    assert sorted(outcomes) == ["429"] * 5 + ["ok"]
    assert reserved == 0 and 0 < spent <= limit
    assert len(registry.requests) == 1


class CutOff(BaseException):
    """What a Lambda's end does to a call in flight: nothing after it runs (no except clause, no finally's writes)."""


def test_a_reservation_that_never_settles_stops_counting_when_it_expires(db, make_service, monkeypatch):
    # Each call's worst case is about 0.105 USD against a limit of 0.15: a second reservation does not fit beside
    # a first. The first call is cut off mid-call and never settles: its reservation refuses the next call only
    # until it expires (twice the provider timeout and a minute), not until the month ends.
    service, registry, _ = make_service(MONTHLY_SPEND_LIMIT_USD="0.15", PROVIDER_TIMEOUT_SECONDS="10")
    add_model(db, price_in="1", price_out="1")
    user = add_user(db)
    threads = [add_thread(db, user, model_id="local-echo")[1] for _ in range(3)]
    original = registry.for_model

    class Hangs:
        name = "local"

        def complete(self, request):
            raise CutOff

    def ask(thread_id):
        return service.complete_in_thread(user, thread_id, content="question " * 5, temperature=0.9, max_tokens=20)

    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: Hangs())
    with pytest.raises(CutOff):
        ask(threads[0])
    monkeypatch.setattr(registry, "for_model", original)
    lease = db.execute("SELECT expires_at - created_at FROM ai_spend_reservations").fetchone()[0]
    assert lease.total_seconds() == 2 * 10 + 60
    with pytest.raises(RateLimitedError):
        ask(threads[1])
    db.execute("UPDATE ai_spend_reservations SET expires_at = now() - interval '1 second'")
    assert ask(threads[2]).message.sender_kind == "ai"
    spent, _ = db.execute(SPEND).fetchone()
    assert 0 < spent <= Decimal("0.15")
    live = db.execute("SELECT count(*) FROM ai_spend_reservations WHERE expires_at > now()").fetchone()[0]
    assert live == 0  # the call that went through settled its own


def test_user_message_survives_and_a_retry_finishes_the_turn_when_the_provider_fails(db, make_service, monkeypatch):
    from shared.providers.base import ProviderError

    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    original = registry.for_model

    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: FailingProvider())
    with pytest.raises(ProviderError):
        service.complete_in_thread(user, thread, content="keep me", temperature=0.5, idempotency_key="k2")
    stored = db.execute("SELECT sender_kind, content FROM messages").fetchall()
    assert stored == [("user", "keep me")]
    monkeypatch.setattr(registry, "for_model", original)
    answer = service.complete_in_thread(user, thread, content="keep me", temperature=0.5, idempotency_key="k2")
    kinds = [r[0] for r in db.execute("SELECT sender_kind FROM messages ORDER BY id").fetchall()]
    assert kinds == ["user", "ai"] and answer.message.sender_kind == "ai"
    assert [m.content for m in registry.requests[-1].messages if m.role == "user"] == ["keep me"]
    assert len(publisher.events) == 1


def test_nothing_is_stored_when_the_thread_model_is_unknown(db, make_service):
    from shared.errors import UnprocessableError

    service, registry, publisher = make_service()
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="no-such-model")
    with pytest.raises(UnprocessableError):
        service.complete_in_thread(user, thread, content="hi")
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert registry.requests == [] and publisher.events == []


def test_racing_requests_with_one_idempotency_key_record_one_answer_when_both_reach_the_provider(db, make_service):
    # Both read the context before either has stored anything, so both call the provider; the record step then
    # keeps one answer (under the user message's row lock) and gives it to both. Both calls are reported.
    service, registry, publisher = make_service(delay=0.3)
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    answers = []

    def ask():
        answers.append(service.complete_in_thread(user, thread, content="twice", temperature=0.5, idempotency_key="t"))

    workers = [threading.Thread(target=ask) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    kinds = [r[0] for r in db.execute("SELECT sender_kind FROM messages ORDER BY id").fetchall()]
    assert kinds == ["user", "ai"]
    assert len(answers) == 2 and answers[0].message.id == answers[1].message.id
    assert answers[0].user_message_id == answers[1].user_message_id
    assert len(registry.requests) == 2 and len(publisher.events) == 2
    assert sorted(e.message_id is None for e in publisher.events) == [False, True]


def _second_thread(db, conversation, user):
    return db.execute(
        "INSERT INTO conversation_threads (conversation_id, user_id, model_id) VALUES (%s, %s, 'local-echo') "
        "RETURNING id",
        (conversation, user),
    ).fetchone()[0]


@pytest.mark.parametrize("first_answered", [True, False])
def test_an_idempotency_key_used_in_another_thread_is_a_conflict_before_the_provider(
    db, make_service, monkeypatch, first_answered
):
    # Keys are unique per conversation and sender. Reused in a second thread, the key once replayed the first
    # thread's answer, or (when the first turn's provider call had failed) stored the answer in the second thread
    # tied to the user message in the first.
    from shared.errors import ConflictError
    from shared.providers.base import ProviderError

    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    conversation, first = add_thread(db, user, model_id="local-echo")
    second = _second_thread(db, conversation, user)
    if first_answered:
        service.complete_in_thread(user, first, content="in the first", temperature=0.5, idempotency_key="k")
    else:
        original = registry.for_model
        monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: FailingProvider())
        with pytest.raises(ProviderError):
            service.complete_in_thread(user, first, content="in the first", temperature=0.5, idempotency_key="k")
        monkeypatch.setattr(registry, "for_model", original)
    calls, events = len(registry.requests), len(publisher.events)
    with pytest.raises(ConflictError):
        service.complete_in_thread(user, second, content="in the second", temperature=0.5, idempotency_key="k")
    assert db.execute("SELECT count(*) FROM messages WHERE thread_id = %s", (second,)).fetchone()[0] == 0
    assert len(registry.requests) == calls and len(publisher.events) == events


def test_racing_twins_with_one_key_in_two_threads_record_one_turn_and_the_other_is_a_conflict(db, make_service):
    # Both read their contexts before either stored anything, so both reach the provider; the record of the
    # second finds the key's message in the other thread and refuses (409), storing nothing. Both calls are
    # reported (their tokens were spent).
    from shared.errors import ConflictError

    service, registry, publisher = make_service(delay=0.3)
    add_model(db)
    user = add_user(db)
    conversation, first = add_thread(db, user, model_id="local-echo")
    second = _second_thread(db, conversation, user)
    outcomes: dict[object, str] = {}

    def ask(thread_id):
        try:
            service.complete_in_thread(user, thread_id, content="twin", temperature=0.5, idempotency_key="t")
            outcomes[thread_id] = "ok"
        except ConflictError:
            outcomes[thread_id] = "409"

    workers = [threading.Thread(target=ask, args=(t,)) for t in (first, second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcomes.values()) == ["409", "ok"]
    winner = next(t for t, outcome in outcomes.items() if outcome == "ok")
    rows = db.execute("SELECT thread_id, sender_kind FROM messages ORDER BY id").fetchall()
    assert rows == [(winner, "user"), (winner, "ai")]
    assert len(registry.requests) == 2 and len(publisher.events) == 2


def _fail_once(registry, monkeypatch, ask):
    """`ask()` while the provider is down (the turn's user message is kept), then the provider back up."""
    from shared.providers.base import ProviderError

    original = registry.for_model
    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: FailingProvider())
    with pytest.raises(ProviderError):
        ask()
    monkeypatch.setattr(registry, "for_model", original)


@pytest.mark.parametrize("first_answered", [True, False])
@pytest.mark.parametrize("other", ["dinner at eight?", "lunch at noon? "])
def test_an_idempotency_key_used_again_for_other_content_is_a_conflict_before_the_provider(
    db, make_service, monkeypatch, first_answered, other
):
    # A client whose key counter restarted asks something else with a used key. Answering the first turn again,
    # or (when its provider call had failed) asking the model about the first turn's message, would tell it this
    # question was answered. As for a send: 409, and nothing stored, bought or reported. Content is compared as
    # it is stored, which is as sent: a trailing space makes another message. A true retry still answers.
    from shared.errors import ConflictError

    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")

    def ask(content):
        return service.complete_in_thread(user, thread, content=content, temperature=0.5, idempotency_key="k")

    first = None
    if first_answered:
        first = ask("lunch at noon?")
    else:
        _fail_once(registry, monkeypatch, lambda: ask("lunch at noon?"))
    stored = db.execute("SELECT id, sender_kind, content FROM messages ORDER BY id").fetchall()
    calls, events = len(registry.requests), len(publisher.events)
    with pytest.raises(ConflictError):
        ask(other)
    assert db.execute("SELECT id, sender_kind, content FROM messages ORDER BY id").fetchall() == stored
    assert len(registry.requests) == calls and len(publisher.events) == events
    retry = ask("lunch at noon?")
    if first is not None:
        assert retry.message.id == first.message.id and len(registry.requests) == calls
    else:
        assert [m.content for m in registry.requests[-1].messages if m.role == "user"] == ["lunch at noon?"]
        assert retry.user_message_id == stored[0][0]


def test_a_retry_with_the_content_as_sent_or_as_edited_answers_and_other_content_is_a_conflict(db, make_service):
    # As for a send: the key's message is the one asked for when its content is the same as sent, or as it reads
    # after an edit.
    from shared.errors import ConflictError
    from shared.models.conversations import MessageUpdate
    from shared.services.messages import edit_message

    service, registry, _ = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")

    def ask(content):
        return service.complete_in_thread(user, thread, content=content, temperature=0.5, idempotency_key="k")

    first = ask("lunch at noon?")
    principal = Principal(kind="jwt", user_id=user, role="user")
    edit_message(service._db, Settings(), principal, first.user_message_id, MessageUpdate(content="lunch at one?"))
    assert ask("lunch at noon?").message.id == first.message.id
    assert ask("lunch at one?").message.id == first.message.id
    with pytest.raises(ConflictError):
        ask("dinner at eight?")
    assert len(registry.requests) == 1


def test_a_key_whose_message_carries_attachments_is_a_conflict_for_a_turn_which_carries_none(db, make_service):
    # Keys are shared with sends, and a send's message is its content and its attachments: a turn, which carries
    # none, with the key of a send that had some asks for another message.
    from shared.errors import ConflictError
    from shared.models.conversations import MessageCreate
    from shared.services.messages import send_message

    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    file = db.execute(
        "INSERT INTO user_files (owner_id, original_name, content_type, size, storage_key) "
        "VALUES (%s, 'a.txt', 'text/plain', 3, gen_random_uuid()::text) RETURNING id",
        (user,),
    ).fetchone()[0]
    principal = Principal(kind="jwt", user_id=user, role="user")
    sent = MessageCreate(content="see file", attachments=[file], thread_id=thread, idempotency_key="k")
    send_message(service._db, Settings(), principal, conversation, sent)
    with pytest.raises(ConflictError):
        service.complete_in_thread(user, thread, content="see file", temperature=0.5, idempotency_key="k")
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    assert registry.requests == [] and publisher.events == []


def test_racing_twins_with_one_key_and_other_content_record_one_turn_and_the_other_is_a_conflict(db, make_service):
    # Both read the context before either stored anything, so both reach the provider; the record of the second
    # finds the key's message (under its row lock) asking something else and refuses (409), storing nothing. Both
    # calls are reported (their tokens were spent).
    from shared.errors import ConflictError

    service, registry, publisher = make_service(delay=0.3)
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    outcomes: dict[str, str] = {}

    def ask(content):
        try:
            service.complete_in_thread(user, thread, content=content, temperature=0.5, idempotency_key="t")
            outcomes[content] = "ok"
        except ConflictError:
            outcomes[content] = "409"

    workers = [threading.Thread(target=ask, args=(c,)) for c in ("lunch at noon?", "dinner at eight?")]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcomes.values()) == ["409", "ok"]
    winner = next(c for c, outcome in outcomes.items() if outcome == "ok")
    rows = db.execute("SELECT sender_kind, content FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", winner) and [r[0] for r in rows] == ["user", "ai"]
    assert len(registry.requests) == 2 and len(publisher.events) == 2


@pytest.mark.parametrize(("temperature", "trips"), [(0.5, 2), (0.0, 3)])
def test_a_turn_makes_one_commit_that_writes_and_few_round_trips_when_the_provider_answers(
    db, make_service, database_url, temperature, trips
):
    # The design the completion benchmark depends on: the context in one read, the answer in one transaction.
    # A cacheable request (temperature 0) adds its cache read.
    import psycopg

    from bench.harness import trace_counts

    service, _, _ = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    service.complete_in_thread(user, thread, content="warm the connection", temperature=temperature)
    with service._db.provider.connection() as conn, psycopg.connect(database_url, autocommit=True) as observer:
        # Commits are counted as transaction ids the server hands out meanwhile, in the whole database: an
        # autovacuum ANALYZE of the rows just arranged takes one too. A turn gets three tries to be counted
        # alone; one that really commits twice fails all three.
        for _ in range(3):
            counted = trace_counts(
                conn,
                lambda: service.complete_in_thread(user, thread, content="count me", temperature=temperature),
                observer,
            )
            if counted == (trips, 1):
                break
    assert counted == (trips, 1)


def _make_table_refuse_rows(db, table: str) -> None:
    """Every later insert into `table` fails, as a database refusing a write part-way would."""
    db.execute(f"ALTER TABLE {table} ADD CONSTRAINT refuses_rows CHECK (false) NOT VALID")


def test_spend_is_settled_message_kept_and_usage_reported_when_the_record_fails_after_the_provider_call(
    db, make_service
):
    from shared.errors import UnprocessableError

    service, registry, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1")
    add_model(db, price_in="1", price_out="1")
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    _make_table_refuse_rows(db, "ai_completions")
    with pytest.raises(UnprocessableError):
        service.complete_in_thread(user, thread, content="a bought answer", temperature=0.5, idempotency_key="k")
    assert len(registry.requests) == 1
    spent, reserved = db.execute(SPEND).fetchone()
    (event,) = publisher.events
    assert reserved == 0 and spent == event.cost_usd > 0
    assert event.message_id is None
    assert db.execute("SELECT sender_kind, content FROM messages").fetchall() == [("user", "a bought answer")]


def test_chat_settles_its_spend_and_reports_usage_when_its_cache_entry_cannot_be_stored(db, make_service):
    from shared.errors import UnprocessableError
    from shared.providers.base import ChatMessage

    service, registry, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1")
    add_model(db, price_in="1", price_out="1")
    user = add_user(db)
    _make_table_refuse_rows(db, "ai_cache")
    with pytest.raises(UnprocessableError):
        service.chat(user, model_id="local-echo", messages=[ChatMessage("user", "cache me")], temperature=0)
    spent, reserved = db.execute(SPEND).fetchone()
    (event,) = publisher.events
    assert reserved == 0 and spent == event.cost_usd > 0


def test_content_with_a_nul_byte_is_refused_before_the_provider_is_called(db, make_service):
    from shared.errors import UnprocessableError

    service, registry, publisher = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    with pytest.raises(UnprocessableError):
        service.complete_in_thread(user, thread, content="hello\x00world", temperature=0.5)
    assert registry.requests == [] and publisher.events == []
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_an_answer_with_a_nul_byte_is_stored_with_a_replacement_character(db, make_service, monkeypatch):
    service, registry, _ = make_service()
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")

    class Nul:
        name = "local"

        def complete(self, request: ProviderRequest) -> ProviderResult:
            return ProviderResult(text="a\x00b")

    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: Nul())
    answer = service.complete_in_thread(user, thread, content="q", temperature=0.5)
    assert answer.message.content == "a\ufffdb"
    assert db.execute("SELECT content FROM messages WHERE sender_kind = 'ai'").fetchone()[0] == "a\ufffdb"


def test_spent_stays_within_the_limit_when_racing_calls_count_a_token_per_character(db, make_service, monkeypatch):
    from shared.providers.base import TokenUsage

    class CharTokenizer:
        """As a real tokenizer on CJK text: about a token per character, plus format tokens per message."""

        name = "local"

        def complete(self, request: ProviderRequest) -> ProviderResult:
            time.sleep(0.3)
            prompt = sum(len(m.content) + 4 for m in request.messages)
            return ProviderResult(text="好", usage=TokenUsage(input=prompt, output=1))

    # Each call really costs 0.037 (36 tokens in, 1 out): four of them pass the limit, one fits its worst case
    # (a token per UTF-8 byte, 0.105); a reservation of four characters a token (0.010) would let all four in.
    limit = Decimal("0.12")
    service, registry, _ = make_service(MONTHLY_SPEND_LIMIT_USD=str(limit))
    add_model(db, price_in="1", price_out="1", system_prompt=None)
    user = add_user(db)
    threads = [add_thread(db, user, model_id="local-echo")[1] for _ in range(4)]
    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: CharTokenizer())
    content = "请帮我总结一下这篇文章的主要观点" * 2  # 32 characters: about 8 tokens at four characters a token
    outcomes = _race(
        lambda thread_id: service.complete_in_thread(user, thread_id, content=content, temperature=0.9, max_tokens=1),
        threads,
    )
    spent, reserved = db.execute(SPEND).fetchone()
    assert "ok" in outcomes
    assert reserved == 0 and spent <= limit


def _template(db) -> object:
    return db.execute(
        "INSERT INTO agent_templates (template_name, description, prompt_template) VALUES ('t', 'd', 'Be brief.') "
        "RETURNING id"
    ).fetchone()[0]


def _uses(db, template) -> int:
    row = db.execute("SELECT usage_count FROM user_template_preferences WHERE template_id = %s", (template,)).fetchone()
    return 0 if row is None else row[0]


def test_a_template_use_is_counted_only_when_the_turn_is_answered(db, make_service, monkeypatch):
    from shared.providers.base import ProviderError

    service, registry, _ = make_service(MONTHLY_SPEND_LIMIT_USD="0.01")
    add_model(db, price_in="10", price_out="10")
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    template = _template(db)
    db.execute(
        "INSERT INTO ai_spend_months (user_id, month, spent_usd) VALUES (%s, date_trunc('month', now())::date, 0.0099)",
        (user,),
    )
    with pytest.raises(RateLimitedError):
        service.complete_in_thread(user, thread, content="refused", template_id=template, temperature=0.7)
    assert _uses(db, template) == 0

    service, registry, _ = make_service(MONTHLY_SPEND_LIMIT_USD="1000")
    original = registry.for_model

    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: FailingProvider())
    with pytest.raises(ProviderError):
        service.complete_in_thread(user, thread, content="failed", template_id=template, temperature=0.7)
    assert _uses(db, template) == 0

    monkeypatch.setattr(registry, "for_model", original)
    service.complete_in_thread(user, thread, content="answered", template_id=template, temperature=0.7)
    assert _uses(db, template) == 1
    assert "Be brief." in registry.requests[-1].system


def test_turns_alternate_from_a_user_turn_when_a_failed_turn_left_its_message_and_history_is_trimmed(db, make_service):
    service, registry, _ = make_service()
    add_model(db, system_prompt=None, context_window=300, max_output=20)
    user = add_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    # An old question too long for the budget, its answer, then a question whose provider call failed.
    for kind, text in [("user", "u" * 1500), ("ai", "an answer"), ("user", "kept after a failure")]:
        db.execute(
            "INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content) "
            "VALUES (%s, %s, %s, %s, %s)",
            (conversation, thread, user if kind == "user" else None, kind, text),
        )
    service.complete_in_thread(user, thread, content="and now?", temperature=0.5)
    turns = registry.requests[-1].turns
    assert [(m.role, m.content) for m in turns] == [("user", "kept after a failure\n\nand now?")]


def _lose_a_commits_answer(monkeypatch, which: int) -> None:
    """The `which`-th commit is carried out by the server, then its connection drops before the answer is read."""
    import psycopg

    from shared import db as dbmod
    from shared.errors import UnavailableError

    original = dbmod.UnitOfWork.commit
    seen = {"commits": 0}

    def commit(self):
        original(self)
        seen["commits"] += 1
        if seen["commits"] == which:
            self.conn.close()
            try:
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            except psycopg.OperationalError as exc:
                raise UnavailableError("The database cannot be reached.") from exc

    monkeypatch.setattr(dbmod.UnitOfWork, "commit", commit)


def test_nothing_is_written_twice_when_a_turns_commit_is_carried_out_but_its_answer_lost(db, make_service, monkeypatch):
    from shared.errors import UnavailableError

    service, _, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1")
    add_model(db, price_in="1", price_out="1")
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    _lose_a_commits_answer(monkeypatch, which=2)  # the reservation's, then the turn's
    with pytest.raises(UnavailableError):
        service.complete_in_thread(user, thread, content="a bought answer", temperature=0.5)
    (event,) = publisher.events
    spent, reserved = db.execute(SPEND).fetchone()
    assert [r[0] for r in db.execute("SELECT sender_kind FROM messages ORDER BY id").fetchall()] == ["user", "ai"]
    assert spent == event.cost_usd and reserved == 0


def test_chat_spend_is_counted_once_when_its_settlements_commit_answer_is_lost(db, make_service, monkeypatch):
    from shared.errors import UnavailableError
    from shared.providers.base import ChatMessage

    service, _, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1")
    add_model(db, price_in="1", price_out="1")
    user = add_user(db)
    _lose_a_commits_answer(monkeypatch, which=2)
    with pytest.raises(UnavailableError):
        service.chat(user, model_id="local-echo", messages=[ChatMessage("user", "hi")], temperature=0.5)
    (event,) = publisher.events
    spent, reserved = db.execute(SPEND).fetchone()
    assert spent == event.cost_usd and reserved == 0


def test_the_reservation_is_released_and_the_message_kept_when_the_provider_cannot_be_reached_at_all(db, make_service):
    from shared.providers.base import ProviderError

    service, registry, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1")
    # An OpenAI-compatible model with no base URL: the provider fails before any request is sent.
    add_model(db, "nim", provider="openai-compatible", base_url=None, price_in="1", price_out="1")
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="nim")
    with pytest.raises(ProviderError):
        service.complete_in_thread(user, thread, content="keep me", temperature=0.5)
    spent, reserved = db.execute(SPEND).fetchone()
    assert reserved == 0 and spent == 0 and publisher.events == []
    assert db.execute("SELECT sender_kind, content FROM messages").fetchall() == [("user", "keep me")]


def test_usage_event_is_logged_whole_for_replay_when_no_publisher_path_takes_it(db, make_service, caplog):
    # SQS unreachable and its synchronous fallback failing too: the log kept only the event id, from which the
    # event cannot be rebuilt, so the call's usage was lost for good. Logged whole, it can be sent again.
    from shared.errors import UnavailableError
    from shared.events.usage import UsageEvent
    from shared.services.usage import record_usage
    from tests.usage_support import thread_totals

    service, _, publisher = make_service()

    def unavailable(events):
        raise UnavailableError("The database cannot be reached.")

    publisher.publish = unavailable
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    answer = service.complete_in_thread(user, thread, content="What is Confab?")
    (entry,) = [r for r in caplog.records if r.getMessage() == "usage event could not be published"]
    event = UsageEvent.model_validate(json.loads(json.dumps(getattr(entry, "event", None))))
    assert (event.thread_id, event.tokens_input, event.cost_usd) == (
        thread,
        answer.usage.tokens_input,
        answer.usage.cost_usd,
    )
    assert record_usage(service._db, [event]).inserted == 1
    assert thread_totals(db, thread)["requests"] == 1


def test_a_call_whose_worst_case_cost_no_record_can_hold_is_422_before_the_provider(db, make_service):
    # A mispriced catalog entry (per 1k input tokens at the most a price holds) and a long context: the answer was
    # bought and stored, then its cost failed the cache entry's numeric(14, 8) (a 500 for a kept turn), or the
    # usage event (a 500 after the commit).
    from shared.errors import UnprocessableError
    from shared.providers.base import ChatMessage

    service, registry, publisher = make_service()
    add_model(db, price_in="9999.999999", context_window=1_000_000)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    with pytest.raises(UnprocessableError):
        service.chat(user, model_id="local-echo", messages=[ChatMessage("user", "x" * 450_000)])
    with pytest.raises(UnprocessableError):
        service.complete_in_thread(user, thread, content="x" * 450_000)
    assert registry.requests == [] and publisher.events == []
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    answer = service.chat(user, model_id="local-echo", messages=[ChatMessage("user", "x" * 4_000)])
    assert answer.usage.cost_usd > 9999  # a dear call that fits is answered


def test_a_provider_reporting_tokens_past_the_worst_case_at_a_cost_no_record_holds_is_a_502(
    db, make_service, monkeypatch
):
    from shared.providers.base import ProviderError, TokenUsage

    service, registry, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1000000")
    add_model(db, price_out="9999.999999")
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")

    class OverReporting:
        name = "local"

        def complete(self, request: ProviderRequest) -> ProviderResult:
            return ProviderResult(text="short", usage=TokenUsage(input=10, output=1_000_000))

    monkeypatch.setattr(registry, "for_model", lambda provider, **kwargs: OverReporting())
    with pytest.raises(ProviderError) as caught:
        service.complete_in_thread(user, thread, content="keep me", temperature=0.5)
    assert caught.value.status == 502
    # Failed like any provider failure: the user's message kept, the reservation released, nothing counted.
    assert db.execute("SELECT sender_kind, content FROM messages").fetchall() == [("user", "keep me")]
    assert db.execute(SPEND).fetchone() == (0, 0)


def test_a_completion_whose_user_is_deleted_during_the_provider_call_is_404_and_its_usage_is_still_reported(
    db, make_service, database_url
):
    # The account goes while the provider answers (no transaction is open then): the turn cannot be stored for a
    # participant who is gone, nor its spend for a month row that went with the account, but what was bought is
    # reported, and the aggregator files it under the deleted users (tests/integration/identity).
    from shared.services import account_deletions

    service, registry, publisher = make_service(MONTHLY_SPEND_LIMIT_USD="1")
    add_model(db, price_in="1", price_out="1")
    user, other, root = add_user(db), add_user(db), add_user(db, role="super_admin")
    conversation, thread = add_thread(db, user, other, model_id="local-echo")
    deleting = Database(ConnectionProvider(lambda: {"conninfo": database_url}))
    admin = Principal(kind="jwt", user_id=root, role="super_admin")
    real = registry.for_model

    def deleted_during_the_call(provider, **kwargs):
        inner = real(provider, **kwargs)

        class DeletedMeanwhile:
            name = inner.name

            def complete(self, request):
                account_deletions.delete_account(deleting, Settings(), admin, user)
                return inner.complete(request)

        return DeletedMeanwhile()

    registry.for_model = deleted_during_the_call
    try:
        with pytest.raises(NotFoundError):
            service.complete_in_thread(user, thread, content="are you there", idempotency_key="k")
    finally:
        deleting.close()
    (event,) = publisher.events
    assert event.user_id == user and event.cost_usd > 0
    assert db.execute("SELECT count(*) FROM users WHERE id = %s", (user,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM ai_spend_months").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation,)).fetchone() == (0,)


def _anonymous_chat(db) -> tuple[uuid.UUID, uuid.UUID]:
    conversation = db.execute("INSERT INTO conversations (kind) VALUES ('anonymous') RETURNING id").fetchone()[0]
    thread = db.execute(
        "INSERT INTO conversation_threads (conversation_id) VALUES (%s) RETURNING id", (conversation,)
    ).fetchone()[0]
    return conversation, thread


def test_racing_anonymous_calls_from_one_address_get_exactly_its_rate(db, make_service):
    # The counter row's lock makes the count exact: six chats of one address racing against a rate of two get two
    # provider calls, whatever the interleaving (the slow provider keeps every call in flight at once).
    service, registry, publisher = make_service(
        delay=0.3, ANONYMOUS_AI_MODEL_ID="local-echo", ANONYMOUS_AI_RATE_LIMIT="2"
    )
    add_model(db)
    chats = dict(_anonymous_chat(db)[::-1] for _ in range(6))  # thread -> conversation
    outcomes = _race(
        lambda thread: service.complete_anonymously(
            chats[thread], thread, address="192.0.2.9", content=f"race {thread}"
        ),
        list(chats),
    )
    assert sorted(outcomes) == ["429"] * 4 + ["ok", "ok"]
    assert len(registry.requests) == 2 and len(publisher.events) == 2
    assert db.execute("SELECT hits FROM anonymous_rate_limits WHERE address = 'ai:192.0.2.9'").fetchone()[0] == 2
    assert all(e.user_id is None for e in publisher.events)


def test_racing_turns_of_one_anonymous_chat_pass_its_turn_limit_by_at_most_their_number(db, make_service):
    # Documented: the turn and message bounds are read from each turn's context, so racing turns may all pass.
    service, registry, _ = make_service(delay=0.3, ANONYMOUS_AI_MODEL_ID="local-echo", ANONYMOUS_AI_TURN_LIMIT="1")
    add_model(db)
    conversation, thread = _anonymous_chat(db)

    def turn(n: int) -> None:
        try:
            service.complete_anonymously(conversation, thread, address="192.0.2.10", content=f"turn {n}")
        except ConflictError:
            raise RateLimitedError("refused: counted with the 429s") from None

    outcomes = _race(turn, list(range(3)))
    answered = db.execute(
        "SELECT count(*) FROM messages WHERE conversation_id = %s AND sender_kind = 'ai'", (conversation,)
    ).fetchone()[0]
    assert 1 <= answered == outcomes.count("ok") <= 3 and len(registry.requests) == answered
    with pytest.raises(ConflictError):
        service.complete_anonymously(conversation, thread, address="192.0.2.10", content="one more")
