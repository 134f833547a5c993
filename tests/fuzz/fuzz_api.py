"""`make fuzz`: schemathesis against the local server's OpenAPI document, as a user and as a super_admin.

Generated requests (valid, invalid and hostile, for every operation) must never get a server error: bad input
is a 4xx problem. Not part of `make test` (it takes minutes); run it after changing routes or validation.
Starts its own embedded PostgreSQL and `confab serve` on a loopback port; schemathesis runs from its own
virtualenv (`make fuzz` makes it), so it is not a dependency of the project.

    python -m tests.fuzz.fuzz_api --schemathesis .venv-fuzz/bin/schemathesis [--max-examples 30]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from shared.migrations import migrate
from shared.settings import PROJECT_ROOT
from tests.conftest import LOCAL_ENV
from tests.e2e.test_local_server import _free_port, _request, start_server
from tests.helpers import admins_first_operations

# Operations that end the caller's session, account or role (the token's version moves on) would leave the rest
# of the run unauthenticated; their own tests cover them.
EXCLUDED_PATHS = r"^/v1/(auth/logout|users/me|users/me/password|users/me/logout-all|admin/users/\{id\})$"
MAX_REFUSED_OPERATIONS = 2
ADMIN = {"username": "fuzz-admin", "email": "fuzz-admin@example.com", "password": "fuzz admin password"}
USER = {"username": "fuzz-user", "email": "fuzz-user@example.com", "password": "fuzz user password"}


def _token(base: str, account: dict[str, str]) -> str:
    status, _, body = _request(
        f"{base}/v1/auth/login", "POST", {"login": account["username"], "password": account["password"]}
    )
    if status != 200:
        raise RuntimeError(f"login as {account['username']} answered {status}: {body[:300]!r}")
    return str(json.loads(body)["access_token"])


def _schemathesis(binary: str, base: str, token: str, max_examples: int, report: Path) -> int:
    command = [
        binary,
        "run",
        f"{base}/openapi.json",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--exclude-path-regex",
        EXCLUDED_PATHS,
        "--max-examples",
        str(max_examples),
        "--workers",
        "2",
        "--seed",
        "20261130",
    ]
    print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in command), flush=True)
    with report.open("w") as out:
        subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    text = report.read_text()
    summary = text[text.rfind("SUMMARY") :]
    print(summary)
    # schemathesis also exits non-zero for its own runtime errors (a crash inside its generator): only
    # failed checks count against Confab, and a run that could not authenticate proves nothing.
    # The routes for administrators answer a user only 403 (before validation: functions/_http.admins_first); any
    # other operation answering only 401 or 403 means the token stopped working part-way, and the rest of the run
    # tested nothing past the authorizer.
    refused = re.search(r"Authentication failed: (\d+) operations", summary)
    listed = refused_operations(text)  # the warnings before the summary name them
    unexpected = listed - admins_first_operations()
    if (refused and int(refused.group(1)) > len(listed)) or len(unexpected) > MAX_REFUSED_OPERATIONS:
        print("schemathesis lost its credentials part-way: the run is not meaningful:", sorted(unexpected))
        return 1
    return 1 if "Failures:" in summary or re.search(r"\d+ failed", summary) else 0


def refused_operations(report: str) -> set[tuple[str, str]]:
    """The operations schemathesis lists under its "401 ..." and "403 ..." groups of refused operations."""
    refused: set[tuple[str, str]] = set()
    in_group = False
    for line in report.splitlines():
        if re.match(r"\s*40[13] \w+ \(\d+ operations?\):", line):
            in_group = True
        elif in_group and (found := re.match(r"\s*- (GET|POST|PUT|PATCH|DELETE) (\S+)", line)):
            refused.add((found.group(1), found.group(2)))
        else:
            in_group = False
    return refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemathesis", required=True, help="the schemathesis executable")
    parser.add_argument("--max-examples", type=int, default=30)
    args = parser.parse_args()

    from shared.local.embedded import start_embedded

    work = Path(tempfile.mkdtemp(prefix="confab-fuzz-"))
    handle = start_embedded(work / "pgdata", cleanup="delete")
    server_url = str(handle.get_uri())
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("confab_fuzz")))
    database_url = psycopg.conninfo.make_conninfo(server_url, dbname="confab_fuzz")
    migrate(database_url, PROJECT_ROOT / "migrations")
    env = {**os.environ, **LOCAL_ENV, "DATABASE_URL": database_url, "CONFAB_FILES_DIR": str(work / "files")}
    port = _free_port()
    proc = start_server(env, port, work / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        status, _, body = _request(f"{base}/v1/auth/signup", "POST", USER)
        if status != 201:
            raise RuntimeError(f"signup answered {status}: {body[:300]!r}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "users",
                "create-admin",
                "--username",
                ADMIN["username"],
                "--email",
                ADMIN["email"],
                "--password-stdin",
            ],
            input=ADMIN["password"].encode(),
            env=env,
            check=True,
        )
        failed = 0
        for who, account in (("user", USER), ("super_admin", ADMIN)):
            print(f"== schemathesis as a {who}", flush=True)
            failed |= _schemathesis(
                args.schemathesis, base, _token(base, account), args.max_examples, work / f"schemathesis-{who}.txt"
            )
        log = (work / "server.log").read_text()
        if "unhandled error" in log:
            print("the server logged unhandled errors; see", work / "server.log")
            failed = 1
        print("fuzz: no server errors" if not failed else f"fuzz: failures (reports in {work})")
        return 1 if failed else 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        handle.cleanup()


if __name__ == "__main__":
    sys.exit(main())
