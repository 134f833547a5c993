"""Every column of every seed document has a home, and every home exists in the migrated database."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from shared.settings import PROJECT_ROOT

SEEDS = PROJECT_ROOT / "docs" / "seeds"
MAPPING = PROJECT_ROOT / "docs" / "seed-mapping.csv"

# Seed 000 runs name and type together ("password_hashTEXTBcrypt hash"): the type is the upper-case word.
_SEED0_COLUMN = re.compile(r"^([a-z0-9_]+?)(UUID|VARCHAR|TEXT|BOOLEAN|TIMESTAMP|INTEGER|JSONB|DECIMAL)")
_SEED1_ENTITY = re.compile(r"^\s+(\w+) \{$")
_SEED1_FIELD = re.compile(r"^\s+(?:uuid|string|int|bigint|json|datetime|text)\s+(\w+)")
_SEED1_LIST = re.compile(r"^(turn_metrics_record|user_properties) ((?:\w+, )+\w+) ")
_SEED2_TABLE = re.compile(r"^### \*\*\d+\. .*\(`(\w+)`\)\*\*")
_SEED3_TABLE = re.compile(r"^## \d+\. (\w+)$")
_MD_FIELD = re.compile(r"^\| `(\w+)` \| `[A-Z]")


def _seed_file(prefix: str) -> Path:
    return next(SEEDS.glob(f"{prefix}_*.txt"))


def _seed000(path: Path) -> Iterator[tuple[str, str]]:
    table = None
    for line in path.read_text().splitlines():
        if re.fullmatch(r"[a-z_]+", line):
            table = line
        elif table and (m := _SEED0_COLUMN.match(line)):
            yield table, m.group(1)


def _seed001(path: Path) -> Iterator[tuple[str, str]]:
    table = None
    for line in path.read_text().splitlines():
        if m := _SEED1_ENTITY.match(line):
            table = m.group(1)
        elif line.strip() == "}":
            table = None
        elif table and (m := _SEED1_FIELD.match(line)):
            yield table, m.group(1)
        elif m := _SEED1_LIST.match(line):
            yield from ((m.group(1), column) for column in m.group(2).split(", "))


def _markdown(heading: re.Pattern[str]) -> Callable[[Path], Iterator[tuple[str, str]]]:
    def parse(path: Path) -> Iterator[tuple[str, str]]:
        table = None
        for line in path.read_text(errors="replace").splitlines():
            if m := heading.match(line):
                table = m.group(1)
            elif table and (m := _MD_FIELD.match(line)):
                yield table, m.group(1)

    return parse


PARSERS = {"000": _seed000, "001": _seed001, "002": _markdown(_SEED2_TABLE), "003": _markdown(_SEED3_TABLE)}


def seed_columns() -> set[tuple[str, str, str]]:
    """(seed file, table, column) for every column the four seed documents define."""
    found = set()
    for prefix, parse in PARSERS.items():
        path = _seed_file(prefix)
        found.update((path.name, table, column) for table, column in parse(path))
    return found


def mapping_rows() -> list[dict[str, str]]:
    with MAPPING.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_seed_parser_finds_every_table_of_the_four_documents():
    tables = {(file[:3], table) for file, table, _ in seed_columns()}
    # 000: 5 (chat_messages lists no columns), 001: 14, 002: 9, 003: 6.
    assert len(tables) == 34
    assert ("001", "turn_metrics_record") in tables and ("000", "model_configurations") in tables


def test_every_seed_column_has_a_row_in_the_mapping():
    mapped = {(row["seed_file"], row["seed_table"], row["seed_column"]) for row in mapping_rows()}
    assert seed_columns() - mapped == set()


def test_the_mapping_covers_the_legacy_and_embedded_messages_with_a_note():
    rows = [r for r in mapping_rows() if r["seed_table"] == "chat_messages" or "." in r["seed_column"]]
    assert rows and all(r["note"] for r in rows)


def test_every_mapped_table_column_exists_in_the_migrated_database(db):
    existing = set(
        db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    )
    missing = {(row["table"], row["column"]) for row in mapping_rows()} - existing
    assert missing == set()
