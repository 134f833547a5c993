from __future__ import annotations

import importlib

from shared import routes


def test_literal_segment_wins_when_a_parameter_route_also_matches(monkeypatch):
    table = (routes.RouteGroup("users", (routes.Route("GET", "/v1/users/{id}"), routes.Route("GET", "/v1/users/me"))),)
    monkeypatch.setattr(routes, "ROUTE_GROUPS", table)
    group, route, params = routes.match("GET", "/v1/users/me")  # type: ignore[misc]
    assert route.path == "/v1/users/me" and params == {}
    _, route, params = routes.match("GET", "/v1/users/42")  # type: ignore[misc]
    assert route.path == "/v1/users/{id}" and params == {"id": "42"}


def test_match_is_none_when_only_another_method_serves_the_path():
    assert routes.match("DELETE", "/v1/health") is None
    assert routes.path_exists("/v1/health")
    assert not routes.path_exists("/v1/nothing-here")


def test_parameters_never_span_segments_when_matching():
    assert routes.match("GET", "/v1/health/extra") is None


def test_every_route_group_module_exposes_lambda_handler_and_app():
    for group in routes.ROUTE_GROUPS:
        module = importlib.import_module(group.module)
        assert callable(module.lambda_handler)
        assert hasattr(module, "app")


def test_route_table_has_no_duplicate_method_path_pairs():
    pairs = [(route.method, route.path) for _, route in routes.all_routes()]
    assert len(pairs) == len(set(pairs))
