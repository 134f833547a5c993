"""A pytest plugin that holds the OpenAPI document to what the handlers answer in the tests.

Every HTTP handler module's entry point is made by functions._http.lambda_entry; this plugin wraps the ones it makes
and notes each problem status (4xx, 5xx) a handler answered a route of the route table, with the first test that
saw it. At the end of the session (on the xdist controller, from what each worker wrote to a shared folder) each
noted status must be one the merged OpenAPI document lists for that operation (shared/local/server.py): one that is
not fails the run, naming the route, the status and the test. A route answers a status of its own (403, 409...) by
declaring it in shared/routes.py (Route.problems).

Answers that never reach a handler (the authorizer's 401, the local server's 404, 405 and 413) are not seen here,
nor those of a test marked `unlisted_problems` (one that sabotages the schema to see a write fail part way), nor
those outside a test (a session fixture's).
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DIR_KEY = "observed_problems_dir"
Observation = tuple[str, str, int]  # method, route template, status


class ObservedProblems:
    def __init__(self) -> None:
        self.seen: dict[Observation, str] = {}  # -> the first test that saw it
        self.current_test = ""
        self.directory: Path | None = None
        self._original: Callable[..., Any] | None = None

    # Noting ------------------------------------------------------------------------------------------------------

    def install(self) -> None:
        """Wrap functions._http.lambda_entry, before any handler module is imported (they import it by name)."""
        from functions import _http

        original = _http.lambda_entry
        self._original = original

        @functools.wraps(original)
        def lambda_entry(app: Any, **kwargs: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
            handler = original(app, **kwargs)

            @functools.wraps(handler)
            def observed(event: dict[str, Any], context: Any) -> dict[str, Any]:
                response = handler(event, context)
                self.note(event, response)
                return response

            return observed

        _http.lambda_entry = lambda_entry

    def uninstall(self) -> None:
        if self._original is not None:
            from functions import _http

            _http.lambda_entry = self._original

    def note(self, event: Any, response: Any) -> None:
        if not isinstance(event, dict) or not isinstance(response, dict):
            return
        status = response.get("statusCode")
        method, resource = event.get("httpMethod"), event.get("resource")
        if not self.current_test:
            return
        if isinstance(status, int) and status >= 400 and isinstance(method, str) and isinstance(resource, str):
            self.seen.setdefault((method.upper(), resource, status), self.current_test)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        # A test that sabotages the schema (a constraint that refuses every row) gets answers no client can.
        self.current_test = "" if item.get_closest_marker("unlisted_problems") else item.nodeid
        yield
        self.current_test = ""

    # Gathering and checking --------------------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:  # xdist, on the controller: a worker is starting
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="confab-observed-problems-"))
        node.workerinput[DIR_KEY] = str(self.directory)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        workerinput = getattr(session.config, "workerinput", None)
        if workerinput is not None:
            if DIR_KEY in workerinput:
                rows = [[*key, test] for key, test in self.seen.items()]
                target = Path(workerinput[DIR_KEY]) / f"{uuid.uuid4().hex}.json"
                target.write_text(json.dumps(rows))
            return
        seen = dict(self.seen)
        if self.directory is not None:
            for path in sorted(self.directory.glob("*.json")):
                for method, resource, status, test in json.loads(path.read_text()):
                    seen.setdefault((method, resource, status), test)
            shutil.rmtree(self.directory, ignore_errors=True)
        undocumented = undocumented_problems(seen)
        if undocumented:
            lines = [
                f"{method} {resource} answered {status}, which its OpenAPI operation does not list (seen in {test})"
                for (method, resource, status), test in sorted(undocumented.items())
            ]
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            message = (
                "Problem statuses the handlers answered that the OpenAPI document does not list; declare each in "
                "shared/routes.py (Route.problems), or fix the handler:\n  " + "\n  ".join(lines)
            )
            if reporter is not None:
                reporter.write_sep("=", "undocumented problem statuses", red=True)
                reporter.write_line(message)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def undocumented_problems(seen: dict[Observation, str]) -> dict[Observation, str]:
    """Those of `seen` on a route of the route table whose status its operation in the OpenAPI document does not list
    (`default` aside: it is the catch-all, not a listing)."""
    from shared import routes

    table = {(route.method, route.path) for _, route in routes.all_routes()}
    relevant = {key: test for key, test in seen.items() if (key[0], key[1]) in table}
    if not relevant:
        return {}
    from shared.local.server import LocalApi

    paths = LocalApi().openapi()["paths"]
    return {
        (method, resource, status): test
        for (method, resource, status), test in relevant.items()
        if str(status) not in paths[resource][method.lower()]["responses"]
    }


def register(config: pytest.Config) -> None:
    """Install the plugin (tests/conftest.py, at pytest_configure)."""
    plugin = ObservedProblems()
    plugin.install()
    config.pluginmanager.register(plugin, "observed-problems")
    config.add_cleanup(plugin.uninstall)
