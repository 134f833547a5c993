"""mypy reads only the aws-cdk-lib modules pyproject.toml lists; every one infra/ imports must be among them."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cdk_modules_imported() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "infra").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "aws_cdk")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] != "aws_cdk":
                    continue
                found.add(node.module)
                # Classes are CamelCase; a lower-case name imported from a package is one of its modules.
                found.update(f"{node.module}.{a.name}" for a in node.names if a.name[0].islower())
    return found


def _cdk_modules_followed() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    followed = [o["module"] for o in config if o.get("follow_imports") == "normal"]
    return {name for names in followed for name in names if name.split(".")[0] == "aws_cdk"}


def test_every_cdk_module_infra_imports_is_type_checked():
    imported = _cdk_modules_imported()
    assert "aws_cdk.aws_lambda" in imported  # the walk sees `from aws_cdk import aws_lambda as lambda_`
    assert imported - _cdk_modules_followed() == set()
