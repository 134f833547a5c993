"""`make bench`: run every bench/bench_*.py module's main() and print its ratios."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _forget_containers() -> None:
    """Each benchmark makes its own database: drop the process-wide settings and adapters the previous one
    built (they point at its dropped database)."""
    from shared import bootstrap, settings

    for cached in (settings.get_settings, bootstrap.container, bootstrap.completion_service, bootstrap.model_providers):
        cached.cache_clear()


def main(selected: list[str]) -> int:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    for name in names:
        if selected and not any(s in name for s in selected):
            continue
        print(f"== {name}", flush=True)
        _forget_containers()
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
