"""Synthesize each stage once per session: dev with the real route table, prod with a table that uses every
auth kind and every need (the real table grows as route groups land; the grant rules must hold already)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_RELEASE", "1")

from shared import routes
from shared.routes import Route, RouteGroup

SAMPLE_GROUPS = (
    RouteGroup("health", (Route("GET", "/v1/health", auth="public"),)),
    RouteGroup(
        "auth",
        (Route("POST", "/v1/auth/login", auth="public"), Route("POST", "/v1/auth/logout")),
        needs=frozenset({routes.NEEDS_SIGNING_KEY}),
    ),
    RouteGroup(
        "conversations",
        (Route("GET", "/v1/conversations"), Route("GET", "/v1/conversations/{id}", auth="any")),
        needs=frozenset({routes.NEEDS_USAGE_QUEUE}),
    ),
    RouteGroup(
        "completions",
        (Route("POST", "/v1/chat/completions"),),
        needs=frozenset({routes.NEEDS_BEDROCK, routes.NEEDS_SAGEMAKER, routes.NEEDS_USAGE_QUEUE}),
    ),
    RouteGroup("files", (Route("POST", "/v1/files"),), needs=frozenset({routes.NEEDS_FILES_BUCKET})),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/infra/" in str(item.fspath):
            item.add_marker(pytest.mark.infra)


@dataclass
class Synth:
    outdir: Path
    stateful: dict[str, Any]
    stateless: dict[str, Any]
    routes: tuple[RouteGroup, ...]

    @property
    def templates(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    def resources(self, kind: str, template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        found = {}
        for source in [template] if template is not None else [self.stateful, self.stateless]:
            for logical_id, resource in source["Resources"].items():
                if resource["Type"] == kind:
                    found[logical_id] = resource
        return found


def _synth(outdir: Path, context: dict[str, str]) -> Synth:
    from infra.synth import build_app

    app = build_app(context={**context, "bundle": "false"}, outdir=str(outdir))
    app.synth()  # raises when cdk-nag reports an unacknowledged error
    stage = context["stage"]
    load = lambda name: json.loads((outdir / f"Confab-{stage}-{name}.template.json").read_text())  # noqa: E731
    return Synth(outdir, load("Stateful"), load("Stateless"), routes.ROUTE_GROUPS)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth(tmp_path_factory.mktemp("cdk-dev"), {"stage": "dev"})


# Application settings prod is synthesized with (`-c settings=...`): every function gets them.
PROD_SETTINGS = '{"MONTHLY_SPEND_LIMIT_USD": "25", "default_model_id": "local-echo", "AI_CACHE_NONDETERMINISTIC": true}'


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    # Patched only while synthesizing: every other test sees the real table.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(routes, "ROUTE_GROUPS", SAMPLE_GROUPS)
        context = {"stage": "prod", "nat": "true", "settings": PROD_SETTINGS}
        return _synth(tmp_path_factory.mktemp("cdk-prod"), context)
