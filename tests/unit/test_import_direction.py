"""Dependencies point one way: functions -> shared/services -> shared/repositories -> shared/db."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in _modules(folder):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_shared_never_imports_functions_or_the_event_handler():
    assert _violations("shared", ("functions", "aws_lambda_powertools.event_handler")) == []


def test_repositories_never_import_services_or_the_event_handler():
    forbidden = ("shared.services", "aws_lambda_powertools.event_handler", "functions")
    assert _violations("shared/repositories", forbidden) == []


def test_handlers_never_import_the_driver_or_boto3():
    assert _violations("functions", ("psycopg", "boto3", "botocore", "shared.repositories")) == []


def test_services_never_import_the_driver_directly_when_a_repository_would_do():
    # Services speak to the database only through repositories and the unit of work.
    assert _violations("shared/services", ("psycopg",)) == []


def test_the_checker_sees_a_wrong_way_import_when_one_exists(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("from functions.health import app\n")
    assert "functions.health" in _imports(bad)
