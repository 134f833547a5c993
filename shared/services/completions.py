"""Completions: context, cache, spend limit, provider call, messages and one usage event per call.

A completion is three short transactions, so no database connection or row lock is held while the
provider thinks: (1) store the user's message, answer from the cache or reserve the worst-case cost;
(2) call the provider; (3) store the AI message and the cache entry and settle the reservation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from shared.db import Database, UnitOfWork
from shared.errors import NotFoundError, RateLimitedError, UnprocessableError
from shared.events.usage import UsageEvent, UsagePublisher
from shared.models.money import Money
from shared.observability import logger
from shared.providers.base import ChatMessage, ProviderError, ProviderRequest, ProviderResult, estimate_tokens
from shared.providers.registry import ProviderRegistry
from shared.repositories.catalog import CatalogRepository, ModelRow
from shared.repositories.completions import CompletionsRepository, MessageRow
from shared.services.templates import use_template
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

    user_id: UUID
    model: ModelRow
    request: ProviderRequest
    cache_key: str | None
    month: date
    reserved: Money = Decimal(0)
    conversation_id: UUID | None = None
    thread_id: UUID | None = None
    user_message: MessageRow | None = None
    query_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def cache_key(model: ModelRow, request: ProviderRequest, scope: UUID | None) -> str:
    """A hash over model, system prompt, context and parameters (and the user, when the context is private)."""
    material = {
        "v": 1,
        "model": model.model_id,
        "upstream": model.upstream_model,
        "provider": model.provider,
        "messages": [[m.role, m.content] for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "scope": str(scope) if scope else None,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def month_of(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


def _seconds_to_next_month(now: datetime) -> int:
    start = month_of(now)
    nxt = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return max(1, int((datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC) - now).total_seconds()))


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
        """Store the user's message, answer it from the cache or the model, store the answer, report usage."""

        def prepare(uow: UnitOfWork) -> ThreadCompletion | ChatCompletion | Plan:
            repo = CompletionsRepository(uow.conn)
            # One round trip: the context, the user's message and the thread's newest messages (pipelined).
            context, user_message, history = repo.open_thread_turn(
                thread_id=thread_id,
                user_id=user_id,
                model_id=model_id,
                default_model_id=self._settings.default_model_id,
                content=content,
                idempotency_key=idempotency_key,
                history_limit=HISTORY_LIMIT,
            )
            if context is None:
                raise NotFoundError("No such thread.")
            thread = context.thread
            if user_message is None:
                # The idempotency key was used already: a retry. Answer it again, or finish what failed.
                if not idempotency_key:
                    raise NotFoundError("No such thread.")
                user_message = repo.message_by_key(thread.conversation_id, user_id, idempotency_key)
                if user_message is None:
                    raise NotFoundError("No such thread.")
                replay = repo.reply(user_message.id)
                if replay is not None:
                    return self._replay(repo, user_message.id, *replay)
                history = repo.recent_thread_messages(thread.id, user_message.id, HISTORY_LIMIT)
            else:
                # Messages committed by others after ours are not part of this turn.
                history = [m for m in history if m.id <= user_message.id]
            model = self._checked_model(model_id or thread.model_id or self._settings.default_model_id, context.model)
            system = [model.system_prompt] if model.system_prompt else []
            if template_id is not None:
                system.append(use_template(uow, user_id, template_id).prompt_template)
            tone, info = context.tone, context.additional_info
            private = bool(tone or info)
            if private:
                system.append(_properties_prompt(tone, info))
            out_tokens = min(max_tokens or model.max_output_tokens, model.max_output_tokens)
            turns = _fit(system, history, model.context_window_tokens - out_tokens)
            request = ProviderRequest(
                model=model.upstream_model,
                messages=tuple(ChatMessage("system", s) for s in system) + turns,
                temperature=self._temperature(temperature),
                max_tokens=out_tokens,
            )
            # Thread history and user properties are private: such a context is cached per user.
            scope = user_id if private or len(turns) > 1 else None
            plan = Plan(
                user_id=user_id,
                model=model,
                request=request,
                cache_key=self._key(model, request, scope),
                month=month_of(self._clock()),
                conversation_id=thread.conversation_id,
                thread_id=thread.id,
                user_message=user_message,
                query_size=len(user_message.content),
            )
            return self._hit_or_reserve(uow, plan)

        prepared = self._db.pipelined(prepare)
        if not isinstance(prepared, Plan):
            assert isinstance(prepared, ThreadCompletion)
            return prepared
        if "hit" in prepared.extra:
            hit, size = prepared.extra["hit"]
            self._publish(prepared, hit.usage, size)
            return hit  # type: ignore[no-any-return]
        result, latency_ms = self._call(prepared)
        answer = self._db.pipelined(lambda uow: self._finish_thread(uow, prepared, result, latency_ms))
        self._publish(prepared, answer.usage, len(result.text))
        return answer

    def _replay(
        self, repo: CompletionsRepository, user_message_id: int, ai_id: int, usage: dict[str, Any]
    ) -> ThreadCompletion:
        message = repo.message(ai_id)
        if message is None:
            raise NotFoundError("No such message.")
        return ThreadCompletion(
            message=CompletionMessage.model_validate(message.model_dump()),
            user_message_id=user_message_id,
            usage=CompletionUsage.model_validate(usage),
        )

    def _record_thread_answer(
        self, uow: UnitOfWork, plan: Plan, text: str, usage: CompletionUsage, finish: str
    ) -> ThreadCompletion:
        repo = CompletionsRepository(uow.conn)
        assert plan.user_message is not None and plan.conversation_id is not None
        ai = repo.add_message(
            conversation_id=plan.conversation_id,
            thread_id=plan.thread_id,
            sender_kind="ai",
            content=text,
            model_id=plan.model.model_id,
        )
        repo.put_reply(plan.user_message.id, ai.id, usage.model_dump(mode="json"))
        plan.extra["message_id"] = ai.id
        return ThreadCompletion(
            message=CompletionMessage.model_validate(ai.model_dump()),
            user_message_id=plan.user_message.id,
            usage=usage,
            finish_reason=finish,
        )

    def _finish_thread(self, uow: UnitOfWork, plan: Plan, result: ProviderResult, latency_ms: int) -> ThreadCompletion:
        # Pipelined: BEGIN, the settlement and cache writes, the answer and COMMIT go out together (one round trip).
        repo = CompletionsRepository(uow.conn)
        assert plan.user_message is not None and plan.conversation_id is not None
        usage = self._settle(uow, plan, result, latency_ms)
        pending = repo.add_answer(
            user_message_id=plan.user_message.id,
            conversation_id=plan.conversation_id,
            thread_id=plan.thread_id,
            content=result.text,
            model_id=plan.model.model_id,
            usage=usage.model_dump(mode="json"),
        )
        uow.commit()
        ai = pending.fetchone()
        assert ai is not None
        plan.extra["message_id"] = ai.id
        return ThreadCompletion(
            message=CompletionMessage.model_validate(ai.model_dump()),
            user_message_id=plan.user_message.id,
            usage=usage,
            finish_reason=result.finish_reason,
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
    ) -> ChatCompletion:
        """A stateless chat completion (the OpenAI-compatible API); cached, limited and recorded like any other."""

        def prepare(uow: UnitOfWork) -> ThreadCompletion | ChatCompletion | Plan:
            model = self._model(uow, model_id)
            system = (ChatMessage("system", model.system_prompt),) if model.system_prompt else ()
            out_tokens = min(max_tokens or model.max_output_tokens, model.max_output_tokens)
            request = ProviderRequest(
                model=model.upstream_model,
                messages=system + tuple(messages),
                temperature=self._temperature(temperature),
                max_tokens=out_tokens,
            )
            if sum(estimate_tokens(m.content) for m in request.messages) + out_tokens > model.context_window_tokens:
                raise UnprocessableError("The messages do not fit the model's context window.")
            # The client sent the whole context itself, so an identical context may be answered for anyone.
            plan = Plan(
                user_id=user_id,
                model=model,
                request=request,
                cache_key=self._key(model, request, None),
                month=month_of(self._clock()),
                query_size=sum(len(m.content) for m in messages),
            )
            return self._hit_or_reserve(uow, plan)

        prepared = self._db.transact(prepare)
        if not isinstance(prepared, Plan):
            assert isinstance(prepared, ChatCompletion)
            return prepared
        if "hit" in prepared.extra:
            hit, size = prepared.extra["hit"]
            self._publish(prepared, hit.usage, size)
            return hit  # type: ignore[no-any-return]
        result, latency_ms = self._call(prepared)

        def finish(uow: UnitOfWork) -> ChatCompletion:
            usage = self._settle(uow, prepared, result, latency_ms)
            return ChatCompletion(text=result.text, usage=usage, finish_reason=result.finish_reason)

        answer = self._db.transact(finish)
        self._publish(prepared, answer.usage, len(result.text))
        return answer

    # Shared steps ----------------------------------------------------------------------------------------

    def _model(self, uow: UnitOfWork, model_id: str | None) -> ModelRow:
        found = CatalogRepository(uow.conn).model_by_model_id(model_id) if model_id else None
        return self._checked_model(model_id, found)

    def _checked_model(self, model_id: str | None, model: ModelRow | None) -> ModelRow:
        if not model_id:
            raise UnprocessableError("Choose a model: the thread has none and no default is set.")
        if model is None or not model.is_active:
            raise UnprocessableError(
                "The model is unknown or inactive.", errors=[{"loc": ["model"], "type": "unknown"}]
            )
        return model

    def _temperature(self, requested: float | None) -> float:
        return 0.0 if requested is None else requested

    def _key(self, model: ModelRow, request: ProviderRequest, scope: UUID | None) -> str | None:
        cacheable = request.temperature == 0 or self._settings.ai_cache_nondeterministic
        return cache_key(model, request, scope) if cacheable and self._settings.ai_cache_ttl_s > 0 else None

    def _hit_or_reserve(self, uow: UnitOfWork, plan: Plan) -> ThreadCompletion | ChatCompletion | Plan:
        repo = CompletionsRepository(uow.conn)
        if plan.cache_key is not None:
            started = time.perf_counter()
            entry = repo.take_cache_entry(plan.model.model_id, plan.cache_key)
            if entry is not None:
                usage = CompletionUsage(
                    tokens_input=entry.tokens_input,
                    tokens_output=entry.tokens_output,
                    tokens_cached=0,
                    cost_usd=Decimal(0),
                    cost_avoided_usd=entry.cost_estimate,
                    cache_hit=True,
                    latency_ms=int((time.perf_counter() - started) * 1000),
                    model=plan.model.model_id,
                    provider=plan.model.provider,
                )
                answer: ThreadCompletion | ChatCompletion
                if plan.user_message is not None:
                    answer = self._record_thread_answer(uow, plan, entry.response_text, usage, "stop")
                else:
                    answer = ChatCompletion(text=entry.response_text, usage=usage)
                # Published by the caller once the transaction has committed.
                plan.extra["hit"] = (answer, len(entry.response_text))
                return plan
        limit = self._settings.monthly_spend_limit_usd
        if limit is not None:
            prices = Prices.of(plan.model)
            prompt = sum(estimate_tokens(m.content) for m in plan.request.messages)
            worst = prices.cost(prompt, plan.request.max_tokens)
            spent, reserved = repo.lock_spend(plan.user_id, plan.month)
            if spent + reserved + worst > limit:
                raise RateLimitedError(
                    "The monthly spend limit is reached.", retry_after=_seconds_to_next_month(self._clock())
                )
            repo.reserve_spend(plan.user_id, plan.month, worst)
            plan.reserved = worst
        return plan

    def _call(self, plan: Plan) -> tuple[ProviderResult, int]:
        provider = self._providers.for_model(
            plan.model.provider, base_url=plan.model.endpoint, api_key_secret_arn=plan.model.api_key_secret_arn
        )
        started = time.perf_counter()
        try:
            result = provider.complete(plan.request)
        except ProviderError:
            if plan.reserved:
                self._db.transact(
                    lambda uow: CompletionsRepository(uow.conn).settle_spend(
                        plan.user_id, plan.month, reserved=plan.reserved, spent=Decimal(0)
                    )
                )
            raise
        return result, int((time.perf_counter() - started) * 1000)

    def _settle(self, uow: UnitOfWork, plan: Plan, result: ProviderResult, latency_ms: int) -> CompletionUsage:
        repo = CompletionsRepository(uow.conn)
        cost = Prices.of(plan.model).cost(result.usage.input, result.usage.output, result.usage.cached)
        if plan.reserved or (self._settings.monthly_spend_limit_usd is not None and cost):
            repo.settle_spend(plan.user_id, plan.month, reserved=plan.reserved, spent=cost)
        if plan.cache_key is not None:
            repo.put_cache_entry(
                model=plan.model.model_id,
                prompt_hash=plan.cache_key,
                prompt_summary=f"{len(plan.request.messages)} messages, {plan.query_size} characters",
                response_text=result.text,
                tokens_input=result.usage.input,
                tokens_output=result.usage.output,
                cost_estimate=cost,
                ttl_s=self._settings.ai_cache_ttl_s,
            )
        return CompletionUsage(
            tokens_input=result.usage.input,
            tokens_output=result.usage.output,
            tokens_cached=result.usage.cached,
            cost_usd=cost,
            cost_avoided_usd=Decimal(0),
            cache_hit=False,
            latency_ms=latency_ms,
            model=plan.model.model_id,
            provider=plan.model.provider,
        )

    def _publish(self, plan: Plan, usage: CompletionUsage, response_size: int) -> None:
        # A cache hit consumed no provider tokens: it reports zero tokens, zero cost and the cost avoided.
        hit = usage.cache_hit
        event = UsageEvent(
            user_id=plan.user_id,
            conversation_id=plan.conversation_id,
            thread_id=plan.thread_id,
            message_id=plan.extra.get("message_id"),
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
        )
        try:
            self._publisher.publish([event])
        except Exception:
            # The answer is committed; the publisher's own fallback is responsible for not losing the event.
            logger.exception("usage event could not be published", extra={"event_id": str(event.event_id)})


def _properties_prompt(tone: str | None, info: str | None) -> str:
    parts = []
    if tone:
        parts.append(f"Answer in this tone: {tone}.")
    if info:
        parts.append(f"About the user: {info}")
    return " ".join(parts)


def _fit(system: list[str], history_newest_first: list[MessageRow], budget: int) -> tuple[ChatMessage, ...]:
    """As many recent thread messages as fit the budget after the system parts; the newest always goes in."""
    remaining = budget - sum(estimate_tokens(s) for s in system)
    chosen: list[ChatMessage] = []
    for message in history_newest_first:
        if message.sender_kind not in ("user", "ai"):
            continue
        cost = estimate_tokens(message.content) + 4
        if chosen and cost > remaining:
            break
        if not chosen and cost > remaining:
            raise UnprocessableError("The message does not fit the model's context window.")
        remaining -= cost
        chosen.append(ChatMessage("assistant" if message.sender_kind == "ai" else "user", message.content))
    return tuple(reversed(chosen))
