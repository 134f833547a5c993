"""Anonymous conversations: no owner, reached by a token shown once, limited per client address and IPv6 /48."""

from __future__ import annotations

from uuid import uuid4

from shared.auth.anonymous import issue_anonymous_token
from shared.db import Database, UnitOfWork
from shared.models.conversations import AnonymousConversation, AnonymousConversationCreate
from shared.repositories.conversations import ConversationsRepository
from shared.repositories.rate_limits import RateLimitsRepository
from shared.services.conversations import view
from shared.settings import Settings


def create_anonymous_conversation(
    db: Database, settings: Settings, address: str, body: AnonymousConversationCreate
) -> AnonymousConversation:
    """A new anonymous conversation and its token; 429 when the address, or its IPv6 /48 as a whole, made too
    many in the window."""
    conversation_id = uuid4()
    token, token_hash = issue_anonymous_token(conversation_id)

    def work(uow: UnitOfWork) -> AnonymousConversation:
        # Counted in the same transaction: a refused request rolls its own hits back, an accepted one keeps them.
        RateLimitsRepository(uow.conn).count_client(
            address,
            window_s=settings.anonymous_create_window_s,
            limit=settings.anonymous_create_limit,
            network_limit=settings.anonymous_create_limit_per_ipv6_48,
            what="anonymous conversations",
        )
        repo = ConversationsRepository(uow.conn)
        repo.insert(
            {
                "id": conversation_id,
                "kind": "anonymous",
                "title": body.title,
                "user_id": None,
                "created_by": None,
                "use_case": None,
                "room_type": None,
                "room_token": None,
                "host": None,
                "cmd_port": None,
                "viz_port": None,
                "direct_key": None,
                "anonymous_token_hash": token_hash,
            }
        )
        return AnonymousConversation(conversation=view(repo, conversation_id, None), token=token)

    return db.transact(work)
