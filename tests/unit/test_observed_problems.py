"""The guard that holds the OpenAPI document to what the handlers answer (tests/observed_problems.py)."""

from __future__ import annotations

from tests.observed_problems import ObservedProblems, undocumented_problems


def test_a_status_the_document_does_not_list_for_the_operation_is_reported_with_its_test():
    seen = {
        ("GET", "/v1/conversations/{id}", 403): "t::a",  # no code path of the route raises ForbiddenError
        ("GET", "/v1/conversations/{id}", 404): "t::b",
        ("PATCH", "/v1/analysis-reports/{id}", 409): "t::c",  # declared (Route.problems)
        ("POST", "/v1/threads/{id}/completions", 504): "t::d",
        ("GET", "/v1/usage/me", 403): "t::e",
        ("GET", "/not/a/route", 418): "t::f",  # a test's own resolver: not the API's
    }
    assert undocumented_problems(seen) == {
        ("GET", "/v1/conversations/{id}", 403): "t::a",
        ("GET", "/v1/usage/me", 403): "t::e",
    }


def test_only_problem_answers_inside_a_test_are_noted():
    plugin = ObservedProblems()
    event = {"httpMethod": "get", "resource": "/v1/usage/me"}
    plugin.note(event, {"statusCode": 403})  # outside a test (a fixture's set-up at session scope)
    plugin.current_test = "t::x"
    plugin.note(event, {"statusCode": 200})
    plugin.note(event, {"statusCode": 422})
    plugin.note({"resource": "/v1/usage/me"}, {"statusCode": 500})
    assert plugin.seen == {("GET", "/v1/usage/me", 422): "t::x"}
