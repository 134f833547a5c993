"""Whether the service can do its work."""

from __future__ import annotations

from pydantic import BaseModel

from shared.db import Database
from shared.repositories.meta import MetaRepository


class Health(BaseModel):
    status: str
    database: str
    migration_version: int | None


def check_health(db: Database) -> Health:
    """Reach the database and read the applied migration version; UnavailableError when it cannot."""
    version = db.read(lambda uow: MetaRepository(uow.conn).migration_version())
    return Health(status="ok", database="ok", migration_version=version)
