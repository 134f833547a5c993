"""The bound every stored message's text is held to, whoever writes it: a send, an edit, a completion's turn.

Kept apart from the messages service so that the completions function checks it without importing that."""

from __future__ import annotations

from shared.errors import UnprocessableError
from shared.settings import Settings


def check_content(settings: Settings, content: str) -> None:
    """422 for text longer than MESSAGE_MAX_CHARS (pages and their size bound count on it)."""
    if len(content) > settings.message_max_chars:
        message = f"A message holds at most {settings.message_max_chars} characters."
        raise UnprocessableError(message, errors=[{"loc": ["body", "content"], "type": "value_error", "msg": message}])
