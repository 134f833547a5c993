"""The usage aggregator: exactly-once totals from at-least-once delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from shared.db import Database, UnitOfWork
from shared.errors import NotFoundError, UnprocessableError
from shared.events.usage import UsageEvent
from shared.observability import logger
from shared.repositories.usage import UsageRepository, event_rows


@dataclass(frozen=True)
class RecordOutcome:
    received: int  # events handed in, duplicates included
    inserted: int  # events seen for the first time and added to the totals
    refused: frozenset[UUID] = frozenset()  # ids of events the database would not store; nothing of them was
    refused_received: int = 0  # events handed in with one of those ids

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted - self.refused_received


def record_usage(db: Database, events: Sequence[UsageEvent]) -> RecordOutcome:
    """Record a batch in one transaction: new event ids are inserted and added to thread and daily totals.

    Redelivered events (same event_id, whatever transport carried them) change nothing, so callers may
    retry a batch as a whole and duplicates across batches or concurrent consumers are harmless. If the
    database refuses a value, the events are recorded one at a time and the refused ones are returned.
    """
    if not events:
        return RecordOutcome(0, 0)
    unique = sorted({event.event_id: event for event in events}.values(), key=lambda e: e.event_id)
    try:
        return RecordOutcome(received=len(events), inserted=_apply(db, unique))
    except UnprocessableError:
        # An event the database refuses would fail the batch on every delivery and hold back all the others
        # until every one reached the dead-letter queue: apart, only the refused event fails.
        logger.warning("usage batch refused; recording its events one at a time", extra={"events": len(unique)})
    inserted, refused = 0, set[UUID]()
    for event in unique:
        try:
            inserted += _apply(db, [event])
        except UnprocessableError:
            logger.error("usage event refused by the database", extra={"event": event.model_dump(mode="json")})
            refused.add(event.event_id)
    return RecordOutcome(
        received=len(events),
        inserted=inserted,
        refused=frozenset(refused),
        refused_received=sum(event.event_id in refused for event in events),
    )


def _apply(db: Database, events: Sequence[UsageEvent]) -> int:
    """Insert the events (sorted by event id) and add the new ones to the totals, in one transaction."""
    rows = event_rows(events)

    def work(uow: UnitOfWork) -> int:
        repo = UsageRepository(uow.conn)
        ids = repo.insert_events(rows)
        repo.add_to_totals(ids)
        return len(ids)

    try:
        return db.transact(work)
    except NotFoundError:
        # A referenced user, thread or message was deleted between the insert's lookup and its foreign
        # key check; the whole batch rolled back, and a second run stores that reference as NULL.
        logger.info("usage batch raced a delete; retrying once")
        return db.transact(work)
