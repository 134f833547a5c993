"""AI answers in anonymous conversations: a thread completion for an anonymous conversation's token, off unless
ANONYMOUS_AI_MODEL_ID is set, bounded per conversation and per client address, with a user turn's guarantees."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from time import sleep
from typing import Any

import pytest

from shared import bootstrap
from shared.errors import RateLimitedError
from shared.providers.base import provider_failed
from shared.providers.local import LocalProvider
from shared.services.usage import record_usage
from tests.ai_helpers import FakePublisher, add_model, add_thread, add_user
from tests.conversations_helpers import anonymous_principal, call, jwt_principal

IP = "198.51.100.40"


@pytest.fixture
def anon_ai(app_env, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Anonymous AI on (set before app_container reads the settings); the provider's calls and the usage events
    kept."""
    monkeypatch.setenv("ANONYMOUS_AI_MODEL_ID", "local-echo")
    return _spy(monkeypatch)


@pytest.fixture
def anon_ai_off(app_env, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("ANONYMOUS_AI_MODEL_ID", raising=False)
    return _spy(monkeypatch)


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    publisher = FakePublisher()
    sent: list[Any] = []
    complete = LocalProvider.complete
    monkeypatch.setattr(
        LocalProvider, "complete", lambda self, request: sent.append(request) or complete(self, request)
    )
    monkeypatch.setattr(bootstrap, "_usage_publisher", lambda built: publisher)
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()
    return {"events": publisher.events, "sent": sent}


@pytest.fixture
def clear_services():
    yield
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()


def _chat(ip: str = IP) -> tuple[uuid.UUID, Any, uuid.UUID]:
    created = call("POST", "/v1/anonymous/conversations", None, body={}, source_ip=ip)
    assert created.status == 201, created
    conversation = uuid.UUID(created.body["conversation"]["id"])
    anon = anonymous_principal(conversation)
    thread = call("POST", f"/v1/conversations/{conversation}/threads", anon, body={"title": "t"}, source_ip=ip)
    assert thread.status == 201, thread
    return conversation, anon, uuid.UUID(thread.body["id"])


def _ask(anon: Any, thread: uuid.UUID, body: dict[str, Any], ip: str = IP, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else None
    return call("POST", f"/v1/threads/{thread}/completions", anon, body=body, source_ip=ip, headers=headers)


def _count(db, sql: str, *args: Any) -> int:
    return db.execute(sql, args).fetchone()[0]


def test_an_anonymous_token_gets_an_answer_stored_in_its_thread_with_a_user_less_usage_event(
    anon_ai, app_container, clear_services, db
):
    add_model(db)
    conversation, anon, thread = _chat()
    reply = _ask(anon, thread, {"content": "Hello there"})
    assert reply.status == 200, reply
    assert reply.body["message"]["sender_kind"] == "ai" and "Hello there" in reply.body["message"]["content"]
    assert reply.body["message"]["model_id"] == "local-echo" and reply.body["usage"]["cache_hit"] is False
    rows = db.execute(
        "SELECT id, sender_id, sender_kind, thread_id FROM messages WHERE conversation_id = %s ORDER BY id",
        (conversation,),
    ).fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [(None, "user", thread), (None, "ai", thread)]
    assert [r[0] for r in rows] == [reply.body["user_message_id"], reply.body["message"]["id"]]
    assert _count(db, "SELECT count(*) FROM ai_completions WHERE ai_message_id = %s", reply.body["message"]["id"]) == 1
    # The usage event: no user, the conversation, thread and answer's ids.
    (event,) = anon_ai["events"]
    assert event.user_id is None and event.conversation_id == conversation and event.thread_id == thread
    assert event.message_id == reply.body["message"]["id"] and event.model == "local-echo"
    # The aggregator records it with no user, beside the conversation, thread and message, and rolls it up.
    assert record_usage(app_container.db, [event]).inserted == 1
    stored = db.execute(
        "SELECT user_id, conversation_id, thread_id, message_id FROM model_usage WHERE event_id = %s", (event.event_id,)
    ).fetchone()
    assert stored == (None, conversation, thread, reply.body["message"]["id"])
    assert _count(db, "SELECT requests_count FROM usage_daily WHERE user_id IS NULL AND model_name = 'local-echo'") == 1
    # The messages read through the token as any anonymous message does.
    page = call("GET", f"/v1/threads/{thread}/messages", anon).body["items"]
    assert {m["sender_kind"] for m in page} == {"user", "ai"}
    # No spend ledger row for anybody.
    assert _count(db, "SELECT count(*) FROM ai_spend_months") == 0


def test_anonymous_completion_is_403_storing_nothing_and_calling_nothing_when_anonymous_ai_is_off(
    anon_ai_off, app_container, clear_services, db
):
    add_model(db)
    conversation, anon, thread = _chat()
    refused = _ask(anon, thread, {"content": "hi"})
    assert refused.status == 403 and refused.body["reason"] == "anonymous_ai_off"
    assert refused.headers["Content-Type"] == "application/problem+json"
    # The same answer for a thread that does not exist: the refusal reveals nothing about ids.
    assert _ask(anon, uuid.uuid4(), {"content": "hi"}).body == refused.body
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 0
    assert anon_ai_off["sent"] == [] and anon_ai_off["events"] == []


def test_anonymous_completion_naming_a_model_or_a_template_is_422_naming_the_field(
    anon_ai, app_container, clear_services, db
):
    add_model(db)
    conversation, anon, thread = _chat()
    by_model = _ask(anon, thread, {"content": "hi", "model_id": "local-echo"})
    assert by_model.status == 422 and by_model.body["errors"][0]["loc"] == ["body", "model_id"]
    by_template = _ask(anon, thread, {"content": "hi", "template_id": str(uuid.uuid4())})
    assert by_template.status == 422 and by_template.body["errors"][0]["loc"] == ["body", "template_id"]
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 0
    assert anon_ai["sent"] == []


def test_anonymous_completion_is_the_same_404_as_an_unknown_thread_for_another_conversations_token_or_a_stranger(
    anon_ai, app_container, clear_services, db
):
    add_model(db)
    _, _, thread = _chat()
    _, other, _ = _chat()
    unknown = _ask(other, uuid.uuid4(), {"content": "peek"})
    foreign = _ask(other, thread, {"content": "peek"})
    stranger = _ask(jwt_principal(add_user(db)), thread, {"content": "peek"})
    assert unknown.status == foreign.status == stranger.status == 404
    assert unknown.body == foreign.body == stranger.body
    # And a token never reaches a user's thread, even one forged to name that conversation.
    owner = add_user(db)
    user_conversation, user_thread = add_thread(db, owner, model_id="local-echo")
    forged = anonymous_principal(user_conversation)
    assert _ask(forged, user_thread, {"content": "peek"}).body == unknown.body
    assert anon_ai["sent"] == []


@pytest.fixture
def two_turns_each(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANONYMOUS_AI_TURN_LIMIT", "2")


def test_anonymous_completion_is_409_before_the_provider_once_the_conversation_had_its_answers(
    two_turns_each, anon_ai, app_container, clear_services, db
):
    add_model(db)
    conversation, anon, thread = _chat()
    assert [_ask(anon, thread, {"content": f"q{n}"}).status for n in range(2)] == [200, 200]
    refused = _ask(anon, thread, {"content": "q3"})
    assert refused.status == 409 and refused.body["reason"] == "anonymous_ai_turn_limit"
    assert refused.body["limit"] == 2
    assert len(anon_ai["sent"]) == 2
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 4
    # Another conversation has its own.
    _, anon2, thread2 = _chat()
    assert _ask(anon2, thread2, {"content": "q1"}).status == 200


@pytest.fixture
def three_messages_each(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANONYMOUS_MESSAGE_LIMIT", "3")


def test_anonymous_completion_is_409_before_the_provider_when_the_turn_would_not_fit_the_message_limit(
    three_messages_each, anon_ai, app_container, clear_services, db
):
    add_model(db)
    conversation, anon, thread = _chat()
    assert _ask(anon, thread, {"content": "q1"}).status == 200
    refused = _ask(anon, thread, {"content": "q2"})  # two more would make four
    assert refused.status == 409 and refused.body["limit"] == 3
    assert len(anon_ai["sent"]) == 1
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 2


@pytest.fixture
def two_calls_per_address(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANONYMOUS_AI_RATE_LIMIT", "2")
    monkeypatch.setenv("ANONYMOUS_AI_RATE_LIMIT_PER_IPV6_48", "3")


def test_anonymous_completion_is_429_with_retry_after_before_the_provider_past_the_address_rate(
    two_calls_per_address, anon_ai, app_container, clear_services, db
):
    add_model(db)
    conversation, anon, thread = _chat()
    # Across conversations: the address is counted, not the chat.
    _, anon2, thread2 = _chat()
    assert _ask(anon, thread, {"content": "q1"}).status == 200
    assert _ask(anon2, thread2, {"content": "another"}).status == 200
    # A cached answer calls no provider and is not counted.
    _, anon3, thread3 = _chat()
    assert _ask(anon3, thread3, {"content": "q1"}).body["usage"]["cache_hit"] is True
    refused = _ask(anon, thread, {"content": "q2"})
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert len(anon_ai["sent"]) == 2
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 2
    # Counted apart from creations (a key of its own), and per address: another address still gets answers.
    assert _count(db, "SELECT hits FROM anonymous_rate_limits WHERE address = %s", "ai:" + IP) == 2
    assert _ask(anon, thread, {"content": "q2"}, ip="198.51.100.41").status == 200
    # IPv6: each /64 has its own two, and the /48 three in all.
    statuses = [_ask(anon2, thread2, {"content": f"v{n}"}, ip=f"2001:db8:9:{n}::1").status for n in range(1, 5)]
    assert statuses == [200, 200, 200, 429]


def test_a_failed_provider_call_keeps_the_anonymous_message_and_a_retry_with_the_key_finishes_the_turn(
    anon_ai, app_container, clear_services, db, monkeypatch
):
    add_model(db)
    conversation, anon, thread = _chat()
    works = LocalProvider.complete

    def fail(self, request):
        raise provider_failed("local", 503, "test")

    monkeypatch.setattr(LocalProvider, "complete", fail)
    failed = _ask(anon, thread, {"content": "keep me"}, key="k-1")
    assert failed.status == 503
    kept = db.execute(
        "SELECT id, sender_id, content FROM messages WHERE conversation_id = %s", (conversation,)
    ).fetchall()
    assert [(r[1], r[2]) for r in kept] == [(None, "keep me")]
    monkeypatch.setattr(LocalProvider, "complete", works)
    retried = _ask(anon, thread, {"content": "keep me"}, key="k-1")
    assert retried.status == 200 and retried.body["user_message_id"] == kept[0][0]
    again = _ask(anon, thread, {"content": "keep me"}, key="k-1")
    assert again.status == 200 and again.body["message"]["id"] == retried.body["message"]["id"]
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 2
    other = _ask(anon, thread, {"content": "something else"}, key="k-1")
    assert other.status == 409
    # The key is shared with the conversation's anonymous sends, as keys are per conversation and sender.
    send = call(
        "POST", f"/v1/conversations/{conversation}/messages", anon, body={"content": "x", "idempotency_key": "k-1"}
    )
    assert send.status == 409


def test_two_anonymous_chats_with_the_same_history_do_not_share_a_cache_entry_while_a_first_question_may(
    anon_ai, app_container, clear_services, db
):
    add_model(db)
    answers = []
    for _ in range(2):
        _, anon, thread = _chat()
        first = _ask(anon, thread, {"content": "Same opener", "temperature": 0})
        second = _ask(anon, thread, {"content": "Same follow-up", "temperature": 0})
        answers.append((first.body["usage"]["cache_hit"], second.body["usage"]["cache_hit"]))
    # The opener has no history: the same question with the same model may be answered for anyone. The follow-up
    # carries the chat's history, private to it: the second chat's is asked of the model, not read from the first's.
    assert answers == [(False, False), (True, False)]
    # Nor does a user's thread with the same history get the anonymous chat's entry.
    user = add_user(db)
    _, user_thread = add_thread(db, user, model_id="local-echo")
    principal = jwt_principal(user)
    call("POST", f"/v1/threads/{user_thread}/completions", principal, body={"content": "Same opener", "temperature": 0})
    follow = call(
        "POST",
        f"/v1/threads/{user_thread}/completions",
        principal,
        body={"content": "Same follow-up", "temperature": 0},
    )
    assert follow.status == 200 and follow.body["usage"]["cache_hit"] is False


def test_maintenance_keeps_a_rate_limit_row_while_the_longer_of_the_two_windows_still_counts(app_env, monkeypatch):
    # Purged after the creation window alone, a completions window longer than it would restart mid-way.
    from shared.services.maintenance import PURGE_JOBS
    from shared.settings import Settings

    monkeypatch.setenv("ANONYMOUS_CREATE_WINDOW_SECONDS", "3600")
    monkeypatch.setenv("ANONYMOUS_AI_WINDOW_SECONDS", "7200")
    job = next(j for j in PURGE_JOBS if j.name == "anonymous_rate_limits")
    assert job.retention(Settings()).total_seconds() == 7200
    monkeypatch.setenv("ANONYMOUS_AI_WINDOW_SECONDS", "60")
    assert job.retention(Settings()).total_seconds() == 3600


# The daily ceiling on all anonymous conversations' spend (ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD) ----------------

DAY_SPENT = "SELECT coalesce(sum(spent_usd), 0) FROM ai_anonymous_spend_days"
RESERVATIONS = "SELECT count(*) FROM ai_anonymous_spend_reservations"


@pytest.fixture
def daily_limit(app_env, monkeypatch: pytest.MonkeyPatch) -> Decimal:
    """A ceiling of 1 USD (set before app_container reads the settings)."""
    monkeypatch.setenv("ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD", "1")
    return Decimal(1)


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    return int((datetime.combine(now.date() + timedelta(days=1), time(), UTC) - now).total_seconds())


def test_anonymous_completion_is_429_with_retry_after_before_the_provider_when_the_day_would_pass_the_ceiling(
    daily_limit, anon_ai, app_container, clear_services, db
):
    # A worst case (the context's bytes at 0.5 USD per 1k, 256 tokens out at 1.5) of about 0.4 USD: the first turn
    # fits a 1 USD ceiling, and none fits beside 0.9 USD already spent.
    add_model(db)
    conversation, anon, thread = _chat()
    assert _ask(anon, thread, {"content": "first"}).status == 200
    db.execute("UPDATE ai_anonymous_spend_days SET spent_usd = 0.9")
    before = _count(db, "SELECT hits FROM anonymous_rate_limits WHERE address = %s", "ai:" + IP)
    refused = _ask(anon, thread, {"content": "second"}, key="k-2")
    assert refused.status == 429 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.body["reason"] == "anonymous_ai_daily_spend_limit"
    # Until the next UTC midnight, when the day's ledger starts again.
    assert abs(int(refused.headers["Retry-After"]) - _seconds_to_midnight()) <= 5
    assert len(anon_ai["sent"]) == 1 and len(anon_ai["events"]) == 1
    # Nothing written: the turn's message is not kept (a retry sends it again), nothing is reserved, and the
    # address's count taken in the same transaction is rolled back.
    contents = [r[0] for r in db.execute("SELECT content FROM messages WHERE conversation_id = %s", (conversation,))]
    assert len(contents) == 2 and "second" not in contents
    assert _count(db, "SELECT count(*) FROM messages WHERE idempotency_key = %s", "k-2") == 0
    assert _count(db, RESERVATIONS) == 0 and _count(db, DAY_SPENT) == Decimal("0.9")
    assert _count(db, "SELECT hits FROM anonymous_rate_limits WHERE address = %s", "ai:" + IP) == before == 1
    # A cached answer calls no provider: it is still given.
    _, anon2, thread2 = _chat()
    assert _ask(anon2, thread2, {"content": "first"}).body["usage"]["cache_hit"] is True


def test_an_anonymous_turn_within_the_ceiling_counts_its_cost_in_the_days_ledger_and_releases_its_reservation(
    daily_limit, anon_ai, app_container, clear_services, db
):
    add_model(db)
    _, anon, thread = _chat()
    costs = []
    for question in ("one", "two"):
        reply = _ask(anon, thread, {"content": question})
        assert reply.status == 200, reply
        costs.append(Decimal(reply.body["usage"]["cost_usd"]))
    assert costs[0] > 0 and _count(db, DAY_SPENT) == sum(costs)
    assert _count(db, RESERVATIONS) == 0
    assert db.execute("SELECT day FROM ai_anonymous_spend_days").fetchall() == [(datetime.now(UTC).date(),)]
    # Users' spend is not the anonymous day's.
    assert _count(db, "SELECT count(*) FROM ai_spend_months") == 0


def test_a_failed_provider_call_releases_the_anonymous_reservation_and_counts_nothing_spent(
    daily_limit, anon_ai, app_container, clear_services, db, monkeypatch
):
    add_model(db)
    conversation, anon, thread = _chat()

    def fail(self, request):
        raise provider_failed("local", 503, "test")

    monkeypatch.setattr(LocalProvider, "complete", fail)
    # Each failed call's worst case (about 0.4 USD) would fill the ceiling if its reservation stayed.
    for _ in range(3):
        assert _ask(anon, thread, {"content": "keep me"}, key="k-1").status == 503
    assert _count(db, RESERVATIONS) == 0 and _count(db, DAY_SPENT) == 0
    assert _count(db, "SELECT count(*) FROM messages WHERE conversation_id = %s", conversation) == 1


def test_concurrent_anonymous_turns_cannot_overspend_the_ceiling_when_they_race(
    daily_limit, anon_ai, app_container, clear_services, db, monkeypatch
):
    # No input price and 100 tokens out at 6 USD per 1k: each call's worst case is 0.6 USD, and the 1 USD ceiling
    # holds one reservation, not two. Each call takes 0.5 s, so the second checks while the first is in flight.
    add_model(db, price_in="0", price_out="6")
    chats = [_chat(ip=f"198.51.100.{n}") for n in (50, 51)]
    service = bootstrap.completion_service()
    slow = LocalProvider.complete

    def complete(self, request):
        sleep(0.5)
        return slow(self, request)

    monkeypatch.setattr(LocalProvider, "complete", complete)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def ask(conversation: uuid.UUID, thread: uuid.UUID, address: str) -> None:
        start.wait()
        try:
            service.complete_anonymously(conversation, thread, address=address, content="race", max_tokens=100)
            outcomes.append("ok")
        except RateLimitedError:
            outcomes.append("429")
        finally:
            app_container.db.close()  # this thread's connection

    workers = [
        threading.Thread(target=ask, args=(conversation, thread, f"198.51.100.{n}"))
        for (conversation, _, thread), n in zip(chats, (50, 51), strict=True)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcomes) == ["429", "ok"]
    assert 0 < _count(db, DAY_SPENT) <= Decimal("0.6") and _count(db, RESERVATIONS) == 0


def test_no_anonymous_ledger_row_is_written_when_the_ceiling_is_unset(anon_ai, app_container, clear_services, db):
    assert app_container.settings.anonymous_ai_daily_spend_limit_usd is None
    add_model(db)
    _, anon, thread = _chat()
    assert _ask(anon, thread, {"content": "hello"}).status == 200
    assert _count(db, "SELECT count(*) FROM ai_anonymous_spend_days") == 0 and _count(db, RESERVATIONS) == 0
