"""Agent templates (premium licences, preferences, use counts), code executions and analysis reports."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from shared.models.identity import PREMIUM_TIERS
from shared.repositories.licenses import HAS_PREMIUM
from tests.ai_helpers import add_model, add_thread, add_user, api_event, context_for
from tests.helpers import body_of, header
from tests.integration.test_ai_handlers import ai_app as ai_app  # the fixture, re-exported
from tests.integration.test_ai_handlers import call, complete


def add_template(db, name="planner", premium=False):
    return db.execute(
        """INSERT INTO agent_templates (template_name, description, prompt_template, is_premium_only)
           VALUES (%s, 'd', %s, %s) RETURNING id""",
        (name, f"You are the {name} agent.", premium),
    ).fetchone()[0]


def pref(user, template_id, method="GET", body=None):
    path = f"/v1/users/me/agent-templates/{template_id}"
    event = api_event(
        method,
        "/v1/users/me/agent-templates/{id}",
        path,
        principal=context_for(user),
        body=body,
        path_parameters={"id": str(template_id)},
    )
    return call("catalog", event)


def test_template_use_counts_and_reaches_the_prompt_when_a_completion_names_it(ai_app, db):
    add_model(db)
    user = add_user(db)
    template = add_template(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    for text in ("one", "two"):
        assert complete(user, thread, {"content": text, "template_id": str(template)})["statusCode"] == 200
    preference = body_of(pref(user, template))
    assert preference["usage_count"] == 2 and preference["last_used_at"] is not None and preference["is_enabled"]


def test_disabled_template_is_422_when_used_and_enabled_again_works(ai_app, db):
    add_model(db)
    user = add_user(db)
    template = add_template(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    assert body_of(pref(user, template, "PUT", {"is_enabled": False}))["is_enabled"] is False
    refused = complete(user, thread, {"content": "x", "template_id": str(template)})
    assert refused["statusCode"] == 422
    assert [item["loc"] for item in body_of(refused)["errors"]] == [["body", "template_id"]]
    pref(user, template, "PUT", {"is_enabled": True})
    assert complete(user, thread, {"content": "x", "template_id": str(template)})["statusCode"] == 200


def test_premium_template_needs_a_premium_licence_when_used(ai_app, db):
    add_model(db)
    user = add_user(db)
    template = add_template(db, "analyst", premium=True)
    _, thread = add_thread(db, user, model_id="local-echo")
    assert complete(user, thread, {"content": "x", "template_id": str(template)})["statusCode"] == 403
    db.execute(
        "INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats) VALUES (%s, 'p', %s, 'basic', 1)",
        (user, uuid.uuid4().hex),
    )
    assert complete(user, thread, {"content": "x", "template_id": str(template)})["statusCode"] == 403
    db.execute(
        "INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats) VALUES (%s, 'p', %s, 'premium', 1)",
        (user, uuid.uuid4().hex),
    )
    assert complete(user, thread, {"content": "x", "template_id": str(template)})["statusCode"] == 200


def test_premium_template_is_usable_by_a_seat_holder_until_the_licence_expires(ai_app, db):
    add_model(db)
    owner, holder = add_user(db), add_user(db)
    template = add_template(db, "analyst", premium=True)
    _, thread = add_thread(db, holder, model_id="local-echo")
    licence = db.execute(
        """INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats, expires_at)
           VALUES (%s, 'p', %s, 'Enterprise', 1, now() + interval '1 day') RETURNING id""",
        (owner, uuid.uuid4().hex),
    ).fetchone()[0]
    db.execute("INSERT INTO license_seats (license_id, user_id) VALUES (%s, %s)", (licence, holder))
    assert complete(holder, thread, {"content": "x", "template_id": str(template)})["statusCode"] == 200
    db.execute("UPDATE licenses SET expires_at = now() - interval '1 second'")
    assert complete(holder, thread, {"content": "y", "template_id": str(template)})["statusCode"] == 403


def test_premium_check_reads_only_the_users_own_licences_and_seats_when_there_are_many_licences(ai_app, db):
    # It runs before every completion that names a premium template: with one licence per customer, a scan of
    # every licence (the old OR across a LEFT JOIN) cost the most to exactly the users it then refused.
    db.execute(
        "INSERT INTO users (username, email) SELECT 'm' || g, 'm' || g || '@ex.com' FROM generate_series(1, 5000) g"
    )
    db.execute(
        """INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats)
           SELECT id, 'p', md5(id::text), 'premium', 5 FROM users"""
    )
    db.execute("ANALYZE users, licenses, license_seats")
    plan = db.execute(
        "EXPLAIN (FORMAT JSON) " + HAS_PREMIUM, {"user_id": uuid.uuid4(), "tiers": list(PREMIUM_TIERS)}
    ).fetchone()[0]

    def scans(node):
        yield node["Node Type"], node.get("Relation Name")
        for child in node.get("Plans", []):
            yield from scans(child)

    assert ("Seq Scan", "licenses") not in set(scans(plan[0]["Plan"]))


def test_template_writes_are_admin_only_and_premium_prompts_hidden_from_users_when_listing(ai_app, db):
    user, admin = add_user(db), add_user(db, role="admin")
    body = {"template_name": "secret", "description": "d", "prompt_template": "hidden recipe", "is_premium_only": True}
    ev = api_event("POST", "/v1/agent-templates", "/v1/agent-templates", principal=context_for(user), body=body)
    assert call("catalog", ev)["statusCode"] == 403
    ev = api_event(
        "POST", "/v1/agent-templates", "/v1/agent-templates", principal=context_for(admin, role="admin"), body=body
    )
    assert call("catalog", ev)["statusCode"] == 201
    ev = api_event("GET", "/v1/agent-templates", "/v1/agent-templates", principal=context_for(user))
    listed = body_of(call("catalog", ev))
    assert listed["items"][0]["template_name"] == "secret" and listed["items"][0]["prompt_template"] is None


def test_template_icon_url_is_422_and_nothing_is_stored_when_it_is_not_an_http_link(ai_app, db):
    admin = add_user(db, role="admin")
    principal = context_for(admin, role="admin")
    body = {"template_name": "iconic", "description": "d", "prompt_template": "p", "icon_url": "javascript:alert(1)"}
    ev = api_event("POST", "/v1/agent-templates", "/v1/agent-templates", principal=principal, body=body)
    assert call("catalog", ev)["statusCode"] == 422
    assert db.execute("SELECT count(*) FROM agent_templates").fetchone()[0] == 0
    body["icon_url"] = "/icons/iconic.svg"
    ev = api_event("POST", "/v1/agent-templates", "/v1/agent-templates", principal=principal, body=body)
    created = body_of(call("catalog", ev))
    path = f"/v1/agent-templates/{created['id']}"
    ev = api_event(
        "PATCH",
        "/v1/agent-templates/{id}",
        path,
        principal=principal,
        body={"icon_url": "data:image/svg+xml,<svg onload=alert(1)>"},
        path_parameters={"id": created["id"]},
    )
    assert call("catalog", ev)["statusCode"] == 422
    assert db.execute("SELECT icon_url FROM agent_templates").fetchone()[0] == "/icons/iconic.svg"


@pytest.mark.parametrize("name", ["planner\ud800", "planner\x00"])
def test_template_list_is_400_when_the_cursor_holds_text_no_template_name_can_be(ai_app, db, name):
    # A lone surrogate was a 500 (the driver cannot encode it) and a NUL a 422 from the database.
    user = add_user(db)
    add_template(db)
    raw = json.dumps([name]).encode()  # ASCII JSON: "\ud800" and "\u0000" as escapes, as a client would send
    cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    event = api_event(
        "GET",
        "/v1/agent-templates",
        "/v1/agent-templates",
        principal=context_for(user),
        query={"cursor": cursor},
    )
    response = call("catalog", event)
    assert response["statusCode"] == 400 and header(response, "Content-Type") == "application/problem+json"


def test_template_patch_is_422_naming_only_the_null_fields_when_some_are_null(ai_app, db):
    admin = add_user(db, role="admin")
    template = add_template(db)
    body = {"template_name": "renamed", "description": None, "is_active": None}
    event = api_event(
        "PATCH",
        "/v1/agent-templates/{id}",
        f"/v1/agent-templates/{template}",
        principal=context_for(admin, role="admin"),
        body=body,
        path_parameters={"id": str(template)},
    )
    response = call("catalog", event)
    assert response["statusCode"] == 422
    # It named every field of the body that may not be null, template_name too, and without "body" in loc.
    errors = body_of(response)["errors"]
    assert [error["loc"] for error in errors] == [["body", "description"], ["body", "is_active"]]
    assert all(error["type"] == "value_error" and error["msg"] for error in errors)
    assert db.execute("SELECT template_name FROM agent_templates").fetchone()[0] == "planner"


def report_call(user, method, body=None, report_id=None):
    if report_id is None:
        event = api_event(
            method, "/v1/analysis-reports", "/v1/analysis-reports", principal=context_for(user), body=body
        )
    else:
        event = api_event(
            method,
            "/v1/analysis-reports/{id}",
            f"/v1/analysis-reports/{report_id}",
            principal=context_for(user),
            body=body,
            path_parameters={"id": str(report_id)},
        )
    return call("records", event)


def test_repeated_report_uuid_returns_the_same_report_when_created_twice(ai_app, db):
    user = add_user(db)
    first = report_call(user, "POST", {"report_uuid": "r-1", "goal": "Find churn drivers"})
    second = report_call(user, "POST", {"report_uuid": "r-1", "goal": "Find churn drivers"})
    assert first["statusCode"] == 201 and second["statusCode"] == 200
    assert body_of(first)["id"] == body_of(second)["id"]
    other = add_user(db)
    assert report_call(other, "POST", {"report_uuid": "r-1", "goal": "x"})["statusCode"] == 409
    assert db.execute("SELECT count(*) FROM deep_analysis_reports").fetchone()[0] == 1


def test_report_moves_pending_running_completed_with_duration_and_refuses_other_moves(ai_app, db):
    user = add_user(db)
    report = body_of(report_call(user, "POST", {"report_uuid": "r-2", "goal": "g"}))
    rid = report["id"]
    assert report["status"] == "pending" and report["end_time"] is None
    assert report_call(user, "PATCH", {"status": "completed"}, rid)["statusCode"] == 409
    assert report_call(user, "PATCH", {"progress_percentage": 101}, rid)["statusCode"] == 422
    running = body_of(report_call(user, "PATCH", {"status": "running", "progress_percentage": 40}, rid))
    assert running["status"] == "running" and running["progress_percentage"] == 40
    db.execute("UPDATE deep_analysis_reports SET start_time = now() - interval '90 seconds' WHERE id = %s", (rid,))
    done = body_of(
        report_call(user, "PATCH", {"status": "completed", "total_tokens_used": 1200, "estimated_cost": "0.012"}, rid)
    )
    assert done["status"] == "completed" and done["progress_percentage"] == 100
    assert done["end_time"] is not None and 89 <= done["duration_seconds"] <= 95
    assert done["estimated_cost"] == "0.012000" and done["total_tokens_used"] == 1200
    assert report_call(user, "PATCH", {"status": "running"}, rid)["statusCode"] == 409
    assert report_call(add_user(db), "GET", report_id=rid)["statusCode"] == 404


@pytest.mark.parametrize("final", ["failed"])
def test_running_report_may_fail_when_the_analysis_breaks(ai_app, db, final):
    user = add_user(db)
    rid = body_of(report_call(user, "POST", {"report_uuid": "r-3", "goal": "g"}))["id"]
    report_call(user, "PATCH", {"status": "running"}, rid)
    failed = body_of(report_call(user, "PATCH", {"status": final}, rid))
    assert failed["status"] == "failed" and failed["duration_seconds"] is not None


def execution_call(user, method, body=None, execution_id=None):
    if execution_id is None:
        event = api_event(method, "/v1/code-executions", "/v1/code-executions", principal=context_for(user), body=body)
    else:
        event = api_event(
            method,
            "/v1/code-executions/{id}",
            f"/v1/code-executions/{execution_id}",
            principal=context_for(user),
            body=body,
            path_parameters={"id": str(execution_id)},
        )
    return call("records", event)


def test_code_execution_is_tied_to_a_message_and_only_its_author_changes_it(ai_app, db):
    author, member, stranger = add_user(db), add_user(db), add_user(db)
    conversation, thread = add_thread(db, author, member)
    message = db.execute(
        "INSERT INTO messages (conversation_id, thread_id, sender_id, content) VALUES (%s, %s, %s, 'run') RETURNING id",
        (conversation, thread, author),
    ).fetchone()[0]
    body = {"conversation_id": str(conversation), "message_id": message, "initial_code": "print(1)"}
    assert execution_call(stranger, "POST", body)["statusCode"] == 404
    created = execution_call(author, "POST", body)
    assert created["statusCode"] == 201
    eid = body_of(created)["id"]
    assert execution_call(member, "GET", execution_id=eid)["statusCode"] == 200
    assert execution_call(stranger, "GET", execution_id=eid)["statusCode"] == 404
    assert execution_call(member, "PATCH", {"output": "x"}, eid)["statusCode"] == 404
    patched = body_of(execution_call(author, "PATCH", {"latest_code": "print(2)", "is_successful": True}, eid))
    assert patched["latest_code"] == "print(2)" and patched["is_successful"] is True
    other_conversation, _ = add_thread(db, author)
    wrong = {"conversation_id": str(other_conversation), "message_id": message}
    assert execution_call(author, "POST", wrong)["statusCode"] == 404
    listed = body_of(execution_call(author, "GET"))
    assert [item["id"] for item in listed["items"]] == [eid]


def test_execution_list_leaves_out_a_conversations_records_when_the_author_has_left_it(ai_app, db):
    author, member = add_user(db), add_user(db)
    kept, _ = add_thread(db, author)
    left, _ = add_thread(db, member, author)
    kept_id = body_of(execution_call(author, "POST", {"conversation_id": str(kept), "output": "mine"}))["id"]
    left_id = body_of(execution_call(author, "POST", {"conversation_id": str(left), "output": "secret table"}))["id"]
    db.execute("DELETE FROM participants WHERE conversation_id = %s AND user_id = %s", (left, author))
    assert execution_call(author, "GET", execution_id=left_id)["statusCode"] == 404
    listed = body_of(execution_call(author, "GET"))
    assert [item["id"] for item in listed["items"]] == [kept_id]


def _nested(depth: int) -> list:
    deep: list = []
    for _ in range(depth - 1):
        deep = [deep]
    return deep


def test_free_json_nested_past_the_depth_limit_is_422_and_the_records_still_read(ai_app, db):
    # Stored as sent, free JSON nested past pydantic's serialization depth answered 500 for the write and for
    # every later read or list of the record.
    from shared.models.json_values import JSON_MAX_DEPTH

    author = add_user(db)
    conversation, _ = add_thread(db, author)
    base = {"conversation_id": str(conversation)}
    for field, value in (("error_messages", {"a": _nested(300)}), ("failed_agents", _nested(300))):
        assert execution_call(author, "POST", {**base, field: value})["statusCode"] == 422
    created = execution_call(author, "POST", {**base, "failed_agents": _nested(JSON_MAX_DEPTH)})
    assert created["statusCode"] == 201
    eid = body_of(created)["id"]
    assert execution_call(author, "PATCH", {"error_messages": {"a": _nested(300)}}, eid)["statusCode"] == 422
    rid = body_of(report_call(author, "POST", {"report_uuid": "deep", "goal": "g"}))["id"]
    for field in ("summaries", "plotly_figures", "synthesis"):
        assert report_call(author, "PATCH", {field: _nested(300)}, rid)["statusCode"] == 422
    assert report_call(author, "GET", report_id=rid)["statusCode"] == 200
    assert execution_call(author, "GET")["statusCode"] == 200


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), {"a\x00b": 1}, "a\x00b", ["\ud800"], {"\udfff": 1}],
    ids=["NaN", "Infinity", "NUL in a key", "NUL", "lone surrogate", "lone surrogate in a key"],
)
def test_free_json_jsonb_cannot_hold_is_422_naming_the_field_and_changes_nothing(ai_app, db, bad):
    # Python's JSON reader takes NaN, Infinity (1e400 reads as it) and strings no jsonb holds: the database refused
    # them with a 422 that named no field and said a value "breaks a rule of the data model".
    author = add_user(db, role="admin")
    conversation, _ = add_thread(db, author)
    rid = body_of(report_call(author, "POST", {"report_uuid": "r", "goal": "g"}))["id"]
    resource = {"resource_name": "r", "resource_type": "bedrock", "deployment_config": {"x": bad}}
    refusals = {
        ("body", "summaries"): report_call(author, "PATCH", {"summaries": {"x": [bad]}}, rid),
        ("body", "failed_agents"): execution_call(
            author, "POST", {"conversation_id": str(conversation), "failed_agents": [bad]}
        ),
        ("body", "deployment_config"): call(
            "catalog",
            api_event(
                "POST",
                "/v1/deployed-resources",
                "/v1/deployed-resources",
                principal=context_for(author, role="admin"),
                body=resource,
            ),
        ),
    }
    for loc, response in refusals.items():
        assert response["statusCode"] == 422, response["body"]
        assert [tuple(item["loc"][:2]) for item in body_of(response)["errors"]] == [loc]
    assert body_of(report_call(author, "GET", report_id=rid))["summaries"] is None
    assert db.execute("SELECT count(*) FROM code_executions").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM deployed_resources").fetchone()[0] == 0


def test_a_field_the_body_does_not_name_is_422_and_changes_nothing(ai_app, db):
    # A misspelt field was dropped and the request answered 200 as if it had done what it asked: {"progress": 50}
    # (the field is progress_percentage) left the report as it was.
    user = add_user(db)
    report = body_of(report_call(user, "POST", {"report_uuid": "r-x", "goal": "g"}))
    typo = report_call(user, "PATCH", {"status": "running", "progress": 50}, report_id=report["id"])
    assert typo["statusCode"] == 422 and header(typo, "Content-Type") == "application/problem+json"
    assert body_of(report_call(user, "GET", report_id=report["id"]))["status"] == "pending"
    assert report_call(user, "POST", {"report_uuid": "r-y", "goal": "g", "owner": "x"})["statusCode"] == 422
    _, thread = add_thread(db, user, model_id="local-echo")
    add_model(db)
    assert complete(user, thread, {"content": "hi", "temprature": 0})["statusCode"] == 422
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    admin = context_for(add_user(db, role="admin"), role="admin")
    made = api_event("POST", "/v1/model-configurations", "/v1/model-configurations", principal=admin,
                     body={"model_id": "m-typo", "provider": "local", "per_1k_input_token_usd": "1"})  # fmt: skip
    assert call("catalog", made)["statusCode"] == 422
    assert db.execute("SELECT count(*) FROM model_configurations WHERE model_id = 'm-typo'").fetchone() == (0,)


# Lambda hands API Gateway at most 6 MB of JSON, the answer's body escaped inside it (the Python 3.12+ runtimes
# keep non-ASCII as it is): an answer past that is a 502 from API Gateway, not the record.
LAMBDA_ANSWER_MAX_BYTES = 6 * 1024 * 1024


def lambda_bytes(response) -> int:
    return len(json.dumps(response, ensure_ascii=False).encode())


def _html(chars: int) -> str:
    # Ordinary markup: each quote is escaped once in the body and again in Lambda's answer.
    unit = '<div class="cell">x</div>\n'
    return unit * (chars // len(unit))


def test_a_report_patch_is_413_and_changes_nothing_when_the_report_would_not_fit_in_an_answer(ai_app, db):
    # Each field was bounded alone, the record not at all: an HTML report and its code and conclusion, each
    # within its bound, made a report whose every answer (the PATCH's, GET, any list page holding it) was over
    # Lambda's limit, so the report could never be read again.
    user = add_user(db)
    rid = body_of(report_call(user, "POST", {"report_uuid": "big", "goal": "g"}))["id"]
    html = report_call(user, "PATCH", {"status": "running", "html_report": _html(3_000_000)}, rid)
    assert html["statusCode"] == 200 and lambda_bytes(html) <= LAMBDA_ANSWER_MAX_BYTES
    more = {"analysis_code": _html(1_000_000), "final_conclusion": _html(1_000_000)}
    too_big = report_call(user, "PATCH", more, rid)
    assert too_big["statusCode"] == 413 and header(too_big, "Content-Type") == "application/problem+json"
    got = report_call(user, "GET", report_id=rid)
    assert got["statusCode"] == 200 and lambda_bytes(got) <= LAMBDA_ANSWER_MAX_BYTES
    assert body_of(got)["analysis_code"] is None and body_of(got)["status"] == "running"


def test_an_execution_write_is_413_and_changes_nothing_when_the_record_would_not_fit_in_an_answer(ai_app, db):
    author = add_user(db)
    conversation, _ = add_thread(db, author)
    quotes = '"' * 900_000  # escaped twice on the way out: four bytes each in Lambda's answer
    created = execution_call(author, "POST", {"conversation_id": str(conversation), "output": quotes})
    assert created["statusCode"] == 201
    eid = body_of(created)["id"]
    too_big = execution_call(author, "PATCH", {"latest_code": quotes}, eid)
    assert too_big["statusCode"] == 413
    got = execution_call(author, "GET", execution_id=eid)
    assert lambda_bytes(got) <= LAMBDA_ANSWER_MAX_BYTES and body_of(got)["latest_code"] is None


def _walk(first_page):
    """Every item of a list, page by page, each page's answer checked against Lambda's limit."""
    items, cursor = [], None
    while True:
        response = first_page(cursor)
        assert response["statusCode"] == 200 and lambda_bytes(response) <= LAMBDA_ANSWER_MAX_BYTES
        page = body_of(response)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_record_lists_stop_a_page_short_of_lambdas_limit_and_go_on_from_there_when_records_are_large(ai_app, db):
    # A page held up to 50 full records by default: three large reports made every page of the owner's list an
    # answer over Lambda's limit, so the list failed for good.
    user = add_user(db)
    conversation, _ = add_thread(db, user)
    reports, executions = [], []
    for n in range(3):
        rid = body_of(report_call(user, "POST", {"report_uuid": f"large-{n}", "goal": "g"}))["id"]
        assert report_call(user, "PATCH", {"html_report": _html(2_500_000)}, rid)["statusCode"] == 200
        reports.append(rid)
        body = {"conversation_id": str(conversation), "output": _html(1_000_000), "initial_code": _html(1_000_000)}
        executions.append(body_of(execution_call(user, "POST", body))["id"])

    def page(path):
        def first_page(cursor):
            query = {"cursor": cursor} if cursor else None
            return call("records", api_event("GET", path, path, principal=context_for(user), query=query))

        return first_page

    assert [r["id"] for r in _walk(page("/v1/analysis-reports"))] == reports[::-1]
    assert [e["id"] for e in _walk(page("/v1/code-executions"))] == executions[::-1]


def test_template_list_stops_a_page_short_of_lambdas_limit_when_prompts_are_long(ai_app, db):
    # Up to 200 templates a page, each prompt up to 20,000 characters: 45 long prompts in Japanese (a
    # non-ASCII letter is seven bytes in Lambda's answer) made a page no answer could carry.
    prompt = "あなたは分析の専門家です。" * 1538
    for n in range(45):
        db.execute(
            "INSERT INTO agent_templates (template_name, description, prompt_template) VALUES (%s, 'd', %s)",
            (f"ja-{n:02d}", prompt[:20_000]),
        )
    user = add_user(db)

    def first_page(cursor):
        query = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        path = "/v1/agent-templates"
        return call("catalog", api_event("GET", path, path, principal=context_for(user), query=query))

    assert [t["template_name"] for t in _walk(first_page)] == [f"ja-{n:02d}" for n in range(45)]
