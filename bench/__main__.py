"""`make bench`: run every bench/bench_*.py module's main() and print its ratios."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def _forget_previous(database_url: str | None) -> None:
    """Each benchmark makes its own database (and points DATABASE_URL at it): restore the variable and drop
    the process-wide settings and adapters the previous one built, which point at its dropped database."""
    from shared import bootstrap, settings

    if database_url is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = database_url

    for cached in (settings.get_settings, bootstrap.container, bootstrap.completion_service, bootstrap.model_providers):
        cached.cache_clear()


def main(selected: list[str]) -> int:
    database_url = os.environ.get("DATABASE_URL")
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    for name in names:
        if selected and not any(s in name for s in selected):
            continue
        print(f"== {name}", flush=True)
        _forget_previous(database_url)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
