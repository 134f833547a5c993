"""The settings tables (README's Configuration, and those in docs/) agree with shared/settings.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from shared.settings import PROJECT_ROOT, Settings

FIELDS = {field.alias: field for field in Settings.model_fields.values()}
# `| `NAME` | default | meaning |`: a row about one setting (rows naming several are prose, not checked).
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \| (.*) \|$", re.MULTILINE)
# Bounds as the tables write them: "1 to 60", "at least 3600", "up to 900", "up to 7 days".
RANGE = re.compile(r"\b(\d+) to (\d+)\b")
AT_LEAST = re.compile(r"\bat least (\d+)\b(?! bytes)")
UP_TO = re.compile(r"\bup to (\d+)( days)?\b")


def _readme_table() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    return readme[readme.index("## Configuration") : readme.index("## Documentation")]


def _rows() -> list[object]:
    """(document, name, default, meaning) of every one-setting row of every settings table."""
    sources = [("README.md", _readme_table())]
    sources += [(f"docs/{p.name}", p.read_text()) for p in sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    return [
        pytest.param(doc, *match.groups(), id=f"{doc}:{match.group(1)}")
        for doc, text in sources
        for match in ROW.finditer(text)
    ]


def _bounds(field: FieldInfo) -> dict[str, float]:
    found: dict[str, float] = {}
    for meta in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(meta, name, None)
            if value is not None:
                found[name] = value
    return found


def _shown_default(field: FieldInfo) -> str | None:
    """The default as a table writes it, or None when it has no short form (unset, a tuple)."""
    default = field.default
    if default is None or isinstance(default, tuple):
        return None
    if isinstance(default, Path):
        return str(default.relative_to(PROJECT_ROOT))
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_readme_configuration_lists_every_setting_when_a_field_is_added():
    table = _readme_table()
    missing = [field.alias for field in FIELDS.values() if f"| `{field.alias}` |" not in table]
    assert missing == []


@pytest.mark.parametrize(("doc", "name", "default", "meaning"), _rows())
def test_settings_table_row_matches_the_settings_model_when_a_default_or_bound_changes(doc, name, default, meaning):
    field = FIELDS.get(name)
    assert field is not None, f"{doc} documents {name}, which Settings does not read"
    shown = _shown_default(field)
    written = default.strip().strip("`").split(" ")[0].strip("`")
    if isinstance(field.default, tuple):
        # A list written short: each item by its last part ("plain" for text/plain), in order.
        assert default.split(", ") == [item.rsplit("/", 1)[-1] for item in field.default], f"{doc}: {name}"
    elif shown is None:
        assert written in ("-", "unset", "embedded"), f"{doc}: {name} has no default, the table says {default}"
    else:
        assert written == shown, f"{doc}: {name} defaults to {shown}, the table says {default}"
    bounds = _bounds(field)
    for low, high in RANGE.findall(meaning):
        assert (bounds.get("ge"), bounds.get("le")) == (int(low), int(high)), f"{doc}: {name} bounds {bounds}"
    for low in AT_LEAST.findall(meaning):
        assert bounds.get("ge") == int(low), f"{doc}: {name} bounds {bounds}"
    for high, days in UP_TO.findall(meaning):
        assert bounds.get("le") == int(high) * (86400 if days else 1), f"{doc}: {name} bounds {bounds}"
