"""The `confab` command: serve the API locally, run migrations, and operator tasks."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Sequence

from shared.settings import Settings, get_settings

LOCAL_DB_NAME = "confab"


# Where a password sits in a URL (up to the last "@": an unencoded one belongs to it), among a URL's parameters, or
# in a keyword string. sslpassword (the client key's passphrase) is as secret.
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:(?P<pw>.*)@")
_URL_PARAM_PASSWORD = re.compile(r"[?&](?:ssl)?password=(?P<pw>[^&]*)")
_KEYWORD_PASSWORD = re.compile(r"(?:^|\s)(?:ssl)?password\s*=\s*(?:'(?P<quoted>(?:\\.|[^'\\])*)'|(?P<bare>\S+))")
_QUOTED = re.compile(r'"([^"]+)"')


def _passwords(database_url: str) -> set[str]:
    from urllib.parse import unquote

    found = [m["pw"] for m in (_URL_PASSWORD.match(database_url),) if m]
    found += [m["pw"] for m in _URL_PARAM_PASSWORD.finditer(database_url)]
    found += [m["quoted"] or m["bare"] for m in _KEYWORD_PASSWORD.finditer(database_url)]
    return {form for password in found if password for form in (password, unquote(password)) if form}


def _overlaps(piece: str, secret: str) -> bool:
    # Both are stretches of the one URL (libpq quotes a stretch it could not parse, which may run on past the
    # password's end, or begin before it): they overlap if one holds the other or one begins where the other ends.
    if piece in secret or secret in piece:
        return True
    return any(secret.endswith(piece[:n]) or secret.startswith(piece[-n:]) for n in range(1, len(piece)))


def redact_password(message: str, database_url: str | None) -> str:
    """`message` without the passwords of `database_url`, nor any quoted piece that overlaps one: libpq quotes what
    it could not parse, and that is often the whole URL or a password that was not percent-encoded."""
    if not database_url:
        return message
    secrets = _passwords(database_url)
    if not secrets:
        return message
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return _QUOTED.sub(
        lambda m: '"***"' if any(_overlaps(m.group(1), secret) for secret in secrets) else m.group(0), message
    )


def _database_url(settings: Settings) -> str:
    """DATABASE_URL, checked before use and given DB_CONNECT_TIMEOUT unless it sets connect_timeout itself."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = settings.database_url or ""
    try:
        parsed = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = redact_password(" ".join(str(exc).split()), url)
        raise ValueError(f"DATABASE_URL is not a PostgreSQL URL: {reason}") from None
    if "connect_timeout" in parsed:
        return url
    # Without it, a port that accepts and never answers (a tunnel to a stopped server) holds every command
    # for psycopg's default of 130 s.
    return make_conninfo(url, connect_timeout=settings.db_connect_timeout_s)


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise the embedded PostgreSQL in the project's data folder."""
    if settings.database_url:
        return _database_url(settings)
    from shared.local.embedded import ensure_database, start_embedded

    server = start_embedded(settings.local_data_dir)
    url = ensure_database(server, LOCAL_DB_NAME)
    # Everything built after this point (the composition root included) reads the same URL.
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    return url


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from shared.migrations import migrate

    settings = get_settings()
    applied = migrate(resolve_database_url(settings), settings.migrations_dir)
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    print("database is up to date" if not applied else f"{len(applied)} migration(s) applied")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    import psycopg

    from shared.migrations import status

    settings = get_settings()
    with psycopg.connect(resolve_database_url(settings), autocommit=True) as conn:
        rows = status(conn, settings.migrations_dir)
    for row in rows:
        when = row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-"
        print(f"{row.version:04d}  {row.state:<8}  {when:<25}  {row.name}")
    return 1 if any(row.state in ("changed", "missing") for row in rows) else 0


def cmd_db_grant_app_role(args: argparse.Namespace) -> int:
    import psycopg

    from shared.app_role import grant_app_role

    password = _read_password(args)
    settings = get_settings()
    with psycopg.connect(resolve_database_url(settings), autocommit=True) as conn:
        created = grant_app_role(conn, args.role, password)
    print(f"{'created' if created else 'granted'} role {args.role}: rows only, no schema changes")
    return 0


