"""Anonymous-conversation tokens: `anon_<conversation id>.<secret>`, only the secret's hash stored.

The conversations service stores `token_hash` in conversations.anonymous_token_hash when it creates an
anonymous conversation and shows the token once; the authorizer verifies it here.
"""

from __future__ import annotations

from uuid import UUID

from shared.auth.opaque import hash_secret, new_secret, same_hash

ANONYMOUS_MARK = "anon_"


def issue_anonymous_token(conversation_id: UUID) -> tuple[str, str]:
    """A new token for the conversation and the hash to store: (token, token_hash)."""
    secret = new_secret()
    return f"{ANONYMOUS_MARK}{conversation_id}.{secret}", hash_secret(secret)


def is_anonymous_token(credential: str) -> bool:
    return credential.startswith(ANONYMOUS_MARK)


def parse_anonymous_token(token: str) -> tuple[UUID, str] | None:
    """(conversation id, secret) of a well-formed token, or None."""
    if not token.startswith(ANONYMOUS_MARK):
        return None
    conversation, dot, secret = token[len(ANONYMOUS_MARK) :].partition(".")
    if not dot or not secret or len(secret) > 128:
        return None
    try:
        return UUID(conversation), secret
    except ValueError:
        return None


def verify_anonymous_token(token: str, conversation_id: UUID, stored_hash: str | None) -> bool:
    """Whether `token` opens `conversation_id`, whose stored hash is `stored_hash` (constant-time)."""
    parsed = parse_anonymous_token(token)
    if parsed is None or parsed[0] != conversation_id:
        return False
    return same_hash(parsed[1], stored_hash)
