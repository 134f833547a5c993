from __future__ import annotations

from pathlib import Path

import pytest

from functions import migrate as migrate_function
from shared.local.events import LocalContext
from shared.migrations import MigrationError
from shared.settings import get_settings


def test_trigger_fails_the_deploy_when_a_migration_file_is_misnamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "add_things.sql").write_text("SELECT 1;")
    monkeypatch.setenv("CONFAB_MIGRATIONS_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        # Raised before any connection: the Trigger sees a function error and CloudFormation rolls back.
        with pytest.raises(MigrationError, match="NNNN_verb_noun"):
            migrate_function.lambda_handler({}, LocalContext(function_name="confab-migrate", aws_request_id="t"))
    finally:
        get_settings.cache_clear()
