"""The usage aggregator: exactly-once totals from at-least-once delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.db import Database, UnitOfWork
from shared.errors import NotFoundError
from shared.events.usage import UsageEvent
from shared.observability import logger
from shared.repositories.usage import UsageRepository, event_rows


@dataclass(frozen=True)
class RecordOutcome:
    received: int  # events handed in, duplicates included
    inserted: int  # events seen for the first time and added to the totals

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


def record_usage(db: Database, events: Sequence[UsageEvent]) -> RecordOutcome:
    """Record a batch in one transaction: new event ids are inserted and added to thread and daily totals.

    Redelivered events (same event_id, whatever transport carried them) change nothing, so callers may
    retry a batch as a whole and duplicates across batches or concurrent consumers are harmless.
    """
    if not events:
        return RecordOutcome(0, 0)
    unique = {event.event_id: event for event in events}
    rows = event_rows(sorted(unique.values(), key=lambda e: e.event_id))

    def work(uow: UnitOfWork) -> int:
        repo = UsageRepository(uow.conn)
        ids = repo.insert_events(rows)
        repo.add_to_totals(ids)
        return len(ids)

    try:
        inserted = db.transact(work)
    except NotFoundError:
        # A referenced user, thread or message was deleted between the insert's lookup and its foreign
        # key check; the whole batch rolled back, and a second run stores that reference as NULL.
        logger.info("usage batch raced a delete; retrying once")
        inserted = db.transact(work)
    return RecordOutcome(received=len(events), inserted=inserted)
