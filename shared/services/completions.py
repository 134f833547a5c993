"""Completions: context, cache, spend limit, provider call, messages and one usage event per call.

No transaction is open while the provider thinks. A thread turn is: (1) one read of everything the context
needs (no commit); (2) with a cacheable request, one read of the cache; (3) with a spend limit, a short
transaction reserving the worst-case cost; (4) the provider call; (5) one transaction, one round trip and
one commit storing the user's message, the answer, their record, the cache entry and the settlement.
A failed provider call still stores the user's message, so nothing the user sent is lost, and a retry with
the same idempotency key finishes that turn; a crash during the call leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from shared.db import Database, UnitOfWork
from shared.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    UnprocessableError,
)
from shared.events.usage import MOST_COST_USD, UsageEvent, UsagePublisher
from shared.models.money import NO_COST, Money
from shared.observability import logger
from shared.providers.base import (
    ChatMessage,
    ProviderRequest,
    ProviderResult,
    alternating,
    estimate_tokens,
    most_tokens,
    provider_failed,
)
from shared.providers.registry import ProviderRegistry
from shared.repositories.catalog import CatalogRepository, ModelRow
from shared.repositories.completions import (
    ANONYMOUS_DAYS,
    USER_MONTHS,
    CompletionContext,
    CompletionsRepository,
    PriorTurn,
    SpendLedger,
)
from shared.repositories.rate_limits import RateLimitsRepository
from shared.services.message_content import check_content
from shared.services.templates import count_template_use, usable_template
from shared.settings import Settings

CENTS8 = Decimal("0.00000001")
HISTORY_LIMIT = 200


class TokenCounts(BaseModel):
    tokens_input: int
    tokens_output: int
    tokens_cached: int


class CompletionUsage(TokenCounts):
    cost_usd: Money
    cost_avoided_usd: Money
    cache_hit: bool
    latency_ms: int
    model: str
    provider: str


class CompletionMessage(BaseModel):
    id: int
    conversation_id: UUID
    thread_id: UUID | None
    sender_kind: str
    content: str
    model_id: str | None
    created_at: datetime


class ThreadCompletion(BaseModel):
    message: CompletionMessage
    user_message_id: int
    usage: CompletionUsage
    finish_reason: str = "stop"


class ChatCompletion(BaseModel):
    text: str
    usage: CompletionUsage
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Prices:
    input: Money
    output: Money
    cached_input: Money | None

    @classmethod
    def of(cls, model: ModelRow) -> Prices:
        return cls(model.per_1k_input_tokens_usd, model.per_1k_output_tokens_usd, model.per_1k_cached_input_tokens_usd)

    def cost(self, tokens_input: int, tokens_output: int, tokens_cached: int = 0) -> Decimal:
        """Cost from catalog prices; cached input is billed at its own price where the provider has one."""
        cached = min(tokens_cached, tokens_input)
        cached_price = self.cached_input if self.cached_input is not None else self.input
        total = (
            Decimal(tokens_input - cached) * self.input
            + Decimal(cached) * cached_price
            + Decimal(tokens_output) * self.output
        ) / 1000
        return total.quantize(CENTS8, rounding=ROUND_HALF_UP)


@dataclass
class Plan:
    """Everything decided before the provider call."""

    user_id: UUID | None  # None: an anonymous conversation's turn (no account: the anonymous day's ledger)
    model: ModelRow
    request: ProviderRequest
    cache_key: str | None
    month: date  # a user's spend month (UTC)
    day: date  # an anonymous call's spend day (UTC)
    reservation_id: int | None = None  # the spend reservation made for the call, when there is a limit
    address: str | None = None  # an anonymous call's client address (its rate is counted before the call)
    conversation_id: UUID | None = None
    thread_id: UUID | None = None
    content: str = ""  # the user's message of a thread turn
    idempotency_key: str | None = None
    query_size: int = 0
    message_id: int | None = None  # the AI message this call's answer was stored as, once it is
    recorded: bool = False  # the unit of work storing the call's outcome committed
    template_id: UUID | None = None  # the agent template the turn used: counted with its record
    streaming: bool = False  # the answer was asked for as an event stream (the usage event's flag)


def cache_key(model: ModelRow, request: ProviderRequest, scope: UUID | str | None) -> str:
    """A hash over model, system prompt, context and parameters (and the user, or an anonymous conversation, when
    the context is private)."""
    material = {
        "v": 1,
        "model": model.model_id,
        "upstream": model.upstream_model,
        "provider": model.provider,
        "messages": [[m.role, m.content] for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "scope": str(scope) if scope else None,
        # Only when given, so that the keys of entries stored before stop sequences existed still match.
        **({"stop": list(request.stop)} if request.stop else {}),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def month_of(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


def _seconds_to_next_month(now: datetime) -> int:
    start = month_of(now)
    return _seconds_until(date(start.year + (start.month == 12), start.month % 12 + 1, 1), now)


def _seconds_to_next_day(now: datetime) -> int:
    return _seconds_until(now.astimezone(UTC).date() + timedelta(days=1), now)


def _seconds_until(day: date, now: datetime) -> int:
    return max(1, int((datetime(day.year, day.month, day.day, tzinfo=UTC) - now).total_seconds()))


def _replay(prior: PriorTurn | None, thread_id: UUID, content: str) -> ThreadCompletion | None:
    """The answer to return again when the idempotency key's turn was answered; None when there is none; a
    conflict when the key names another message (in another thread, or asking something else)."""
    if prior is None:
        return None
    if prior.thread_id != thread_id:
        # Keys are unique per conversation and sender: this one stored a message in another thread (a turn or a
        # send), so this request is not a retry of it.
        raise ConflictError("The idempotency key was used for a message in another thread of this conversation.")
    if not prior.asks_for(content):
        # A client whose key counter restarted: answering the key's turn again, or asking the model about its
        # message, would tell it that this question was answered. Refused before anything is stored or bought.
        raise ConflictError("The idempotency key was used for another message in this conversation.")
    if prior.answer is None:
        return None  # the first attempt failed at the provider: its stored message is asked about again
    # A retry of a turn that was answered: the same answer, and no second call.
    return ThreadCompletion(
        message=CompletionMessage.model_validate(prior.answer),
        user_message_id=prior.id,
        usage=CompletionUsage.model_validate(prior.answer["usage"]),
        finish_reason=_recorded_finish(prior.answer["usage"]),
    )


def _recorded_finish(usage: dict[str, Any]) -> str:
    """Why a recorded answer ended: kept beside its usage in `ai_completions.usage` (records made before it was
    kept say nothing, and read "stop", as they were answered)."""
    return str(usage.get("finish_reason") or "stop")


class CompletionService:
    def __init__(
        self,
        db: Database,
        providers: ProviderRegistry,
        publisher: UsagePublisher,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._db = db
        self._providers = providers
        self._publisher = publisher
        self._settings = settings
        self._clock = clock

    # Thread completions ----------------------------------------------------------------------------------

    def complete_in_thread(
        self,
        user_id: UUID,
        thread_id: UUID,
        *,
        content: str,
        model_id: str | None = None,
        template_id: UUID | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        idempotency_key: str | None = None,
    ) -> ThreadCompletion:
        """Answer the user's message from the cache or the model, store both messages, report usage."""
        _check_turn_content(self._settings, content)
        context = self._db.statement(
            lambda uow: CompletionsRepository(uow.conn).context(
                thread_id=thread_id,
                user_id=user_id,
                model_id=model_id,
                default_model_id=self._settings.default_model_id,
                history_limit=HISTORY_LIMIT,
                idempotency_key=idempotency_key,
            )
        )
        if context is None:
            raise NotFoundError("No such thread.")
        thread, prior = context.thread, context.prior
        replay = _replay(prior, thread.id, content)
        if replay is not None:
            return replay
        model = self._checked_model(model_id or thread.model_id or self._settings.default_model_id, context.model)
        system = [model.system_prompt] if model.system_prompt else []
        if template_id is not None:
            system.append(self._db.statement(lambda uow: usable_template(uow, user_id, template_id)).prompt_template)
        tone, info = context.tone, context.additional_info
        private = bool(tone or info)
        if private:
            system.append(_properties_prompt(tone, info))
        turn_content, chosen, request = self._turn_request(
            model, system, context, content, temperature=temperature, max_tokens=max_tokens
        )
        # Thread history and user properties are private: such a context is cached per user.
        scope = user_id if private or chosen > 1 else None
        plan = self._plan(
            user_id,
            model,
            request,
            scope,
            conversation_id=thread.conversation_id,
            thread_id=thread.id,
            content=turn_content,
            idempotency_key=idempotency_key,
            query_size=len(turn_content),
            template_id=template_id,
        )
        return self._answer_turn(plan)

    # Anonymous conversations ---------------------------------------------------------------------------

    def complete_anonymously(
        self,
        conversation_id: UUID,
        thread_id: UUID,
        *,
        address: str,
        content: str,
        model_id: str | None = None,
        template_id: UUID | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        idempotency_key: str | None = None,
    ) -> ThreadCompletion:
        """A thread turn for an anonymous conversation's token (`conversation_id`, the one it names): answered by
        ANONYMOUS_AI_MODEL_ID only, bounded per conversation (its message limit and ANONYMOUS_AI_TURN_LIMIT), per
        client address (ANONYMOUS_AI_RATE_LIMIT) and, for all anonymous conversations together, per UTC day
        (ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD), all checked before the provider is called. Otherwise a
        user's turn: the message kept when the provider fails, one commit for the record, the same key rules."""
        settings = self._settings
        anonymous_model_id = self._anonymous_model(content, model_id=model_id, template_id=template_id)
        message_limit = settings.anonymous_message_limit
        turn_limit = settings.anonymous_ai_turn_limit
        context = self._db.statement(
            lambda uow: CompletionsRepository(uow.conn).anonymous_context(
                thread_id=thread_id,
                conversation_id=conversation_id,
                model_id=anonymous_model_id,
                history_limit=HISTORY_LIMIT,
                idempotency_key=idempotency_key,
                message_limit=message_limit,
                turn_limit=turn_limit,
            )
        )
        if context is None:
            raise NotFoundError("No such thread.")
        thread, prior = context.thread, context.prior
        replay = _replay(prior, thread.id, content)
        if replay is not None:
            return replay
        _check_anonymous_bounds(context, message_limit, turn_limit)
        model = self._checked_model(anonymous_model_id, context.model, field=None)
        system = [model.system_prompt] if model.system_prompt else []
        turn_content, chosen, request = self._turn_request(
            model, system, context, content, temperature=temperature, max_tokens=max_tokens
        )
        # The conversation's history is private to it: never answered from, or for, another chat or a user. (A
        # conversation id is never a user id, and the prefix keeps the two apart whatever the ids.)
        scope = f"anonymous:{thread.conversation_id}" if chosen > 1 else None
        plan = self._plan(
            None,
            model,
            request,
            scope,
            conversation_id=thread.conversation_id,
            thread_id=thread.id,
            content=turn_content,
            idempotency_key=idempotency_key,
            query_size=len(turn_content),
            address=address,
        )
        return self._answer_turn(plan)

    def _anonymous_model(self, content: str, *, model_id: str | None, template_id: UUID | None) -> str:
        """The model anonymous conversations are answered by; 403 when there is none (anonymous AI is off), 422
        for a request that names a model or a template, or content that cannot be stored."""
        anonymous_model_id = self._settings.anonymous_ai_model_id
        if not anonymous_model_id:
            # Refused before anything is read: the answer is the same for every thread id, so it reveals nothing.
            raise ForbiddenError(
                "AI answers are not available in anonymous conversations here.", reason="anonymous_ai_off"
            )
        chosen = [name for name, value in (("model_id", model_id), ("template_id", template_id)) if value is not None]
        if chosen:
            # The operator chose the model (its price bounds what a chat can spend); a template is a user's.
            raise UnprocessableError(
                "An anonymous conversation cannot choose its model or a template.",
                errors=[{"loc": ["body", name], "type": "not_allowed"} for name in chosen],
            )
        _check_turn_content(self._settings, content)
        return anonymous_model_id

    def _reserve_anonymous(self, uow: UnitOfWork, plan: Plan, worst: Decimal) -> int | None:
        """Count an anonymous provider call for the client's address (and its IPv6 /48) in the fixed-window counters
        that count anonymous creations (under keys of their own), then reserve its worst case in the day's ledger of
        all anonymous conversations (_reserve_within); 429 with Retry-After past either. In one transaction: a
        refused call rolls its counts back. The counter rows' locks, then the day's, make concurrent calls count one
        after another (always in that order), so the limits are exact."""
        settings = self._settings
        assert plan.address is not None
        RateLimitsRepository(uow.conn).count_client(
            plan.address,
            window_s=settings.anonymous_ai_window_s,
            limit=settings.anonymous_ai_rate_limit,
            network_limit=settings.anonymous_ai_rate_limit_per_ipv6_48,
            what="AI answers for anonymous conversations",
            prefix="ai:",
        )
        return self._reserve_within(uow, plan, worst)

    def _spend_ledger(self, plan: Plan) -> tuple[SpendLedger, dict[str, Any], Decimal | None]:
        """The ledger a call's spend is counted in (the user's month, or all anonymous conversations' day), its
        row's key, and the limit it has (None: no limit)."""
        if plan.user_id is None:
            return ANONYMOUS_DAYS, {"day": plan.day}, self._settings.anonymous_ai_daily_spend_limit_usd
        return USER_MONTHS, {"user_id": plan.user_id, "month": plan.month}, self._settings.monthly_spend_limit_usd

    def _reserve_within(self, uow: UnitOfWork, plan: Plan, worst: Decimal) -> int | None:
        """With a spend limit, reserve the call's worst case in its ledger, or answer 429 (Retry-After: when the
        ledger's period ends); the reservation's id, when one was made."""
        ledger, key, limit = self._spend_ledger(plan)
        if limit is None:
            return None
        repo = CompletionsRepository(uow.conn)
        spent, reserved = repo.lock_spend(ledger, key)
        if spent + reserved + worst > limit:
            if plan.user_id is not None:
                raise RateLimitedError(
                    "The monthly spend limit is reached.", retry_after=_seconds_to_next_month(self._clock())
                )
            raise RateLimitedError(
                "AI answers for anonymous conversations have reached today's spend limit; sign in, or try again "
                "tomorrow.",
                retry_after=_seconds_to_next_day(self._clock()),
                reason="anonymous_ai_daily_spend_limit",
            )
        if not worst:
            return None  # a free model: nothing to reserve
        # It counts until settled, or until no call could still be running (a call cut off never settles).
        return repo.reserve_spend(ledger, key, worst, lease_s=2 * self._settings.provider_timeout_s + 60)

    def _turn_request(
        self,
        model: ModelRow,
        system: list[str],
        context: CompletionContext,
        content: str,
        *,
        temperature: float | None,
        max_tokens: int | None,
    ) -> tuple[str, int, ProviderRequest]:
        """A thread turn's provider request: the system prompts, then as many of the thread's newest messages as fit
        the model's window. (The turn's content, how many messages were chosen, the request.)"""
        prior = context.prior
        # A retry of a turn whose provider call failed asks about the message stored then (it is in the history).
        turn_content = prior.content if prior is not None else content
        history = context.history if prior is not None else [("user", turn_content), *context.history]
        out_tokens = min(max_tokens or model.max_output_tokens, model.max_output_tokens)
        chosen = _fit(system, history, model.context_window_tokens - out_tokens)
        request = ProviderRequest(
            model=model.upstream_model,
            messages=tuple(ChatMessage("system", s) for s in system) + alternating(chosen),
            temperature=self._temperature(temperature),
            max_tokens=out_tokens,
        )
        return turn_content, len(chosen), request

    def _answer_turn(self, plan: Plan) -> ThreadCompletion:
        """Answer a planned thread turn from the cache or the model, record it and report its usage."""
        hit = self._cached(plan)
        if hit is not None:
            text, usage, finish_reason = hit

            def finish_hit(uow: UnitOfWork) -> ThreadCompletion:
                self._count_hit(uow, plan)
                return self._finish_thread(uow, plan, text, usage, finish_reason)

            answer = self._db.pipelined(finish_hit)
            self._publish(plan, usage, len(text))
            return answer
        self._reserve(plan)
        try:
            result, latency_ms = self._call(plan)
        except Exception:
            # Nothing bought: the reservation is released. Nothing the user sent is lost: the message is kept,
            # and a retry with the same key finishes the turn.
            self._salvage(plan, spent=Decimal(0))
            raise

        usage = self._usage(plan, result, latency_ms)

        def finish(uow: UnitOfWork) -> ThreadCompletion:
            self._settle(uow, plan, result, usage)
            return self._finish_thread(uow, plan, result.text, usage, result.finish_reason)

        # The record is one statement, which PostgreSQL commits on its own; with a settlement, a cache entry or a
        # template use to store beside it, they go out pipelined in one transaction. Either way: one round trip,
        # one commit.
        try:
            pipelined = self._settles(plan, usage) or plan.template_id is not None
            return (self._db.pipelined if pipelined else self._db.statement)(finish)
        except UnavailableError:
            # The database is unreachable or the connection was lost part-way: the COMMIT may have been carried
            # out, so nothing is written again (the reservation counts until it expires: the limit errs safe).
            raise
        except Exception:
            self._salvage(plan, spent=usage.cost_usd)
            raise
        finally:
            # Every provider call is reported, even one whose answer lost to a racing twin's or could not be
            # stored: its tokens were spent.
            self._publish(plan, usage, len(result.text))

    def _finish_thread(
        self, uow: UnitOfWork, plan: Plan, text: str, usage: CompletionUsage, finish: str
    ) -> ThreadCompletion:
        """Send the turn's record (after whatever the caller queued, when the unit of work is pipelined) and
        commit: one round trip, one commit."""
        assert plan.conversation_id is not None and plan.thread_id is not None
        if plan.template_id is not None and plan.user_id is not None:
            count_template_use(uow, plan.user_id, plan.template_id)
        fetch = CompletionsRepository(uow.conn).record(
            thread_id=plan.thread_id,
            conversation_id=plan.conversation_id,
            user_id=plan.user_id,
            content=plan.content,
            idempotency_key=plan.idempotency_key,
            answer=text,
            model_id=plan.model.model_id,
            # Why the answer ended is recorded beside its usage, for a retry with the same key to answer it again.
            usage={**usage.model_dump(mode="json"), "finish_reason": finish},
        )
        uow.commit()
        plan.recorded = True
        recorded = fetch()
        if recorded is None:
            raise NotFoundError("No such thread.")
        message = CompletionMessage.model_validate(recorded.answer)
        if recorded.created:
            plan.message_id = message.id
        return ThreadCompletion(
            message=message,
            user_message_id=recorded.user_message_id,
            usage=usage if recorded.created else CompletionUsage.model_validate(recorded.usage),
            finish_reason=finish if recorded.created else _recorded_finish(recorded.usage),
        )

    # OpenAI-compatible chat ------------------------------------------------------------------------------

    def chat(
        self,
        user_id: UUID,
        *,
        model_id: str,
        messages: Sequence[ChatMessage],
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        streaming: bool = False,
    ) -> ChatCompletion:
        """A stateless chat completion (the OpenAI-compatible API); cached, limited and recorded like any other."""
        model = self._db.statement(lambda uow: self._model(uow, model_id))
        system = (ChatMessage("system", model.system_prompt),) if model.system_prompt else ()
        out_tokens = min(max_tokens or model.max_output_tokens, model.max_output_tokens)
        request = ProviderRequest(
            model=model.upstream_model,
            messages=system + tuple(messages),
            temperature=self._temperature(temperature),
            max_tokens=out_tokens,
            stop=tuple(stop),
        )
        if sum(estimate_tokens(m.content) for m in request.messages) + out_tokens > model.context_window_tokens:
            raise UnprocessableError(
                "The messages do not fit the model's context window with max_tokens of answer.",
                errors=[{"loc": ["body", "messages"], "type": "context_window_exceeded"}],
            )
        # The client sent the whole context itself, so an identical context may be answered for anyone.
        plan = self._plan(
            user_id, model, request, None, query_size=sum(len(m.content) for m in messages), streaming=streaming
        )
        hit = self._cached(plan)
        if hit is not None:
            text, usage, finish_reason = hit
            self._db.transact(lambda uow: self._count_hit(uow, plan))
            self._publish(plan, usage, len(text))
            return ChatCompletion(text=text, usage=usage, finish_reason=finish_reason)
        self._reserve(plan)
        try:
            result, latency_ms = self._call(plan)
        except Exception:
            self._salvage(plan, spent=Decimal(0))  # nothing bought: the reservation is released
            raise
        usage = self._usage(plan, result, latency_ms)
        try:
            if self._settles(plan, usage):
                self._db.transact(lambda uow: self._settle(uow, plan, result, usage))
        except UnavailableError:
            raise  # the COMMIT may have been carried out: see complete_in_thread
        except Exception:
            self._salvage(plan, spent=usage.cost_usd)
            raise
        finally:
            self._publish(plan, usage, len(result.text))
        return ChatCompletion(text=result.text, usage=usage, finish_reason=result.finish_reason)

    # Shared steps ----------------------------------------------------------------------------------------

    def _model(self, uow: UnitOfWork, model_id: str | None) -> ModelRow:
        found = CatalogRepository(uow.conn).model_by_model_id(model_id) if model_id else None
        return self._checked_model(model_id, found, field="model")

    def _checked_model(self, model_id: str | None, model: ModelRow | None, field: str | None = "model_id") -> ModelRow:
        """The active model named. `field` is the request's field that names it, the 422's `loc` as a schema
        error's reads; None when the server chose the model (an anonymous turn's), so no field of the request."""
        if not model_id:
            raise UnprocessableError(
                "Choose a model: the thread has none and no default is set.",
                errors=[{"loc": ["body", field], "type": "missing"}] if field else None,
            )
        if model is None or not model.is_active:
            raise UnprocessableError(
                "The model is unknown or inactive.",
                errors=[{"loc": ["body", field], "type": "unknown"}] if field else None,
            )
        return model

    def _temperature(self, requested: float | None) -> float:
        return 0.0 if requested is None else requested

    def _plan(
        self, user_id: UUID | None, model: ModelRow, request: ProviderRequest, scope: UUID | str | None, **turn: Any
    ) -> Plan:
        """The plan of one call; `scope` is the user (or anonymous conversation) whose private context the answer
        may only be reused for."""
        now = self._clock()
        return Plan(
            user_id=user_id,
            model=model,
            request=request,
            cache_key=self._key(model, request, scope),
            month=month_of(now),
            day=now.astimezone(UTC).date(),
            **turn,
        )

    def _key(self, model: ModelRow, request: ProviderRequest, scope: UUID | str | None) -> str | None:
        cacheable = request.temperature == 0 or self._settings.ai_cache_nondeterministic
        return cache_key(model, request, scope) if cacheable and self._settings.ai_cache_ttl_s > 0 else None

    def _cached(self, plan: Plan) -> tuple[str, CompletionUsage, str] | None:
        """The cached answer, the usage of a hit (no tokens bought, the cost avoided) and why the answer ended (a
        hit on an answer cut at max_tokens is "length" again), or None."""
        key = plan.cache_key
        if key is None:
            return None
        started = time.perf_counter()
        entry = self._db.statement(lambda uow: CompletionsRepository(uow.conn).cache_entry(plan.model.model_id, key))
        if entry is None:
            return None
        usage = CompletionUsage(
            tokens_input=entry.tokens_input,
            tokens_output=entry.tokens_output,
            tokens_cached=0,
            cost_usd=NO_COST,
            cost_avoided_usd=entry.cost_estimate,
            cache_hit=True,
            latency_ms=int((time.perf_counter() - started) * 1000),
            model=plan.model.model_id,
            provider=plan.model.provider,
        )
        return entry.response_text, usage, entry.finish_reason

    def _count_hit(self, uow: UnitOfWork, plan: Plan) -> None:
        assert plan.cache_key is not None
        CompletionsRepository(uow.conn).count_cache_hit(plan.model.model_id, plan.cache_key)

    def _reserve(self, plan: Plan) -> None:
        """Refuse a call whose worst-case cost could not be recorded (422); with a spend limit (a user's month, or
        all anonymous conversations' day), reserve that cost, or answer 429 before the provider.

        The ledger row's lock serializes concurrent reservations, so racing calls cannot overspend."""
        # The worst case for any tokenizer: settling then never takes the month past the limit.
        worst = Prices.of(plan.model).cost(most_tokens(plan.request.messages), plan.request.max_tokens)
        if worst > MOST_COST_USD:
            # Its cost could not be recorded (a mispriced catalog entry and a long context): refused before
            # anything is bought, rather than answered and then failing to store its cache entry or usage.
            raise UnprocessableError(
                f"This request could cost more than ${MOST_COST_USD} in one call; send a shorter context or fewer "
                "max_tokens.",
                errors=[{"loc": ["body"], "type": "value_error", "msg": "worst-case cost out of range"}],
            )
        if plan.user_id is None:
            plan.reservation_id = self._db.transact(lambda uow: self._reserve_anonymous(uow, plan, worst))
        elif self._settings.monthly_spend_limit_usd is not None:
            plan.reservation_id = self._db.transact(lambda uow: self._reserve_within(uow, plan, worst))

    def _call(self, plan: Plan) -> tuple[ProviderResult, int]:
        provider = self._providers.for_model(
            plan.model.provider, base_url=plan.model.endpoint, api_key_secret_arn=plan.model.api_key_secret_arn
        )
        started = time.perf_counter()
        result = provider.complete(plan.request)
        if "\x00" in result.text:
            # PostgreSQL text cannot hold NUL; an answer carrying one is stored with U+FFFD in its place.
            result = replace(result, text=result.text.replace("\x00", "\ufffd"))
        if Prices.of(plan.model).cost(result.usage.input, result.usage.output, result.usage.cached) > MOST_COST_USD:
            # Only token counts past the worst case checked before the call get here: a malformed answer, failed
            # like any provider failure (the user's message kept, the reservation released).
            raise provider_failed(plan.model.provider, 502, "usage_out_of_range")
        return result, int((time.perf_counter() - started) * 1000)

    def _usage(self, plan: Plan, result: ProviderResult, latency_ms: int) -> CompletionUsage:
        """A provider call's usage, priced from the catalog."""
        cost = Prices.of(plan.model).cost(result.usage.input, result.usage.output, result.usage.cached)
        return CompletionUsage(
            tokens_input=result.usage.input,
            tokens_output=result.usage.output,
            tokens_cached=result.usage.cached,
            cost_usd=cost,
            cost_avoided_usd=NO_COST,
            cache_hit=False,
            latency_ms=latency_ms,
            model=plan.model.model_id,
            provider=plan.model.provider,
        )

    def _settles(self, plan: Plan, usage: CompletionUsage) -> bool:
        """Whether _settle writes anything for this call."""
        return self._settles_spend(plan, usage.cost_usd) or plan.cache_key is not None

    def _settles_spend(self, plan: Plan, spent: Decimal) -> bool:
        return plan.reservation_id is not None or (self._spend_ledger(plan)[2] is not None and bool(spent))

    def _settle_spend(self, repo: CompletionsRepository, plan: Plan, spent: Decimal) -> None:
        """Queue the end of the call's reservation and the count of what it spent, in the ledger that has a limit
        (the user's month, or all anonymous conversations' day), when there is one."""
        if self._settles_spend(plan, spent):
            ledger, key, _ = self._spend_ledger(plan)
            repo.settle_spend(ledger, key, reservation_id=plan.reservation_id, spent=spent)

    def _settle(self, uow: UnitOfWork, plan: Plan, result: ProviderResult, usage: CompletionUsage) -> None:
        """Queue the call's spend settlement and its cache entry, where it has them."""
        repo = CompletionsRepository(uow.conn)
        self._settle_spend(repo, plan, usage.cost_usd)
        if plan.cache_key is not None:
            repo.put_cache_entry(
                model=plan.model.model_id,
                prompt_hash=plan.cache_key,
                prompt_summary=f"{len(plan.request.messages)} messages, {plan.query_size} characters",
                response_text=result.text,
                tokens_input=result.usage.input,
                tokens_output=result.usage.output,
                cost_estimate=usage.cost_usd,
                finish_reason=result.finish_reason,
                ttl_s=self._settings.ai_cache_ttl_s,
            )

    def _salvage(self, plan: Plan, *, spent: Decimal) -> None:
        """After a call that failed, or whose outcome the database refused and rolled back (never after a lost
        connection, whose COMMIT may have been carried out), in one transaction of its own: settle the spend at
        what was bought (`spent`, 0 when the provider failed: the reservation is released), and keep the user's
        message of a thread turn, so that nothing the user sent is lost and a retry with the same key finishes
        the turn. Best effort: if this fails too, the caller's error stands."""
        if plan.recorded:
            return

        def keep(uow: UnitOfWork) -> None:
            repo = CompletionsRepository(uow.conn)
            self._settle_spend(repo, plan, spent)
            if plan.thread_id is not None and plan.user_id is None:
                assert plan.conversation_id is not None
                repo.store_anonymous_message(
                    thread_id=plan.thread_id,
                    conversation_id=plan.conversation_id,
                    content=plan.content,
                    idempotency_key=plan.idempotency_key,
                )
            elif plan.thread_id is not None and plan.user_id is not None:
                repo.store_user_message(
                    thread_id=plan.thread_id,
                    user_id=plan.user_id,
                    content=plan.content,
                    idempotency_key=plan.idempotency_key,
                )

        try:
            self._db.transact(keep)
        except Exception:
            logger.exception("a failed completion's spend and message could not be kept")

    def _publish(self, plan: Plan, usage: CompletionUsage, response_size: int) -> None:
        # A cache hit consumed no provider tokens: it reports zero tokens, zero cost and the cost avoided.
        hit = usage.cache_hit
        event = UsageEvent(
            user_id=plan.user_id,
            conversation_id=plan.conversation_id,
            thread_id=plan.thread_id,
            message_id=plan.message_id,
            model=plan.model.model_id,
            provider=plan.model.provider,
            tokens_input=0 if hit else usage.tokens_input,
            tokens_output=0 if hit else usage.tokens_output,
            tokens_cached=0 if hit else usage.tokens_cached,
            query_size=plan.query_size,
            response_size=response_size,
            cost_usd=usage.cost_usd,
            cost_avoided_usd=usage.cost_avoided_usd,
            latency_ms=usage.latency_ms,
            cache_hit=hit,
            streaming=plan.streaming,
        )
        try:
            self._publisher.publish([event])
        except Exception:
            # The answer is committed and every path the publisher has failed (SQS and its synchronous fallback):
            # the whole event is logged, so it can be sent again (recording is idempotent on its id). It holds
            # ids, counts and costs, never the prompt or the answer.
            logger.exception("usage event could not be published", extra={"event": event.model_dump(mode="json")})


