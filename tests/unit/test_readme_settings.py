"""The README's Configuration table names every setting, so a new field cannot go undocumented."""

from __future__ import annotations

from shared.settings import PROJECT_ROOT, Settings


def test_readme_configuration_lists_every_setting_when_a_field_is_added():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Documentation")]
    missing = [field.alias for field in Settings.model_fields.values() if f"| `{field.alias}` |" not in table]
    assert missing == []
