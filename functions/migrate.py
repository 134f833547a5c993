"""Deploy-time trigger: apply pending migrations straight to the database, as `confab db migrate` does.

CDK's Trigger invokes this during `cdk deploy`, before the route functions are updated. It connects to the
instance (DB_HOST + the master secret), never to RDS Proxy: the migration runner holds a session advisory
lock, which would pin a proxy connection. A failing migration raises, the Trigger fails the deployment and
CloudFormation rolls the stack back; the migration itself was rolled back by its own transaction.

Then, with APP_DB_SECRET_ARN set (every AWS stage), it makes sure the application role of that secret exists
and may read and write every table (shared/app_role.py): the functions connect as that role, never as the
master user.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.app_role import grant_app_role_of_secret
from shared.bootstrap import conninfo_factory
from shared.migrations import migrate
from shared.observability import logger
from shared.settings import get_settings


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    conninfo = conninfo_factory(settings)()
    applied = migrate(conninfo, settings.migrations_dir)
    names = [f"{migration.version:04d}_{migration.name}" for migration in applied]
    logger.info("migrations applied", extra={"applied": names, "count": len(names)})
    result: dict[str, Any] = {"applied": names}
    if settings.app_db_secret_arn:
        result["app_role_created"] = grant_app_role_of_secret(conninfo, settings.app_db_secret_arn)
    return result
