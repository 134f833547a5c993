"""Building the app: context from cdk.json and `-c key=value`, both stacks, cdk-nag, no credentials needed."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
import cdk_nag

from infra import config as stage_config
from infra.bundling import ROOT
from infra.nag import suppress
from infra.stacks import StatefulStack, StatelessStack


def parse_context(argv: Sequence[str]) -> dict[str, str]:
    """`-c key=value` / `--context key=value` pairs, as the CDK CLI takes them."""
    found: dict[str, str] = {}
    args = list(argv)
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-c", "--context") and "=" in value:
            key, _, val = value.partition("=")
            found[key] = val
    return found


def build_app(
    argv: Sequence[str] = (),
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    nag: bool = True,
) -> cdk.App:
    """The app with its two stacks; run directly it reads cdk.json's context the way the CLI would."""
    merged: dict[str, Any] = {}
    under_cli = "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ
    if not under_cli:
        cdk_json = ROOT / "cdk.json"
        if cdk_json.exists():
            merged.update(json.loads(cdk_json.read_text()).get("context", {}))
    merged.update(parse_context(argv))
    merged.update(context or {})
    if outdir is None and not under_cli:
        outdir = str(ROOT / "cdk.out")
    app = cdk.App(context=merged, outdir=outdir)
    config = stage_config.from_context(app.node.try_get_context)
    # Environment-agnostic on purpose: synth needs no account, no region and no credentials.
    stateful = StatefulStack(
        app, f"{config.prefix}-Stateful", config=config, description=f"Confab {config.stage}: data"
    )
    stateless = StatelessStack(
        app,
        f"{config.prefix}-Stateless",
        config=config,
        stateful=stateful,
        description=f"Confab {config.stage}: functions and API",
    )
    stateless.add_stack_dependency(stateful)
    for stack in (stateful, stateless):
        # The proxy target group takes no tags (CloudFormation's schema refuses them).
        for key, value in (("app", "confab"), ("stage", config.stage)):
            cdk.Tags.of(stack).add(key, value, exclude_resource_types=["AWS::RDS::DBProxyTargetGroup"])
    if nag:
        suppress(stateful, stateless)
        # cdk-nag 3 is a policy-validation plugin: synth fails, with a report, on any unacknowledged error.
        cdk.Validations.of(app).add_plugins(
            cdk_nag.AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
        )
    return app
