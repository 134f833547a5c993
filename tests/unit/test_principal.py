from __future__ import annotations

import uuid

import pytest

from shared.auth.principal import Principal
from shared.errors import UnauthorizedError


def test_principal_round_trips_through_the_flat_authorizer_context():
    p = Principal(kind="jwt", user_id=uuid.uuid4(), role="admin", token_version=3)
    context = p.to_context()
    assert all(isinstance(v, str) for v in context.values())
    assert Principal.from_context({**context, "principalId": str(p.user_id)}) == p


def test_anonymous_principal_has_a_conversation_scope_and_no_user():
    p = Principal(kind="anonymous", conversation_id=uuid.uuid4())
    again = Principal.from_context(p.to_context())
    assert again.is_anonymous and again.user_id is None and again.conversation_id == p.conversation_id
    with pytest.raises(UnauthorizedError):
        again.require_user()


@pytest.mark.parametrize("context", [None, {}, {"kind": ""}, {"kind": "root"}, {"kind": "jwt", "user_id": "nope"}])
def test_missing_or_malformed_context_is_unauthorized(context):
    with pytest.raises(UnauthorizedError):
        Principal.from_context(context)


def test_a_malformed_context_stays_unauthorized_when_asked_again():
    # The parsed principals are cached; a failure must not be (nor answer for a later, valid context).
    bad = {"kind": "jwt", "user_id": "nope"}
    for _ in range(2):
        with pytest.raises(UnauthorizedError):
            Principal.from_context(bad)
    good = Principal(kind="jwt", user_id=uuid.uuid4(), role="user")
    assert Principal.from_context(good.to_context()) == good


def test_each_context_makes_its_own_principal_when_contexts_differ_in_one_field():
    user = uuid.uuid4()
    member = Principal.from_context(Principal(kind="jwt", user_id=user, role="user").to_context())
    admin = Principal.from_context(Principal(kind="jwt", user_id=user, role="admin").to_context())
    assert (member.role, admin.role) == ("user", "admin")


def test_unhashable_context_values_are_still_validated():
    with pytest.raises(UnauthorizedError):
        Principal.from_context({"kind": "jwt", "user_id": ["not", "a", "uuid"]})
