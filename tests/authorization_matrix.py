"""What the authorization matrices share: the routes of their groups, read from the route table, and a runner
that calls every cell (route x caller x {own object, foreign object}) and lists the ones that differ from the
policy.

The groups each matrix covers are named here, so a new route group that is in no matrix is noticed
(tests/integration/test_authorization_matrix_ai_and_identity.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shared import routes
from tests.conversations_helpers import Reply

CONVERSATION_GROUPS = ("conversations", "messages", "anonymous", "files")
AI_AND_IDENTITY_GROUPS = ("completions", "records", "catalog", "licenses", "users", "usage", "admin", "openai")
# Groups in no matrix, and why: their routes are all public, so there is no caller to tell apart.
UNMATRIXED_GROUPS = {"health": "public", "auth": "public: signup, login, refresh and logout carry no principal"}


def routes_in(groups: Sequence[str]) -> list[routes.Route]:
    """Every route of these groups, in table order."""
    return [route for group, route in routes.all_routes() if group.name in groups]


def outcome(reply: Reply) -> str:
    """ "ok" for any 2xx, else the status code: what a policy cell says."""
    return "ok" if 200 <= reply.status < 300 else str(reply.status)


# One cell: (route, caller, own) -> (what the handler answered, what the policy wants).
Cell = Callable[[routes.Route, str, bool], tuple[str, str]]


def mismatches(route_list: Sequence[routes.Route], callers: Sequence[str], cell: Cell) -> tuple[int, list[str]]:
    """How many cells were called, and a line for each whose answer is not the policy's."""
    count, wrong = 0, []
    for route in route_list:
        for caller in callers:
            for own in (True, False):
                got, want = cell(route, caller, own)
                count += 1
                if got != want:
                    wrong.append(f"{route.method} {route.path} {caller} {'own' if own else 'foreign'}: {got} != {want}")
    return count, wrong
