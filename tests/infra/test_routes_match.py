"""API Gateway, the route table and the handlers' OpenAPI documents describe the same routes."""

from __future__ import annotations

from typing import Any

from shared import routes
from shared.local.server import LocalApi
from tests.infra.conftest import Synth

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def api_gateway_routes(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every non-preflight method, with paths rebuilt from the resource tree."""
    resources = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::ApiGateway::Resource"}

    def path_of(ref: dict[str, Any]) -> str:
        if "Fn::GetAtt" in ref:  # the API's root resource
            return ""
        resource = resources[ref["Ref"]]["Properties"]
        return path_of(resource["ParentId"]) + "/" + resource["PathPart"]

    return {
        (r["Properties"]["HttpMethod"], path_of(r["Properties"]["ResourceId"]) or "/")
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::Method" and r["Properties"]["HttpMethod"] != "OPTIONS"
    }


def openapi_routes() -> set[tuple[str, str]]:
    document = LocalApi().openapi()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


def test_api_gateway_route_table_and_openapi_are_the_same_set_when_synthesized(dev: Synth):
    table = {(route.method, route.path) for _, route in routes.all_routes()}
    assert api_gateway_routes(dev.stateless) == table
    assert openapi_routes() == table


def test_public_routes_have_no_authorizer_and_others_use_it_when_synthesized(prod: Synth):
    expected = {(r.method, r.path): r.auth for g in prod.routes for r in g.routes}
    resources = {k: r for k, r in prod.stateless["Resources"].items() if r["Type"] == "AWS::ApiGateway::Resource"}
    for method in prod.resources("AWS::ApiGateway::Method", prod.stateless).values():
        props = method["Properties"]
        if props["HttpMethod"] == "OPTIONS":
            assert props["AuthorizationType"] == "NONE"
            continue
        leaf = resources[props["ResourceId"]["Ref"]]["Properties"]["PathPart"]
        auths = {a for (m, p), a in expected.items() if m == props["HttpMethod"] and p.endswith("/" + leaf)}
        assert len(auths) == 1
        if auths == {"public"}:
            assert props["AuthorizationType"] == "NONE" and "AuthorizerId" not in props
        else:
            assert props["AuthorizationType"] == "CUSTOM" and "AuthorizerId" in props


def test_path_rebuilding_sees_a_missing_route_when_the_template_lacks_one(dev: Synth):
    # The comparison above can fail: drop one method and the sets differ.
    template = {"Resources": {k: v for k, v in dev.stateless["Resources"].items()}}
    victim = next(
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::ApiGateway::Method" and r["Properties"]["HttpMethod"] != "OPTIONS"
    )
    del template["Resources"][victim]
    table = {(route.method, route.path) for _, route in routes.all_routes()}
    assert api_gateway_routes(template) != table
