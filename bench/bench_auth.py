"""Login p50 through the handler, and the authorizer's cold-start import cost, each beside a baseline.

- login: POST /v1/auth/login through the local API (authorizer-free public route) vs one bcrypt check at
  the same cost, side by side: the ratio is the price of everything around the hash.
- cold start: `import functions.authorizer` in a fresh interpreter vs `import functions.health`, interleaved;
  also reports whether boto3 or the X-Ray SDK were imported (neither should be on the JWT path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import bcrypt

from bench.harness import bench_database, p50, report, side_by_side

PASSWORD = "benchmark password"
PROBE = (
    "import sys, time; t = time.perf_counter(); import {module}; d = time.perf_counter() - t; "
    "print(d, 'boto3' in sys.modules, 'aws_xray_sdk' in sys.modules)"
)


def _import_cost(module: str) -> tuple[float, bool, bool]:
    env = {**os.environ, "CONFAB_STAGE": "test", "JWT_SECRET": "bench-" + "k" * 40}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return float(out[0]), out[1] == "True", out[2] == "True"


def cold_start(rounds: int = 8) -> None:
    authorizer: list[float] = []
    health: list[float] = []
    flags = (False, False)
    for i in range(rounds):
        pair = ("functions.authorizer", "functions.health")
        order = pair if i % 2 == 0 else pair[::-1]
        for module in order:
            seconds, boto3_loaded, xray_loaded = _import_cost(module)
            if module == "functions.authorizer":
                authorizer.append(seconds)
                flags = (flags[0] or boto3_loaded, flags[1] or xray_loaded)
            else:
                health.append(seconds)
    report("authorizer import", "authorizer", authorizer, "health handler", health, target="< 1.0x")
    print(f"authorizer import: boto3 imported={flags[0]} aws_xray_sdk imported={flags[1]} (target: both False)")


def login(rounds: int = 30) -> None:
    with bench_database() as url:
        os.environ.update(
            {
                "DATABASE_URL": url,
                "CONFAB_STAGE": "test",
                "JWT_SECRET": "bench-" + "k" * 40,
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        from shared.bootstrap import container
        from shared.local.server import LocalApi

        settings = container().settings
        api = LocalApi()
        body = json.dumps({"username": "bench", "email": "bench@example.com", "password": PASSWORD}).encode()
        headers = [("Content-Type", "application/json")]
        assert api.handle("POST", "/v1/auth/signup", headers, body, "127.0.0.1").status == 201
        login_body = json.dumps({"login": "bench", "password": PASSWORD}).encode()
        stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(settings.bcrypt_rounds))
        ips = iter(f"10.0.{i // 250}.{i % 250}" for i in range(10_000))

        def handler() -> None:
            assert api.handle("POST", "/v1/auth/login", headers, login_body, next(ips)).status == 200

        def bare_hash() -> None:
            bcrypt.checkpw(PASSWORD.encode(), stored)

        a, b = side_by_side(handler, bare_hash, rounds=rounds, warmup=2)
        print(f"login: bcrypt cost {settings.bcrypt_rounds}, login p50 {p50(a) * 1000:.1f} ms on this machine")
        report("login", "POST /v1/auth/login", a, "one bcrypt check", b, target="< 1.2x")
        container().db.close()


def main() -> None:
    started = time.perf_counter()
    cold_start()
    login()
    print(f"bench_auth done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
