"""The tests run on the embedded PostgreSQL 18, production on RDS PostgreSQL 16 (infra/database.py).

SQL written against 18 passes every test here and fails at deploy (a migration) or at run time (a query) on 16.
This walks the migrations and every SQL string in the package for the features PostgreSQL 17 and 18 added that
a migration or a query could plausibly reach for. It is a guard, not a proof: a suite run against a 16 server
(`DATABASE_URL=... make test`) is the proof.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each pattern is, and the release that added it.
NEWER_THAN_16 = {
    r"\buuidv[47]\s*\(": "uuidv4()/uuidv7() (18)",
    r"\buuid_extract_(timestamp|version)\s*\(": "uuid_extract_* (17)",
    r"\bjson_(table|query|value|exists|scalar|serialize)\s*\(": "SQL/JSON query functions (17)",
    r"(?<![\w.])json\s*\(": "the JSON() constructor (17)",
    r"\bnot\s+matched\s+by\s+source\b": "MERGE ... WHEN NOT MATCHED BY SOURCE (17)",
    r"\bmerge\s+into\b[^;]*\breturning\b": "MERGE ... RETURNING (17)",
    r"\bset\s+expression\s+as\b": "ALTER COLUMN ... SET EXPRESSION (17)",
    r"\bto_(bin|oct)\s*\(": "to_bin()/to_oct() (17)",
    r"\bon_error\b": "COPY ... ON_ERROR (17)",
    r"\b(casefold|array_reverse|array_sort|crc32c?)\s*\(": "casefold/array_reverse/array_sort/crc32 (18)",
    r"\bwithout\s+overlaps\b": "temporal keys WITHOUT OVERLAPS (18)",
    r"\bnot\s+enforced\b": "NOT ENFORCED constraints (18)",
    r"\breturning\b[^;]*\b(old|new)\s*\.\s*[\w*]": "OLD/NEW in RETURNING (18)",
    r"\bvirtual\b": "virtual generated columns (18)",
}

# A generated column without STORED is virtual on 18 and a syntax error on 16.
GENERATED = re.compile(r"\bgenerated\s+always\s+as\s*\(", re.IGNORECASE)


def _sources() -> list[Path]:
    files = sorted((ROOT / "migrations").glob("*.sql"))
    files += sorted(p for folder in ("shared", "functions") for p in (ROOT / folder).rglob("*.py"))
    return files


SQL_WORDS = re.compile(r"\b(select|insert|update|delete|create|alter|returning|merge)\b", re.IGNORECASE)


def _sql_of(path: Path) -> str:
    """A migration less its comments; of a Python module, its string literals that read as SQL (docstrings and
    messages are prose)."""
    text = path.read_text()
    if path.suffix == ".sql":
        return re.sub(r"--[^\n]*", "", text)
    tree = ast.parse(text)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    return ";\n".join(value for value in literals if SQL_WORDS.search(value))


def _generated_without_stored(text: str) -> list[str]:
    found = []
    for match in GENERATED.finditer(text):
        depth, at = 1, match.end()
        while depth and at < len(text):
            depth += {"(": 1, ")": -1}.get(text[at], 0)
            at += 1
        if not re.match(r"\s*stored\b", text[at:], re.IGNORECASE):
            found.append(text[match.start() : at])
    return found


def test_production_runs_postgresql_16_as_this_guard_assumes():
    database = (ROOT / "infra" / "database.py").read_text()
    assert "PostgresEngineVersion.VER_16" in database, "the engine changed: update NEWER_THAN_16 for its release"


def test_no_migration_or_query_uses_sql_that_postgresql_16_cannot_run():
    # The walk reaches the queries: the repositories' statements are among the literals it reads.
    assert "INSERT INTO messages" in _sql_of(ROOT / "shared" / "repositories" / "messages.py")
    offending = []
    for path in _sources():
        text = _sql_of(path)
        for pattern, feature in NEWER_THAN_16.items():
            for match in re.finditer(pattern, text, re.IGNORECASE):
                offending.append(f"{path.relative_to(ROOT)}: {feature}: {match.group(0)[:60]!r}")
        offending += [
            f"{path.relative_to(ROOT)}: generated column without STORED: {g[:60]!r}"
            for g in _generated_without_stored(text)
        ]
    assert offending == []


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE t ALTER id SET DEFAULT uuidv7();",
        "SELECT * FROM JSON_TABLE(doc, '$.a[*]' COLUMNS (a int));",
        "UPDATE t SET a = 1 RETURNING old.a, new.a;",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT ENFORCED;",
        "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (a * 2));",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.id;",
    ],
)
def test_the_guard_finds_sql_that_only_newer_releases_run_when_it_is_written(sql):
    found = [feature for pattern, feature in NEWER_THAN_16.items() if re.search(pattern, sql, re.IGNORECASE)]
    assert found or _generated_without_stored(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (coalesce(a, (1)) * 2) STORED);",
        "SELECT to_json(x), row_to_json(x), x::json FROM t;",
        "CREATE TRIGGER t BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f(); -- uses NEW.a",
        "INSERT INTO t (a) VALUES (1) RETURNING id;",
    ],
)
def test_the_guard_passes_what_postgresql_16_runs_when_it_is_written(sql):
    found = [feature for pattern, feature in NEWER_THAN_16.items() if re.search(pattern, sql, re.IGNORECASE)]
    assert found == [] and _generated_without_stored(sql) == []