def _check_turn_content(settings: Settings, content: str) -> None:
    """422 for a turn's content that could not be sent as a message: longer than MESSAGE_MAX_CHARS (the user's turn
    is stored as a message, which pages and their size bound count on), or holding a character PostgreSQL cannot
    store (a NUL), refused before anything is bought, since after the provider call the record could not store it."""
    check_content(settings, content)
    if "\x00" in content:
        raise UnprocessableError(
            "A value cannot be stored (for example, text with a NUL byte).",
            errors=[{"loc": ["body", "content"], "type": "nul_byte"}],
        )


def _check_anonymous_bounds(context: CompletionContext, message_limit: int, turn_limit: int) -> None:
    """409 when an anonymous conversation's turn would not fit its message limit, or it had all its answers. Read
    from the context's snapshot: concurrent turns can pass either by at most their number."""
    # A turn stores two messages (one, when a failed turn's message is stored already).
    if context.held + (1 if context.prior is not None else 2) > message_limit:
        raise ConflictError(
            f"This anonymous conversation is full: it holds at most {message_limit} messages.", limit=message_limit
        )
    if context.answered >= turn_limit:
        # It never resets (unlike the address's window), so it is 409 as the message limit is, not 429.
        raise ConflictError(
            f"This anonymous conversation has had its {turn_limit} AI answers.",
            limit=turn_limit,
            reason="anonymous_ai_turn_limit",
        )


def _properties_prompt(tone: str | None, info: str | None) -> str:
    parts = []
    if tone:
        parts.append(f"Answer in this tone: {tone}.")
    if info:
        parts.append(f"About the user: {info}")
    return " ".join(parts)


def _fit(system: list[str], history_newest_first: Sequence[tuple[str, str]], budget: int) -> tuple[ChatMessage, ...]:
    """As many recent thread messages (sender kind, content) as fit the budget after the system parts; the newest
    always goes in."""
    remaining = budget - sum(estimate_tokens(s) for s in system)
    chosen: list[ChatMessage] = []
    for sender_kind, content in history_newest_first:
        if sender_kind not in ("user", "ai"):
            continue
        cost = estimate_tokens(content) + 4
        if chosen and cost > remaining:
            break
        if not chosen and cost > remaining:
            raise UnprocessableError(
                "The message does not fit the model's context window with max_tokens of answer.",
                errors=[{"loc": ["body", "content"], "type": "context_window_exceeded"}],
            )
        remaining -= cost
        chosen.append(ChatMessage("assistant" if sender_kind == "ai" else "user", content))
    return tuple(reversed(chosen))
