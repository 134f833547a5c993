"""The stateful stack: network, database, proxy, secrets, bucket, queues."""

from __future__ import annotations

import json

from infra.config import AGGREGATOR_TIMEOUT, MAX_RECEIVE_COUNT
from tests.infra.conftest import Synth

INTERFACE_SERVICES = ("secretsmanager", "sqs", "logs", "bedrock-runtime", "sagemaker.runtime")


def _service(endpoint: dict) -> str:
    # {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".sqs"]]} -> "sqs"
    name = endpoint["Properties"]["ServiceName"]
    parts = name["Fn::Join"][1] if isinstance(name, dict) else [name]
    return str(parts[-1]).lstrip(".")


def test_vpc_has_an_endpoint_for_every_service_the_functions_call_when_synthesized(dev: Synth):
    endpoints = dev.resources("AWS::EC2::VPCEndpoint", dev.stateful)
    interface = {_service(e) for e in endpoints.values() if e["Properties"].get("VpcEndpointType") == "Interface"}
    gateway = {_service(e) for e in endpoints.values() if e["Properties"].get("VpcEndpointType") == "Gateway"}
    assert interface == set(INTERFACE_SERVICES)
    assert gateway == {"s3"}
    assert all(
        e["Properties"].get("PrivateDnsEnabled") for e in endpoints.values() if "PrivateDnsEnabled" in e["Properties"]
    )


def test_interface_endpoints_sit_in_one_az_when_stage_is_dev_and_in_every_az_in_prod(dev: Synth, prod: Synth):
    def subnet_counts(synth: Synth) -> set[int]:
        endpoints = synth.resources("AWS::EC2::VPCEndpoint", synth.stateful).values()
        return {len(e["Properties"]["SubnetIds"]) for e in endpoints if "SubnetIds" in e["Properties"]}

    assert subnet_counts(dev) == {1}
    assert subnet_counts(prod) == {2}


def test_no_nat_gateway_exists_when_the_nat_flag_is_off(dev: Synth):
    assert dev.resources("AWS::EC2::NatGateway") == {}
    assert dev.resources("AWS::EC2::InternetGateway") == {}


def test_one_nat_gateway_exists_when_the_nat_flag_is_on(prod: Synth):
    assert len(prod.resources("AWS::EC2::NatGateway")) == 1


def _instance(synth: Synth) -> dict:
    (instance,) = synth.resources("AWS::RDS::DBInstance").values()
    return instance


def test_database_is_encrypted_postgres_16_with_backups_when_synthesized(dev: Synth, prod: Synth):
    for synth in (dev, prod):
        props = _instance(synth)["Properties"]
        assert props["Engine"] == "postgres"
        assert props["EngineVersion"].split(".")[0] == "16"
        assert props["StorageEncrypted"] is True
        assert props["PubliclyAccessible"] is False
        assert props["EnableIAMDatabaseAuthentication"] is True
        assert props["BackupRetentionPeriod"] >= 1


def test_database_protection_and_retention_follow_the_stage_when_dev_or_prod(dev: Synth, prod: Synth):
    dev_db, prod_db = _instance(dev), _instance(prod)
    assert dev_db["Properties"]["DeletionProtection"] is False
    assert dev_db["DeletionPolicy"] == "Delete"
    assert dev_db["Properties"]["DBInstanceClass"] == "db.t4g.micro"
    assert prod_db["Properties"]["DeletionProtection"] is True
    assert prod_db["DeletionPolicy"] == "Snapshot"
    assert prod_db["Properties"]["MultiAZ"] is True
    assert prod_db["Properties"]["BackupRetentionPeriod"] > dev_db["Properties"]["BackupRetentionPeriod"]


def test_prod_database_records_performance_insights_for_a_week_and_dev_none_when_synthesized(dev: Synth, prod: Synth):
    prod_db, dev_db = _instance(prod)["Properties"], _instance(dev)["Properties"]
    assert prod_db["EnablePerformanceInsights"] is True
    assert prod_db["PerformanceInsightsRetentionPeriod"] == 7  # the free tier
    assert not dev_db.get("EnablePerformanceInsights")


def test_database_requires_tls_when_synthesized(dev: Synth):
    (params,) = dev.resources("AWS::RDS::DBParameterGroup").values()
    assert params["Properties"]["Parameters"]["rds.force_ssl"] == "1"


