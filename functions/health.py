"""GET /v1/health: database reachability and the migration version."""

from __future__ import annotations

from functions._http import lambda_entry, make_resolver
from shared.bootstrap import container
from shared.services.health import Health, check_health

app = make_resolver()


@app.get("/v1/health", summary="Service health", tags=["health"])
def get_health() -> Health:
    return check_health(container().db)


lambda_handler = lambda_entry(app)
