"""The database role the functions connect as: rows only, never the schema.

In AWS the master user owns the schema and applies the migrations; every route, the authorizer, the usage
aggregator and the maintenance job connect as the application role instead (through RDS Proxy, or with its own
secret). It may read and write rows and call Confab's functions, and nothing else: it cannot create, alter,
drop or truncate tables, and it cannot rewrite the migration history. A bug or an injected statement in a
function therefore cannot change the schema or delete a table.

The migration trigger calls `grant_app_role` after the migrations, as the master user: it creates the role
when it is missing (with the password of the role's own secret) and grants what it needs on everything that
exists, plus default privileges for what later migrations create, and sets its sessions' time limits (below).
It never changes an existing role's password: the role's secret rotates on its own schedule, and resetting it
here could undo a rotation.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from shared.observability import logger

ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = %s"
CREATE_ROLE = "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {password}"

# What the application may do; everything else (DDL, TRUNCATE, triggers, references) it may not.
GRANTS = (
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
    # Tables, sequences and functions that later migrations create (as the same master user) follow suit.
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {role}",
    # The migration history is the migration runner's: the application may read it (health reports the
    # schema version) but not change it.
    "REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {role}",
)

# Limits on the role's sessions in this database, set on every deploy (the master, running migrations, has none).
# A statement still running when API Gateway gives up (29 s) answers nobody but keeps the database busy; a search
# for a common word or a report over a long month would go on after its caller left, and every retry would add
# one more. Past STATEMENT_TIMEOUT PostgreSQL cancels it and the handler answers 503 with Retry-After. A session
# left idle inside a transaction (a function frozen or killed mid-request) would hold its row locks until the
# proxy noticed; past IDLE_IN_TRANSACTION_TIMEOUT PostgreSQL ends it.
STATEMENT_TIMEOUT = "20s"
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
SESSION_LIMITS = (
    ("statement_timeout", STATEMENT_TIMEOUT),
    ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT),
)
SET_LIMIT = "ALTER ROLE {role} IN DATABASE {database} SET {name} = {value}"


def grant_app_role(conn: psycopg.Connection[Any], role: str, password: str) -> bool:
    """Create `role` (LOGIN, no other attribute) if missing and grant it row access; True if it was created.

    Run as the schema owner, in autocommit or inside the caller's transaction; safe to repeat."""
    if not role or not password:
        raise ValueError("The application role needs a name and a password.")
    names = {"role": sql.Identifier(role), "database": sql.Identifier(conn.info.dbname)}
    created = conn.execute(ROLE_EXISTS, (role,)).fetchone() is None
    if created:
        # A utility statement takes no bind parameters, and its text can reach the server's log (log_statement=ddl,
        # or any error): it carries a SCRAM-SHA-256 verifier computed here, never the password itself.
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(sql.SQL(CREATE_ROLE).format(role=names["role"], password=sql.Literal(verifier)))
    for grant in GRANTS:
        conn.execute(sql.SQL(grant).format(**names))
    for name, value in SESSION_LIMITS:
        conn.execute(sql.SQL(SET_LIMIT).format(**names, name=sql.Identifier(name), value=sql.Literal(value)))
    logger.info("application role ready", extra={"role": role, "role_created": created})
    return created


def grant_app_role_of_secret(conninfo: dict[str, Any], secret_arn: str) -> bool:
    """grant_app_role for the role an RDS secret names, connecting as the schema owner with `conninfo`."""
    from shared.bootstrap import secret_credentials

    app = secret_credentials(secret_arn)
    with psycopg.connect(autocommit=True, prepare_threshold=None, **conninfo) as conn:
        return grant_app_role(conn, app["user"], app["password"])
