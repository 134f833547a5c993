"""Links shown to other people (avatars, template icons) are http(s) or a path, never a script."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.models.web_url import WebUrl

LINK = TypeAdapter(WebUrl)


@pytest.mark.parametrize(
    "value",
    [
        "https://cdn.example.com/avatars/alice.jpg",
        "http://localhost:5173/a.png",
        "HTTPS://CDN.EXAMPLE.COM/A.PNG",
        "/icons/planner.svg",
        "//cdn.example.com/a.png",
        "https://[2001:db8::1]/a.png",
    ],
)
def test_http_links_and_paths_are_kept_as_sent_when_validated(value):
    assert LINK.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:image/svg+xml;base64,PHN2Zy8+",
        "vbscript:msgbox(1)",
        "java\tscript:alert(1)",
        " javascript:alert(1)",
        "https://",
        "https://[::1",
        "ftp://files.example.com/a.png",
        "icons/planner.svg",
        "https://cdn.example.com/a b.png",
        "https://cdn.example.com/a.png\n",
        "https://cdn.example.com/" + "a" * 2048,
    ],
)
def test_scripts_other_schemes_and_malformed_links_are_refused_when_validated(value):
    with pytest.raises(ValidationError):
        LINK.validate_python(value)