def test_proxy_requires_iam_auth_and_tls_when_the_stage_uses_it(prod: Synth):
    (proxy,) = prod.resources("AWS::RDS::DBProxy").values()
    props = proxy["Properties"]
    assert props["RequireTLS"] is True
    assert props["EngineFamily"] == "POSTGRESQL"
    assert [auth["IAMAuth"] for auth in props["Auth"]] == ["REQUIRED", "REQUIRED"]


def test_dev_has_no_proxy_when_the_stage_skips_it(dev: Synth):
    assert dev.resources("AWS::RDS::DBProxy") == {}


def test_master_app_and_jwt_secrets_exist_and_both_database_secrets_rotate_when_synthesized(dev: Synth):
    secrets = dev.resources("AWS::SecretsManager::Secret", dev.stateful)
    assert len(secrets) == 3
    generated = [s["Properties"]["GenerateSecretString"] for s in secrets.values()]
    templates = [json.loads(g["SecretStringTemplate"]) for g in generated if "SecretStringTemplate" in g]
    assert {"username": "confab"} in templates
    assert {"username": "confab_app", "dbname": "confab"} in templates
    assert any(g.get("PasswordLength") == 64 for g in generated)
    rotations = dev.resources("AWS::SecretsManager::RotationSchedule").values()
    assert len(rotations) == 2
    assert {r["Properties"]["RotationRules"]["ScheduleExpression"] for r in rotations} == {"rate(30 days)"}
    # The application role exists only after the migration trigger (next stack): no rotation on creation.
    assert any(r["Properties"].get("RotateImmediatelyOnUpdate") is False for r in rotations)


def test_proxy_knows_the_application_role_secret_when_the_stage_uses_it(prod: Synth):
    (proxy,) = prod.resources("AWS::RDS::DBProxy").values()
    assert "AppSecret" in json.dumps(proxy["Properties"]["Auth"][0]["SecretArn"])


def test_files_bucket_is_private_encrypted_tls_only_with_upload_cors_when_synthesized(dev: Synth):
    (bucket,) = dev.resources("AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert "POST" in cors["AllowedMethods"] and "PUT" not in cors["AllowedMethods"] and cors["AllowedOrigins"]
    assert bucket["DeletionPolicy"] == "Retain"
    (policy,) = dev.resources("AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def _queues(synth: Synth) -> tuple[dict, dict]:
    queues = synth.resources("AWS::SQS::Queue")
    (main,) = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    (dlq,) = [q for q in queues.values() if "RedrivePolicy" not in q["Properties"]]
    return main["Properties"], dlq["Properties"]


def test_usage_queue_dead_letters_after_an_hour_of_receives_into_a_longer_lived_dlq_when_synthesized(dev: Synth):
    main, dlq = _queues(dev)
    # A database outage shorter than an hour sends no valid event to the DLQ (each receive fails the batch).
    assert main["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVE_COUNT
    assert MAX_RECEIVE_COUNT * main["VisibilityTimeout"] >= 3600
    assert dlq["MessageRetentionPeriod"] > main["MessageRetentionPeriod"]
    assert main["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True


def test_queue_visibility_is_at_least_six_aggregator_timeouts_when_synthesized(dev: Synth):
    main, _ = _queues(dev)
    (aggregator,) = [
        f
        for f in dev.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.usage_aggregator.lambda_handler"
    ]
    assert aggregator["Properties"]["Timeout"] == AGGREGATOR_TIMEOUT.to_seconds()
    assert main["VisibilityTimeout"] >= 6 * aggregator["Properties"]["Timeout"]


def test_prod_keeps_the_usage_queues_and_database_secrets_when_the_stack_goes(prod: Synth, dev: Synth):
    kept = ("AWS::SQS::Queue", "AWS::SecretsManager::Secret")
    for kind in kept:
        assert {r["DeletionPolicy"] for r in prod.resources(kind).values()} == {"Retain"}, kind
        assert {r["DeletionPolicy"] for r in dev.resources(kind).values()} == {"Delete"}, kind


def test_the_proxy_gives_up_on_a_used_up_pool_before_a_function_times_out(prod: Synth):
    (group,) = prod.resources("AWS::RDS::DBProxyTargetGroup").values()
    assert group["Properties"]["ConnectionPoolConfigurationInfo"]["ConnectionBorrowTimeout"] < 29