def _exit_once(*_: object) -> None:
    # A second SIGTERM (a supervisor repeating itself) must not interrupt the orderly exit of the first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.exit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    from shared.bootstrap import container
    from shared.local.invocations import silence_empty_metrics_warning
    from shared.local.scheduler import PeriodicTask
    from shared.local.server import LocalApi, make_server
    from shared.local.workers import worker_pool
    from shared.migrations import migrate
    from shared.services.maintenance import run_maintenance

    # SIGTERM ends the server like Ctrl-C, so the embedded PostgreSQL is stopped on the way out; so does SIGHUP
    # (the terminal window closed), which would otherwise end the process without its exit handlers. Unless it
    # is ignored already: `nohup confab serve &` asked for a server that outlives the terminal.
    signal.signal(signal.SIGTERM, _exit_once)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _exit_once)
    # Invocations run here with LOCAL_WORKERS=1 (the workers silence it themselves).
    silence_empty_metrics_warning()
    settings = get_settings()
    url = resolve_database_url(settings)
    migrate(url, settings.migrations_dir)
    if settings.is_local:
        from shared.services.catalog import LOCAL_MODEL_ID, seed_local_model

        # A usable model on a fresh start: GET /v1/models lists it, and a completion on a thread that names
        # no model uses it unless DEFAULT_MODEL_ID says otherwise (idempotent; never in AWS stages).
        # Anonymous conversations are answered by it too (ANONYMOUS_AI_MODEL_ID), so a local chat widget works
        # without an account; an AWS stage turns anonymous AI on only by setting it.
        local_models = {"DEFAULT_MODEL_ID": get_settings().default_model_id}
        local_models["ANONYMOUS_AI_MODEL_ID"] = get_settings().anonymous_ai_model_id
        unset = [name for name, value in local_models.items() if not value]
        for name in unset:
            os.environ[name] = LOCAL_MODEL_ID
        if unset:
            get_settings.cache_clear()
            container.cache_clear()
        seed_local_model(container().db)
    # Each invocation in flight in a worker process of its own (LOCAL_WORKERS), started on first need; they read
    # the environment as it is now (DATABASE_URL and DEFAULT_MODEL_ID included).
    api = LocalApi(workers=worker_pool(get_settings()))
    try:
        server = make_server(api, args.host, args.port)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        raise ValueError(f"cannot listen on {where}: {exc.strerror} (another server? try --port)") from None
    deps = container()
    # EventBridge's part locally: maintenance on a timer (MAINTENANCE_INTERVAL_SECONDS, 0 turns it off).
    timer = None
    if get_settings().maintenance_interval_s > 0:
        timer = PeriodicTask(
            get_settings().maintenance_interval_s,
            lambda: run_maintenance(deps.db, deps.settings),
            name="confab-maintenance",
            on_exit=deps.db.provider.discard,
        ).start()
    print(f"Confab API on http://{args.host}:{args.port}  (Swagger UI at /docs, OpenAPI at /openapi.json)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        try:
            # Before the embedded PostgreSQL stops (exit handlers): workers record their usage events on the way out.
            api.close()
        finally:
            if timer is not None:
                timer.stop()
            # Queued usage events are recorded before the process exits.
            deps.close()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_users_create_admin(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from shared.bootstrap import container
    from shared.errors import AppError
    from shared.migrations import migrate
    from shared.models.identity import SignupRequest
    from shared.services.accounts import create_super_admin

    password = _read_password(args)
    try:
        # The same rules as signup for the name and address.
        SignupRequest(username=args.username, email=args.email, password=password)
    except ValidationError as exc:
        fields = ", ".join(str(error["loc"][0]) for error in exc.errors())
        raise ValueError(f"invalid {fields}") from None
    settings = get_settings()
    migrate(resolve_database_url(settings), settings.migrations_dir)
    built = container()
    try:
        user = create_super_admin(built.db, built.settings, args.username, args.email, password)
    except AppError as exc:
        raise ValueError(exc.detail) from None
    print(f"created super_admin {user.username} ({user.id})")
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    import json

    from shared.bootstrap import build_container
    from shared.migrations import migrate
    from shared.services.maintenance import run_maintenance

    settings = get_settings()
    migrate(resolve_database_url(settings), settings.migrations_dir)
    deps = build_container(get_settings())
    try:
        result = run_maintenance(deps.db, deps.settings, budget_s=args.budget)
    finally:
        deps.close()
    # The same answer as functions/maintenance.py; run_id names the maintenance_runs row (None when busy).
    summary = {"status": result.status, "deleted": result.deleted, "batches": result.batches, "run_id": result.run_id}
    print(json.dumps({**summary, "failed": result.failed} if result.failed else summary))
    if result.failed:
        return 1
    return 3 if result.status == "lease_lost" else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="confab", description="Confab: a serverless backend for AI chat apps")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve every route locally on the embedded PostgreSQL (or DATABASE_URL)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.set_defaults(func=cmd_serve)

    maintenance = sub.add_parser("maintenance", help="run the scheduled clean-up once (expired cache, old chats...)")
    maintenance.add_argument("--budget", type=float, default=None, help="seconds to spend (default: the setting)")
    maintenance.set_defaults(func=cmd_maintenance)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_db_migrate)
    db_sub.add_parser("status", help="list migrations and whether each is applied").set_defaults(func=cmd_db_status)
    grant = db_sub.add_parser(
        "grant-app-role", help="create (if missing) and grant a role that may read and write rows only"
    )
    grant.add_argument("--role", default="confab_app", help="the role's name (default confab_app)")
    grant.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    grant.set_defaults(func=cmd_db_grant_app_role)

    users = sub.add_parser("users", help="operator tasks on accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create_admin = users_sub.add_parser("create-admin", help="create a super_admin (no route can)")
    create_admin.add_argument("--username", required=True)
    create_admin.add_argument("--email", required=True)
    create_admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    create_admin.set_defaults(func=cmd_users_create_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        # Ctrl-C before the server is up (PostgreSQL starting, migrations): one line, not a stack trace. The exit
        # handlers still stop an embedded PostgreSQL this process started.
        print("confab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Operator-facing: one clear line, no stack trace.
        import psycopg

        from shared.migrations import MigrationError

        if isinstance(exc, MigrationError | ValueError):
            print(f"confab: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, psycopg.OperationalError):
            # psycopg names the host, port and user; a value it could not use may be (part of) the password.
            reason = redact_password(" ".join(str(exc).split()), get_settings().database_url)
            print(f"confab: cannot use the database: {reason}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
