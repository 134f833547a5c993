"""Reserved concurrency: off unless the operator names functions (-c reserved_concurrency), refused at synth
time when it names a function that does not exist or a count that is not a positive integer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Synth


def _reserved(templates: list[dict[str, Any]]) -> dict[str, int]:
    """ReservedConcurrentExecutions by handler module, for the functions that have one."""
    found = {}
    for template in templates:
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Lambda::Function" and "ReservedConcurrentExecutions" in props:
                found[props.get("Handler", "").removesuffix(".lambda_handler")] = props["ReservedConcurrentExecutions"]
    return found


def _build(tmp_path: Path, reserved: Any) -> list[dict[str, Any]]:
    from infra.synth import build_app

    context = {"stage": "dev", "bundle": "false", "reserved_concurrency": reserved}
    # cdk-nag has nothing to say about concurrency, and the session's synths already run it.
    build_app(context=context, outdir=str(tmp_path), nag=False).synth()
    return [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*.template.json"))]


def test_no_function_reserves_concurrency_when_the_setting_is_absent(dev: Synth, prod: Synth):
    for synth in (dev, prod):
        assert _reserved([synth.stateful, synth.stateless]) == {}


def test_the_named_functions_and_only_they_reserve_concurrency_when_the_setting_names_them(tmp_path: Path):
    given = '{"authorizer": 20, "completions": 50, "openai": 30, "usage_aggregator": 2}'
    assert _reserved(_build(tmp_path, given)) == {
        "functions.authorizer": 20,
        "functions.completions": 50,
        "functions.openai": 30,
        "functions.usage_aggregator": 2,
    }


def test_synth_is_refused_naming_the_known_functions_when_the_setting_names_an_unknown_one(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown function\(s\) \['chat'\].*'authorizer'.*'completions'"):
        _build(tmp_path, '{"chat": 10, "authorizer": 5}')


def test_synth_is_refused_when_a_count_is_not_a_positive_integer(tmp_path: Path):
    with pytest.raises(ValueError, match=r"reserved_concurrency\['completions'\] must be a positive integer"):
        _build(tmp_path, '{"completions": 0}')


def test_synth_is_refused_when_the_aggregator_would_reserve_less_than_its_queue_may_run(tmp_path: Path):
    # dev's usage queue runs up to 2 batches at once: a reservation of 1 would throttle the second.
    with pytest.raises(ValueError, match=r"usage_aggregator.*1.*maximum concurrency.*2"):
        _build(tmp_path, '{"usage_aggregator": 1}')
