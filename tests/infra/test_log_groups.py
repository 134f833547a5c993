"""Every log the stacks make expires: each function's log group, whoever made the function, and API Gateway's
execution logs. The functions are found in the templates, so a new one without a retention fails here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import Synth

# The stage's log retention (StageConfig.log_retention) in days, as CloudFormation writes it.
RETENTION_DAYS = {"dev": 14, "prod": 90}


def _stage(synth: Synth) -> str:
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    return str(stage["Properties"]["StageName"])


def _templates(synth: Synth) -> list[dict[str, Any]]:
    return [synth.stateful, synth.stateless]


def _log_group(template: dict[str, Any], target: Any) -> tuple[str, dict[str, Any]] | None:
    """The template's log group that `target` (a Ref to one, or a name) designates."""
    groups = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    if isinstance(target, dict) and set(target) == {"Ref"} and target["Ref"] in groups:
        return target["Ref"], groups[target["Ref"]]
    for logical_id, group in groups.items():
        if group["Properties"].get("LogGroupName") == target:
            return logical_id, group
    return None


def _default_log_group_name(logical_id: str, props: dict[str, Any]) -> Any:
    """Where Lambda writes without a LoggingConfig: /aws/lambda/<function name>, as the template spells it."""
    name = props.get("FunctionName", {"Ref": logical_id})
    if isinstance(name, str):
        return f"/aws/lambda/{name}"
    return {"Fn::Join": ["", ["/aws/lambda/", name]]}


def _depends_on(resource: dict[str, Any]) -> list[str]:
    value = resource.get("DependsOn", [])
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_lambda_function_logs_to_a_group_with_the_stage_retention_when_synthesized(
    stage: str, request: pytest.FixtureRequest
):
    synth: Synth = request.getfixturevalue(stage)
    missing = []
    checked = 0
    for template in _templates(synth):
        # A SAM function would be expanded by CloudFormation, out of this test's sight: none is expected.
        missing.extend(
            f"{k}: a SAM function, not checked" for k in synth.resources("AWS::Serverless::Function", template)
        )
        for logical_id, function in synth.resources("AWS::Lambda::Function", template).items():
            checked += 1
            props = function["Properties"]
            configured = props.get("LoggingConfig", {}).get("LogGroup")
            found = _log_group(template, configured or _default_log_group_name(logical_id, props))
            if found is None:
                missing.append(f"{logical_id}: no log group in the template")
                continue
            group_id, group = found
            days = group["Properties"].get("RetentionInDays")
            if days != RETENTION_DAYS[stage]:
                missing.append(f"{logical_id}: {group_id} keeps logs for {days} days")
            elif configured is None and group_id not in _depends_on(function):
                # A default-named group made after the function could meet one the function already made.
                missing.append(f"{logical_id}: {group_id} is not made before the function")
    assert checked > 0
    assert missing == []


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_serverless_application_functions_log_to_a_group_made_before_them_when_synthesized(
    stage: str, request: pytest.FixtureRequest
):
    # The secret-rotation functions come from the Serverless Application Repository: their template is not ours,
    # so their log group is the default one, named after the functionName parameter, made before the application.
    synth: Synth = request.getfixturevalue(stage)
    applications = 0
    for template in _templates(synth):
        for logical_id, application in synth.resources("AWS::Serverless::Application", template).items():
            applications += 1
            name = application["Properties"]["Parameters"]["functionName"]
            found = _log_group(template, f"/aws/lambda/{name}")
            assert found is not None, logical_id
            group_id, group = found
            assert group["Properties"]["RetentionInDays"] == RETENTION_DAYS[stage], logical_id
            assert group_id in _depends_on(application), logical_id
    assert applications == 2  # the master's and the application role's secret rotation


def test_every_log_group_in_the_templates_expires_when_synthesized(dev: Synth, prod: Synth):
    for synth in (dev, prod):
        for template in _templates(synth):
            for logical_id, group in synth.resources("AWS::Logs::LogGroup", template).items():
                assert group["Properties"].get("RetentionInDays") == RETENTION_DAYS[_stage(synth)], logical_id


def _render(value: Any) -> str:
    """A template string with its intrinsic functions spelled out: {"Ref": "X"} as <X>."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_render(part) for part in parts)
    (function,) = value
    return f"<{value[function] if function == 'Ref' else json.dumps(value)}>"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_api_gateway_execution_logs_get_the_stage_retention_when_the_stage_logs_executions(
    stage: str, request: pytest.FixtureRequest
):
    # API Gateway makes API-Gateway-Execution-Logs_<rest api id>/<stage> itself, with no retention, and a stack
    # deployed before already has it, so a log group resource would fail there: a log-retention custom resource
    # creates the group unless it exists, then sets its retention.
    synth: Synth = request.getfixturevalue(stage)
    (api_stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    assert {s.get("LoggingLevel") for s in api_stage["Properties"]["MethodSettings"]} == {"ERROR"}
    name = f"API-Gateway-Execution-Logs_<{api_stage['Properties']['RestApiId']['Ref']}>/{stage}"
    retentions = [
        r["Properties"]["RetentionInDays"]
        for r in synth.resources("Custom::LogRetention", synth.stateless).values()
        if _render(r["Properties"]["LogGroupName"]) == name
    ]
    assert retentions == [RETENTION_DAYS[stage]]
