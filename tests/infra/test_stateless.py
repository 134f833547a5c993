"""The stateless stack: functions, API, aggregator, schedule, trigger, alarms, dashboard and grants."""

from __future__ import annotations

import json
from typing import Any

from infra.config import DEFAULTS
from shared import routes
from shared.errors import CREDENTIALS_REFUSED
from tests.infra.conftest import Synth


def _functions(synth: Synth) -> dict[str, dict[str, Any]]:
    """Confab's own functions by handler module (CDK's provider functions left out)."""
    found = {}
    for resource in synth.resources("AWS::Lambda::Function", synth.stateless).values():
        handler = resource["Properties"].get("Handler", "")
        if handler.startswith("functions."):
            found[handler.removesuffix(".lambda_handler")] = resource
    return found


def _statements(synth: Synth, module: str) -> list[dict[str, Any]]:
    role = _functions(synth)[module]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in synth.resources("AWS::IAM::Policy", synth.stateless).values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(synth: Synth, module: str) -> set[str]:
    actions: set[str] = set()
    for statement in _statements(synth, module):
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def test_every_route_group_and_background_module_has_one_function_when_synthesized(dev: Synth, prod: Synth):
    background = {routes.AUTHORIZER_MODULE, routes.USAGE_AGGREGATOR_MODULE, routes.MAINTENANCE_MODULE}
    background.add(routes.MIGRATE_MODULE)
    for synth in (dev, prod):
        assert set(_functions(synth)) == {g.module for g in synth.routes} | background


