"""Stage settings from context, and the local bundling that needs no Docker."""

from __future__ import annotations

import pytest

from infra import bundling
from infra.config import from_context
from infra.synth import parse_context


def test_context_pairs_are_read_like_the_cdk_cli_when_given_with_c_flags():
    assert parse_context(["-c", "stage=prod", "--context", "nat=true", "-x"]) == {"stage": "prod", "nat": "true"}


def test_dev_defaults_keep_idle_cost_low_when_no_flags_are_given():
    config = from_context({"stage": "dev"}.get)
    assert (config.nat, config.use_proxy, config.multi_az, config.endpoint_azs) == (False, False, False, 1)


def test_flags_override_stage_defaults_when_given():
    config = from_context({"stage": "dev", "nat": "true", "use_proxy": "1", "authorizer_cache_ttl": "0"}.get)
    assert config.nat and config.use_proxy and config.authorizer_cache_ttl_s == 0
    assert from_context({"stage": "dev", "performance_insights": "true"}.get).performance_insights
    assert not from_context({"stage": "prod", "performance_insights": "false"}.get).performance_insights


def test_unknown_stage_is_refused_when_given():
    with pytest.raises(ValueError, match="unknown stage"):
        from_context({"stage": "staging"}.get)


def test_empty_layer_is_used_when_bundling_is_off():
    layer = bundling.dependencies_dir(bundle=False)
    assert (layer / "python").is_dir() and not any((layer / "python").iterdir())


def test_code_asset_holds_handlers_shared_code_and_migrations_without_caches_when_staged():
    staged = bundling.code_dir()
    assert (staged / "functions" / "health.py").is_file()
    assert (staged / "shared" / "migrations.py").is_file()
    assert any((staged / "migrations").glob("*.sql"))
    assert not list(staged.rglob("__pycache__"))


def test_layer_requirements_are_the_project_runtime_dependencies_when_bundling():
    reqs = bundling.requirements()
    assert any(r.startswith("psycopg") for r in reqs) and not any(r.startswith("aws-cdk") for r in reqs)


def test_waf_follows_the_stage_and_its_flags_when_given():
    assert from_context({"stage": "prod"}.get).waf and not from_context({"stage": "dev"}.get).waf
    config = from_context({"stage": "dev", "waf": "true", "waf_rate_limit": "500"}.get)
    assert config.waf and config.waf_rate_limit == 500


def test_no_function_reserves_concurrency_when_the_setting_is_absent():
    assert from_context({"stage": "dev"}.get).reserved_concurrency == {}
    assert from_context({"stage": "prod"}.get).reserved_concurrency == {}


def test_reserved_concurrency_is_read_from_a_json_object_when_given_with_c_or_in_cdk_json():
    config = from_context({"reserved_concurrency": '{"authorizer": 20, "completions": 50}'}.get)
    assert config.reserved_concurrency == {"authorizer": 20, "completions": 50}
    assert from_context({"reserved_concurrency": {"openai": 5}}.get).reserved_concurrency == {"openai": 5}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("authorizer=20", "must be a JSON object"),
        ("[20]", "must be a JSON object"),
        ('{"authorizer": 0}', r"reserved_concurrency\['authorizer'\] must be a positive integer, got 0"),
        ('{"authorizer": -3}', "must be a positive integer, got -3"),
        ('{"authorizer": 2.5}', "must be a positive integer, got 2.5"),
        ('{"authorizer": "20"}', "must be a positive integer, got '20'"),
        ('{"authorizer": true}', "must be a positive integer, got True"),
    ],
)
def test_reserved_concurrency_is_refused_with_the_reason_when_not_names_to_positive_integers(given, message):
    with pytest.raises(ValueError, match=message):
        from_context({"stage": "dev", "reserved_concurrency": given}.get)


def test_no_application_setting_is_set_when_the_settings_context_is_absent():
    assert from_context({"stage": "prod"}.get).settings == {}


def test_settings_are_read_from_a_json_object_with_names_upper_cased_and_values_as_strings():
    given = '{"monthly_spend_limit_usd": 25, "DEFAULT_MODEL_ID": "m", "AI_CACHE_NONDETERMINISTIC": false}'
    assert from_context({"stage": "prod", "settings": given}.get).settings == {
        "MONTHLY_SPEND_LIMIT_USD": "25",
        "DEFAULT_MODEL_ID": "m",
        "AI_CACHE_NONDETERMINISTIC": "false",
    }
    assert from_context({"settings": {"AI_CACHE_TTL_SECONDS": 60}}.get).settings == {"AI_CACHE_TTL_SECONDS": "60"}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("MONTHLY_SPEND_LIMIT_USD=25", "must be a JSON object"),
        ('{"NOT_A_SETTING": "1"}', "is not a Confab setting"),
        ('{"JWT_SECRET": "in plain text"}', "set by the stacks themselves"),
        ('{"DATABASE_URL": "postgresql://x"}', "set by the stacks themselves"),
        ('{"ALLOW_PRIVATE_MODEL_ENDPOINTS": true}', "local-only"),
        ('{"MONTHLY_SPEND_LIMIT_USD": "lots"}', "MONTHLY_SPEND_LIMIT_USD"),
        ('{"AI_CACHE_TTL_SECONDS": [1]}', "must be a string, number or boolean"),
    ],
)
def test_settings_are_refused_at_synth_with_the_reason_when_unknown_stack_owned_or_invalid(given, message):
    with pytest.raises(ValueError, match=message):
        from_context({"stage": "prod", "settings": given}.get)