def test_functions_are_arm64_python_312_plus_traced_with_json_logs_when_synthesized(dev: Synth):
    log_groups = dev.resources("AWS::Logs::LogGroup", dev.stateless)
    for module, function in _functions(dev).items():
        props = function["Properties"]
        assert props["Architectures"] == ["arm64"], module
        major, minor = props["Runtime"].removeprefix("python").split(".")
        assert (int(major), int(minor)) >= (3, 12), module
        assert props["TracingConfig"] == {"Mode": "Active"}, module
        assert props["LoggingConfig"]["LogFormat"] == "JSON", module
        log_group = log_groups[props["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == 14, module
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == "confab" and env["CONFAB_STAGE"] == "dev", module
        assert props["VpcConfig"]["SubnetIds"], module
        assert len(props["Layers"]) == 1, module


def test_every_function_gets_the_application_settings_given_and_dev_none_when_synthesized(dev: Synth, prod: Synth):
    # prod is synthesized with -c settings=... (PROD_SETTINGS in conftest.py), dev without.
    given = {"MONTHLY_SPEND_LIMIT_USD": "25", "DEFAULT_MODEL_ID": "local-echo", "AI_CACHE_NONDETERMINISTIC": "true"}
    for module, function in _functions(prod).items():
        env = function["Properties"]["Environment"]["Variables"]
        assert {name: env.get(name) for name in given} == given, module
    for module, function in _functions(dev).items():
        assert not set(given) & set(function["Properties"]["Environment"]["Variables"]), module


def test_route_functions_reach_the_proxy_with_iam_and_the_trigger_reaches_the_instance_when_prod(prod: Synth):
    functions = _functions(prod)
    health = functions["functions.health"]["Properties"]["Environment"]["Variables"]
    migrate = functions[routes.MIGRATE_MODULE]["Properties"]["Environment"]["Variables"]
    assert health["DB_IAM_AUTH"] == "true" and "DB_SECRET_ARN" not in health
    assert "DatabaseProxy" in json.dumps(health["DB_HOST"])
    assert "DatabaseInstance" in json.dumps(migrate["DB_HOST"]) and "Proxy" not in json.dumps(migrate["DB_HOST"])
    assert "DB_SECRET_ARN" in migrate
    assert "rds-db:connect" in _actions(prod, "functions.health")
    assert "rds-db:connect" not in _actions(prod, routes.MIGRATE_MODULE)


def test_functions_connect_as_the_application_role_and_only_the_trigger_as_the_master_when_synthesized(
    dev: Synth, prod: Synth
):
    for synth in (dev, prod):
        functions = _functions(synth)
        for module, function in functions.items():
            env = function["Properties"]["Environment"]["Variables"]
            if "DB_USER" not in env:
                continue
            secret = json.dumps(env.get("DB_SECRET_ARN", ""))
            if module == routes.MIGRATE_MODULE:
                assert env["DB_USER"] == "confab" and "AppSecret" not in secret, module
                assert "AppSecret" in json.dumps(env["APP_DB_SECRET_ARN"])
            else:
                assert env["DB_USER"] == "confab_app" and "APP_DB_SECRET_ARN" not in env, module
                assert "DB_SECRET_ARN" not in env or "AppSecret" in secret, module
    # Through the proxy, IAM authentication as the application role's user only.
    connect = [
        statement
        for policy in prod.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "rds-db:connect"
    ]
    assert connect and all("/confab_app" in json.dumps(s["Resource"]) for s in connect)


def test_route_functions_read_the_app_role_secret_when_dev_has_no_proxy(dev: Synth):
    env = _functions(dev)["functions.health"]["Properties"]["Environment"]["Variables"]
    assert "DB_SECRET_ARN" in env and "DB_IAM_AUTH" not in env
    assert "secretsmanager:GetSecretValue" in _actions(dev, "functions.health")


def test_only_the_ai_group_may_call_bedrock_and_sagemaker_when_grants_follow_needs(prod: Synth):
    for group in prod.routes:
        actions = _actions(prod, group.module)
        ai = routes.NEEDS_BEDROCK in group.needs
        assert ("bedrock:InvokeModel" in actions) is ai, group.name
        assert ("sagemaker:InvokeEndpoint" in actions) is (routes.NEEDS_SAGEMAKER in group.needs), group.name
    for module in (routes.AUTHORIZER_MODULE, routes.USAGE_AGGREGATOR_MODULE, routes.MAINTENANCE_MODULE):
        assert not any(a.startswith(("bedrock:", "sagemaker:")) for a in _actions(prod, module))


def test_model_calling_functions_get_a_deadline_inside_theirs_and_read_provider_secrets_by_prefix_only(prod: Synth):
    from infra.stacks import PROVIDER_TIMEOUT_S

    callers = {g.module for g in prod.routes if routes.NEEDS_BEDROCK in g.needs}
    assert "functions.completions" in callers
    for module in callers:
        function = _functions(prod)[module]["Properties"]
        env = function["Environment"]["Variables"]
        # Connecting (5 s) and the provider's deadline leave the function time to answer and settle the spend.
        assert int(env["PROVIDER_TIMEOUT_SECONDS"]) == PROVIDER_TIMEOUT_S <= function["Timeout"] - 5 - 3
        assert "secret:confab/prod/providers/" in json.dumps(env["PROVIDER_SECRET_ARN_PREFIX"])
        reads = [s for s in _statements(prod, module) if s["Action"] == "secretsmanager:GetSecretValue"]
        assert reads and all("secret:confab/prod/providers/*" in json.dumps(s["Resource"]) for s in reads)


def test_only_the_files_group_touches_the_bucket_when_grants_follow_needs(prod: Synth):
    # Maintenance too: it asks whether an upload nobody confirmed arrived, and deletes late bytes of deleted files.
    for module in _functions(prod):
        touches = any(a.startswith("s3:") for a in _actions(prod, module))
        assert touches is (module in ("functions.files", routes.MAINTENANCE_MODULE)), module
    assert {a for a in _actions(prod, routes.MAINTENANCE_MODULE) if a.startswith("s3:")} == {
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    }
    for module in ("functions.files", routes.MAINTENANCE_MODULE):
        assert "FILES_BUCKET" in _functions(prod)[module]["Properties"]["Environment"]["Variables"]


def test_maintenance_may_list_the_files_bucket_when_it_asks_whether_an_upload_arrived(prod: Synth):
    # Without s3:ListBucket, S3 answers HeadObject on a missing key with 403, not 404: maintenance could never
    # tell an upload whose bytes never came, so it never deleted one (an ERROR for each, every run, for ever).
    lists = [s for s in _statements(prod, routes.MAINTENANCE_MODULE) if "s3:ListBucket" in json.dumps(s["Action"])]
    assert len(lists) == 1 and lists[0]["Effect"] == "Allow"
    assert lists[0]["Action"] == "s3:ListBucket"
    resource = json.dumps(lists[0]["Resource"])
    assert "confab-prod-files-" in resource and "/users/" not in resource and "*" not in resource


def test_only_producer_groups_send_to_the_queue_and_only_the_aggregator_consumes_it_when_synthesized(prod: Synth):
    producers = {g.module for g in prod.routes if routes.NEEDS_USAGE_QUEUE in g.needs}
    assert producers == {"functions.conversations", "functions.completions"}
    for module in _functions(prod):
        actions = _actions(prod, module)
        assert ("sqs:SendMessage" in actions) is (module in producers), module
        assert ("sqs:ReceiveMessage" in actions) is (module == routes.USAGE_AGGREGATOR_MODULE), module
        env = _functions(prod)[module]["Properties"]["Environment"]["Variables"]
        assert ("USAGE_QUEUE_URL" in env) is (module in producers), module


def test_only_the_authorizer_and_token_issuers_read_the_signing_key_when_synthesized(prod: Synth):
    readers = {
        m for m, f in _functions(prod).items() if "JWT_SECRET_ARN" in f["Properties"]["Environment"]["Variables"]
    }
    assert readers == {routes.AUTHORIZER_MODULE, "functions.auth"}


def test_no_policy_grants_every_action_when_synthesized(dev: Synth, prod: Synth):
    for synth in (dev, prod):
        for module in _functions(synth):
            assert not any(a == "*" or a.endswith(":*") for a in _actions(synth, module)), module


def test_authorizer_is_a_cached_request_authorizer_keyed_by_credential_and_path_when_routes_are_protected(
    prod: Synth,
):
    (authorizer,) = prod.resources("AWS::ApiGateway::Authorizer").values()
    props = authorizer["Properties"]
    assert props["Type"] == "REQUEST"
    assert props["AuthorizerResultTtlInSeconds"] == DEFAULTS["prod"].authorizer_cache_ttl_s > 0
    sources = props["IdentitySource"].split(",")
    assert sources == ["method.request.header.Authorization", "context.httpMethod", "context.path"]


def test_throttling_access_logs_and_tracing_are_on_for_the_stage_when_synthesized(dev: Synth):
    (stage,) = dev.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "dev"
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 50 and settings["ThrottlingBurstLimit"] == 100
    assert settings["DataTraceEnabled"] is False


def test_cors_preflight_answers_every_resource_when_synthesized(dev: Synth):
    methods = dev.resources("AWS::ApiGateway::Method").values()
    options = [m for m in methods if m["Properties"]["HttpMethod"] == "OPTIONS"]
    resources = dev.resources("AWS::ApiGateway::Resource")
    assert len(options) == len(resources) + 1  # every resource and the root
    headers = options[0]["Properties"]["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
    assert "Authorization" in headers["method.response.header.Access-Control-Allow-Headers"]


def test_api_gateway_own_errors_are_problem_json_with_the_handlers_statuses_when_synthesized(dev: Synth):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in dev.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    expected = {
        "UNAUTHORIZED": "401",
        "ACCESS_DENIED": "401",
        "AUTHORIZER_FAILURE": "503",
        "AUTHORIZER_CONFIGURATION_ERROR": "503",
        "THROTTLED": "429",
        "REQUEST_TOO_LARGE": "413",
        "MISSING_AUTHENTICATION_TOKEN": "404",
        "DEFAULT_4XX": None,
        "DEFAULT_5XX": None,
    }
    assert {kind: props.get("StatusCode") for kind, props in responses.items()} == expected
    for kind, props in responses.items():
        headers = props["ResponseParameters"]
        assert headers["gatewayresponse.header.Content-Type"] == "'application/problem+json'", kind
        # dev allows two origins (localhost:3000 and :5173): the request's own is echoed, not only the first.
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "method.request.header.Origin", kind
        assert headers["gatewayresponse.header.Vary"] == "'Origin'", kind
        template = props["ResponseTemplates"]["application/json"]
        # What API Gateway renders: its message stands in for the variable.
        body = json.loads(template.replace("$context.error.messageString", '"message"'))
        assert body["type"].startswith("https://confab.dev/problems/") and body["title"], kind
        assert body.get("status") == (int(expected[kind]) if expected[kind] else None), kind
    for kind in ("AUTHORIZER_FAILURE", "THROTTLED"):
        assert "gatewayresponse.header.Retry-After" in responses[kind]["ResponseParameters"]
    for kind in ("UNAUTHORIZED", "ACCESS_DENIED"):
        assert responses[kind]["ResponseParameters"]["gatewayresponse.header.WWW-Authenticate"] == "'Bearer'"
        # API Gateway's own message is only "Unauthorized": the detail says what to do, as the local server's does.
        assert json.loads(responses[kind]["ResponseTemplates"]["application/json"])["detail"] == CREDENTIALS_REFUSED
    for kind, props in responses.items():
        exposed = props["ResponseParameters"]["gatewayresponse.header.Access-Control-Expose-Headers"]
        assert "Retry-After" in exposed and "WWW-Authenticate" in exposed, kind


def test_aggregator_reports_partial_failures_in_batched_windows_with_bounded_concurrency_when_synthesized(
    dev: Synth, prod: Synth
):
    for synth, concurrency in ((dev, 2), (prod, 5)):
        (mapping,) = synth.resources("AWS::Lambda::EventSourceMapping").values()
        props = mapping["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["MaximumBatchingWindowInSeconds"] > 0
        assert props["ScalingConfig"] == {"MaximumConcurrency": concurrency}
        target = props["FunctionName"]["Ref"]
        assert synth.stateless["Resources"][target]["Properties"]["Handler"].startswith(routes.USAGE_AGGREGATOR_MODULE)


def test_maintenance_runs_on_an_eventbridge_schedule_when_synthesized(dev: Synth):
    (rule,) = dev.resources("AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    target = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    assert dev.stateless["Resources"][target]["Properties"]["Handler"].startswith(routes.MAINTENANCE_MODULE)


def test_deploy_trigger_runs_the_migrate_function_before_the_route_functions_when_synthesized(dev: Synth):
    (trigger_id, trigger), *rest = [
        (k, r) for k, r in dev.stateless["Resources"].items() if r["Type"] == "Custom::Trigger"
    ]
    assert rest == []
    assert "Migrate" in json.dumps(trigger["Properties"]["HandlerArn"])
    for module, function in _functions(dev).items():
        if module != routes.MIGRATE_MODULE:
            assert trigger_id in function.get("DependsOn", []), module


def _alarm_metrics(synth: Synth) -> set[str]:
    return {a["Properties"].get("MetricName", "") for a in synth.resources("AWS::CloudWatch::Alarm").values()}


def test_every_alarm_notifies_the_sns_topic_when_synthesized(dev: Synth):
    (topic_id,) = dev.resources("AWS::SNS::Topic")
    alarms = dev.resources("AWS::CloudWatch::Alarm").values()
    assert alarms
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)


def test_the_alarm_topic_arn_is_a_stack_output_to_subscribe_to_when_synthesized(dev: Synth):
    (topic_id,) = dev.resources("AWS::SNS::Topic")
    assert dev.stateless["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_alarms_cover_dead_letters_5xx_errors_throttles_and_pinning_when_prod(dev: Synth, prod: Synth):
    assert {"ApproximateNumberOfMessagesVisible", "5XXError", "Errors", "Throttles"} <= _alarm_metrics(dev)
    (schedule,) = [
        a for a in dev.resources("AWS::CloudWatch::Alarm").values() if a["Properties"]["Namespace"] == "AWS/Events"
    ]
    assert schedule["Properties"]["MetricName"] == "FailedInvocations"
    assert "DatabaseConnectionsCurrentlySessionPinned" in _alarm_metrics(prod)
    assert "DatabaseConnectionsCurrentlySessionPinned" not in _alarm_metrics(dev)
    # A traffic spike past the proxy's pool shows as queries waiting to borrow a connection.
    borrow = _alarm(prod, "DatabaseConnectionsBorrowLatency")
    assert borrow["Threshold"] < 10_000_000  # microseconds: before the proxy's 10 s borrow timeout fails them
    assert "DatabaseConnectionsBorrowLatency" not in _alarm_metrics(dev)
    per_function = [
        a for a in dev.resources("AWS::CloudWatch::Alarm").values() if a["Properties"]["MetricName"] == "Errors"
    ]
    assert len(per_function) == len(_functions(dev))


def _alarm(synth: Synth, metric: str) -> dict[str, Any]:
    (found,) = [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == metric
    ]
    return found


def test_alarms_cover_database_cpu_and_storage_api_latency_and_queue_age_when_synthesized(dev: Synth, prod: Synth):
    for synth, stage in ((dev, "dev"), (prod, "prod")):
        cpu = _alarm(synth, "CPUUtilization")
        assert cpu["Namespace"] == "AWS/RDS"
        assert cpu["Threshold"] == 80
        storage = _alarm(synth, "FreeStorageSpace")
        assert storage["ComparisonOperator"] == "LessThanOrEqualToThreshold"
        # Below the 10% free at which storage autoscaling grows the volume, so it fires only when that failed.
        assert 0 < storage["Threshold"] < DEFAULTS[stage].allocated_storage_gb * 1024**3 * 0.1
        latency = _alarm(synth, "Latency")
        assert latency["Namespace"] == "AWS/ApiGateway"
        assert latency["ExtendedStatistic"] == "p99"
        assert latency["Threshold"] < 29_000
        age = _alarm(synth, "ApproximateAgeOfOldestMessage")
        assert age["Namespace"] == "AWS/SQS"
        # Well before a failing batch reaches the dead-letter queue (20 receives x 180 s).
        assert age["Threshold"] < 3600


def test_a_dashboard_exists_when_synthesized(dev: Synth):
    (dashboard,) = dev.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "confab-dev"


def test_prod_puts_a_web_acl_with_a_per_address_rate_limit_in_front_of_the_api_stage_when_synthesized(prod: Synth):
    (acl,) = prod.resources("AWS::WAFv2::WebACL").values()
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL" and "Allow" in props["DefaultAction"]
    rules = {rule["Name"]: rule for rule in props["Rules"]}
    rate = rules["PerAddressRate"]
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == DEFAULTS["prod"].waf_rate_limit
    # Over the rate: 429 with the handlers' problem document.
    response = rate["Action"]["Block"]["CustomResponse"]
    body = json.loads(props["CustomResponseBodies"][response["CustomResponseBodyKey"]]["Content"])
    assert response["ResponseCode"] == 429 and body["status"] == 429 and body["type"].endswith("/rate-limited")
    assert {"AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet"} <= set(rules)
    # Chat messages are arbitrary text: rules that read the body only count.
    bad_inputs = rules["AWSManagedRulesKnownBadInputsRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    counted = {o["Name"] for o in bad_inputs["RuleActionOverrides"] if "Count" in o["ActionToUse"]}
    assert counted == {"Log4JRCE_BODY", "JavaDeserializationRCE_BODY"}
    (association,) = prod.resources("AWS::WAFv2::WebACLAssociation").values()
    assert "Stage" in json.dumps(association["Properties"]["ResourceArn"])


def test_dev_has_no_web_acl_when_the_stage_skips_it(dev: Synth):
    assert dev.resources("AWS::WAFv2::WebACL") == {}


def test_the_dashboard_shows_what_the_web_acl_blocks_per_rule_when_the_stage_has_one(dev: Synth, prod: Synth):
    (with_waf,) = prod.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(with_waf["Properties"]["DashboardBody"])
    assert "WAF blocked requests" in body and "BlockedRequests" in body
    assert all(rule in body for rule in ("PerAddressRate", "AWSManagedRulesAmazonIpReputationList"))
    (without,) = dev.resources("AWS::CloudWatch::Dashboard").values()
    assert "BlockedRequests" not in json.dumps(without["Properties"]["DashboardBody"])


def test_gateway_errors_allow_the_one_origin_or_any_or_echo_the_callers_when_several_are_allowed():
    from infra.api import gateway_cors_origin

    assert gateway_cors_origin(("*",)) == {"Access-Control-Allow-Origin": "'*'"}
    assert gateway_cors_origin(("https://app.example.com",)) == {
        "Access-Control-Allow-Origin": "'https://app.example.com'"
    }
    assert gateway_cors_origin(("https://a.example.com", "https://b.example.com")) == {
        "Access-Control-Allow-Origin": "method.request.header.Origin",
        "Vary": "'Origin'",
    }
