"""Messages: send, pages, edits, deletes, read cursors, reactions, feedback and search."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, ForbiddenError, GoneError, InvalidRequestError, UnprocessableError
from shared.models.conversations import (
    Feedback,
    FeedbackPut,
    Message,
    MessageCreate,
    MessageEdit,
    MessageUpdate,
    Reaction,
    ReactionSummary,
    ReadCursor,
    ReadMark,
)
from shared.pagination import (
    ANSWER_MAX_BYTES,
    JsonPage,
    Page,
    decode_cursor,
    page_limit,
    page_of,
    page_within,
)
from shared.repositories.conversations import ConversationsRepository, RowLock
from shared.repositories.messages import MessageAccess, MessagesRepository
from shared.services.access import ANONYMOUS_ROLE, Access, conversation_access, not_found, role_in
from shared.services.conversations import thread_access
from shared.services.message_content import check_content
from shared.settings import Settings

Direction = Literal["backward", "forward"]


def _message_page(rendered: tuple[str, int | None]) -> JsonPage:
    """The page from the repository's (items, id the next page starts after): it stops short of one Lambda answer
    (ANSWER_MAX_BYTES), so it may hold fewer items than asked for while next_cursor is set."""
    items, after = rendered
    return JsonPage.of(items, (after,) if after is not None else None)


SEARCH_MAX_CHARS = 200
# One answer whether the other user left or their account was deleted: the send has no need to say which.
COUNTERPART_GONE = (
    "The other user has left this direct conversation or no longer has an account, so nobody would read the message: "
    "nothing was sent. If they left, asking for the direct conversation with them again (POST /v1/conversations) "
    "brings them back."
)
# Distinct emoji one message may hold: its reaction summary is a single unpaged list.
REACTION_MAX_EMOJI = 50


def _invalid(field: str, message: str) -> UnprocessableError:
    return UnprocessableError(message, errors=[{"loc": ["body", field], "type": "value_error", "msg": message}])


def _scope(principal: Principal, conversation_id: UUID) -> dict[str, Any]:
    """Query parameters that say who is asking; an anonymous token names one conversation only."""
    if principal.is_anonymous:
        if principal.conversation_id != conversation_id:
            raise not_found()
        return {"anonymous": True, "user_id": None}
    return {"anonymous": False, "user_id": principal.require_user()}


def send_message(
    db: Database, settings: Settings, principal: Principal, conversation_id: UUID, body: MessageCreate
) -> tuple[str, bool]:
    """The new message (True), or the original one when the idempotency key was used before (False), as the
    JSON of a Message that PostgreSQL rendered (as a page's items are)."""
    scope = _scope(principal, conversation_id)
    check_content(settings, body.content)
    file_ids = list(dict.fromkeys(body.attachments))
    if len(file_ids) > settings.message_max_attachments:
        raise _invalid("attachments", f"A message carries at most {settings.message_max_attachments} attachments.")
    if file_ids and scope["anonymous"]:
        raise _invalid("attachments", "Anonymous conversations take no attachments.")
    params = {
        **scope,
        "conversation_id": conversation_id,
        "thread_id": body.thread_id,
        "content": body.content,
        "file_ids": file_ids,
        "idempotency_key": body.idempotency_key,
        "message_limit": settings.anonymous_message_limit,
    }

    def work(uow: UnitOfWork) -> tuple[str, bool]:
        repo = MessagesRepository(uow.conn)
        sent = repo.send(params)
        if sent is None:
            sent = _explain_unsent(uow, repo, principal, params)
        if not sent.same:
            # Keys are unique per conversation and sender: this one already names another message (a client whose
            # key counter restarted, or a key reused in another thread). Answering that message would say this
            # one was stored.
            raise ConflictError("The idempotency key was used for another message in this conversation.")
        return sent.message_json, sent.created

    # The send is one statement, so it is its own transaction: one round trip, one commit, and nothing left
    # behind if any part of it fails. The failure path after it only reads.
    return db.statement(work)


def _explain_unsent(uow: UnitOfWork, repo: MessagesRepository, principal: Principal, params: dict[str, Any]) -> Any:
    """Why the one-statement send inserted nothing: only on the failure path, so the happy path stays short."""
    conversation_id = params["conversation_id"]
    conversations = ConversationsRepository(uow.conn)
    access = conversation_access(conversations, principal, conversation_id)
    if params["thread_id"] is not None and not repo.thread_in_conversation(params["thread_id"], conversation_id):
        raise _invalid("thread_id", "thread_id must name a thread of this conversation.")
    if params["idempotency_key"] is not None:
        # A concurrent retry with the same key committed after this statement's snapshot was taken (or the retry of
        # a message stored before the other user of a direct conversation left).
        found = repo.find_by_key(params)
        if found is not None:
            return found
    if access.kind == "direct" and not conversations.has_other_participant(conversation_id, params["user_id"]):
        raise ConflictError(COUNTERPART_GONE, reason="counterpart_gone")
    if params["file_ids"]:
        raise _invalid("attachments", "Attachments must be files you own.")
    limit = params["message_limit"]
    if params["anonymous"] and repo.is_full(conversation_id, limit):
        raise ConflictError(f"This anonymous conversation is full: it holds at most {limit} messages.", limit=limit)
    raise ConflictError("The message could not be stored; retry.")


@dataclass(frozen=True)
class PageStart:
    """Where a page of messages starts: the message id it goes on after (None: an end) and its direction."""

    after: int | None
    forward: bool

    @classmethod
    def of(cls, cursor: str | None, direction: Direction | None, after: int | None) -> PageStart:
        """From a page's query: a cursor (a next_cursor handed out), or `after` (a message id the client has: what
        came since, oldest first). Message ids are handed out in commit order within a conversation, so polling
        with the newest id a client holds misses nothing."""
        if after is None:
            key = decode_cursor(cursor, (int,))
            return cls(key[0] if key else None, direction == "forward")
        if cursor:
            raise InvalidRequestError("Pass either cursor or after, not both.")
        if direction == "backward":
            raise InvalidRequestError("after pages forward (oldest first): leave out direction or pass forward.")
        return cls(after, True)


def _page_params(principal: Principal, conversation_id: UUID, after: int | None, limit: int | None) -> dict[str, Any]:
    return {
        **_scope(principal, conversation_id),
        "conversation_id": conversation_id,
        "cursor": after,
        "limit": page_limit(limit) + 1,
        "max_bytes": ANSWER_MAX_BYTES,
    }


def list_messages(
    db: Database,
    principal: Principal,
    conversation_id: UUID,
    start: PageStart,
    limit: int | None,
) -> JsonPage:
    """A page of messages, newest first (backward) or oldest first (forward), after where it starts."""
    params = _page_params(principal, conversation_id, start.after, limit)
    forward = start.forward

    def work(uow: UnitOfWork) -> JsonPage:
        page = _message_page(MessagesRepository(uow.conn).page(params, forward=forward))
        if page.items_json == "[]":  # the access check rode along; tell "may not see" from "nothing more"
            conversation_access(ConversationsRepository(uow.conn), principal, conversation_id)
        return page

    # One statement answers the page (the access check rides along), so it runs in autocommit: no BEGIN and
    # ROLLBACK round trips. The fallback access check after an empty page needs no shared snapshot with it.
    return db.statement(work)


def list_changes(
    db: Database, principal: Principal, conversation_id: UUID, after: int | None, cursor: str | None, limit: int | None
) -> JsonPage:
    """Edits, deletions, reaction changes, read and delivered marks and participant changes in the conversation after
    a position (the newest change id the client applied, or at first the newest message id it read; 0 for every
    change kept), oldest first. A position before the changes maintenance purged is a 410 that names where to resume
    once the client has read the conversation again."""
    position = PageStart.of(cursor, "forward", after).after or 0
    params = _page_params(principal, conversation_id, position, limit)

    def work(uow: UnitOfWork) -> JsonPage:
        repo = MessagesRepository(uow.conn)
        items, next_after, purged_through = repo.changes_page(params)
        if items == "[]" or position < purged_through:  # the access check rode along with the items only
            conversation_access(ConversationsRepository(uow.conn), principal, conversation_id)
        if position < purged_through:
            # Changes after this position were purged in the page's own snapshot: it cannot be answered exactly.
            resume = repo.newest_position(conversation_id)
            raise GoneError(
                f"Changes after position {position} are no longer kept (they are kept for a limited time). Read the "
                f"conversation's messages again, then poll changes with after={resume}.",
                resume_after=resume,
            )
        return _message_page((items, next_after))

    # One statement answers the page and the purge horizon in one snapshot, so it runs in autocommit as a page does.
    return db.statement(work)


def list_thread_messages(
    db: Database,
    principal: Principal,
    thread_id: UUID,
    start: PageStart,
    limit: int | None,
) -> JsonPage:
    """A page of a thread's messages, as list_messages answers one."""
    params = {
        "thread_id": thread_id,
        "cursor": start.after,
        "limit": page_limit(limit) + 1,
        "max_bytes": ANSWER_MAX_BYTES,
    }

    def work(uow: UnitOfWork) -> JsonPage:
        thread_access(ConversationsRepository(uow.conn), principal, thread_id)
        return _message_page(MessagesRepository(uow.conn).thread_page(params, forward=start.forward))

    return db.read(work)


def _message_access(
    repo: MessagesRepository, principal: Principal, message_id: int, lock: RowLock | None = None
) -> tuple[MessageAccess, Access]:
    """The message and the caller's access to it; a write passes `lock`, as to conversation_access."""
    row = repo.access(message_id, principal.user_id, lock)
    role = role_in(principal, row.conversation_id, row.kind, row.role) if row else None
    if row is None or role is None:
        raise not_found()
    return row, Access(conversation_id=row.conversation_id, kind=row.kind, role=role)


def _is_sender(principal: Principal, row: MessageAccess, access: Access) -> bool:
    if access.role == ANONYMOUS_ROLE:
        return row.sender_id is None and row.sender_kind == "user"
    return row.sender_id is not None and row.sender_id == principal.user_id


def edit_message(
    db: Database, settings: Settings, principal: Principal, message_id: int, body: MessageUpdate
) -> Message:
    check_content(settings, body.content)

    def work(uow: UnitOfWork) -> Message:
        repo = MessagesRepository(uow.conn)
        # NO KEY UPDATE, as a delete and a send take it: the edit's change id (message_changes) is drawn under it, so
        # changes commit in id order within the conversation and a poll after the newest one seen misses none. Taken
        # in the access check, before the caller's participant row, as a removal takes them (no deadlock).
        row, access = _message_access(repo, principal, message_id, "NO KEY UPDATE")
        if not _is_sender(principal, row, access):
            raise ForbiddenError("Only the sender may edit a message.")
        # Anyone holding an anonymous conversation's token may write to it: the earlier versions its edits keep
        # are bounded like its messages.
        limit = settings.anonymous_message_limit if access.kind == "anonymous" else None
        edited = repo.edit(message_id, body.content, principal.user_id, limit)
        if edited is None:
            if limit is not None and repo.edits_full(access.conversation_id, limit):
                raise ConflictError(
                    f"This anonymous conversation is full: it keeps at most {limit} earlier versions.", limit=limit
                )
            raise not_found()
        return edited

    return db.transact(work)


def delete_message(db: Database, principal: Principal, message_id: int) -> None:
    def work(uow: UnitOfWork) -> None:
        repo = MessagesRepository(uow.conn)
        # As a send does: no message commits in this conversation until the delete has moved last_message_at. The
        # access check takes the conversation's row that way (before the caller's participant row, as a removal
        # takes them: taken after it, the two could deadlock).
        row, access = _message_access(repo, principal, message_id, "NO KEY UPDATE")
        if not (_is_sender(principal, row, access) or access.is_admin):
            raise ForbiddenError("Only the sender or a conversation admin may delete a message.")
        repo.delete(message_id)

    db.transact(work)


def mark_read(db: Database, principal: Principal, conversation_id: UUID, body: ReadMark) -> ReadCursor:
    """Move the caller's read cursor (never backwards) and the statuses of others' messages up to it; a mark that
    moved something is a change in the conversation's change feed."""
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> ReadCursor:
        # NO KEY UPDATE, as an edit takes it: the mark's change id (message_changes) is drawn under it, so marks commit
        # in id order with the conversation's messages and other changes, and two marks never move the same statuses
        # at once. Taken in the access check, before the caller's participant row, as a removal takes them.
        checked = ConversationsRepository(uow.conn).lock_access(conversation_id, user_id, "NO KEY UPDATE")
        marked = MessagesRepository(uow.conn).mark(
            conversation_id, user_id, body.message_id, read=body.status == "read"
        )
        # The check, the mark and the COMMIT go out together: one round trip, and the conversation's row is held for
        # the server's work only, not across round trips (marks are frequent, and sends wait for them). The mark needs
        # no answer from the check: it runs after it (its own snapshot, the locks held) and writes nothing for
        # someone who is not a participant (or no longer is, once a removal the check waited for committed).
        uow.commit()
        found, moved = checked(), marked()
        if found is None or moved is None:
            raise not_found()
        return moved

    return db.pipelined(work)


def _canonical_emoji(emoji: str) -> str:
    """The emoji in NFC, so canonically equivalent spellings compare equal (the database also ignores variation
    selectors, migration 0550)."""
    return unicodedata.normalize("NFC", emoji)


def add_reaction(db: Database, principal: Principal, message_id: int, emoji: str) -> tuple[Reaction, bool]:
    user_id = principal.require_user()
    emoji = _canonical_emoji(emoji)

    def work(uow: UnitOfWork) -> tuple[Reaction, bool]:
        repo = MessagesRepository(uow.conn)
        # NO KEY UPDATE, as an edit takes it: the reaction's change id (message_changes) is drawn under it, so it
        # commits in id order with the conversation's messages and other changes. Reactions therefore wait for
        # sends, edits, deletes and other reactions in the same conversation.
        row, _ = _message_access(repo, principal, message_id, "NO KEY UPDATE")
        added = repo.add_reaction(row.conversation_id, message_id, user_id, emoji, REACTION_MAX_EMOJI)
        if added is None:
            raise ConflictError(
                f"This message holds at most {REACTION_MAX_EMOJI} different reactions.", limit=REACTION_MAX_EMOJI
            )
        return added

    return db.transact(work)


def reaction_summary(db: Database, principal: Principal, message_id: int) -> ReactionSummary:
    principal.require_user()

    def work(uow: UnitOfWork) -> ReactionSummary:
        repo = MessagesRepository(uow.conn)
        _message_access(repo, principal, message_id)
        return ReactionSummary(message_id=message_id, reactions=repo.reaction_counts(message_id, principal.user_id))

    return db.read(work)


def list_edits(
    db: Database, principal: Principal, message_id: int, cursor: str | None, limit: int | None
) -> Page[MessageEdit]:
    """The message's earlier versions, the latest edit first: for whoever may read the message. Their number is
    not bounded, so a page stops short of one answer (page_within)."""
    size = page_limit(limit)
    after = decode_cursor(cursor, (datetime, UUID))

    def work(uow: UnitOfWork) -> list[MessageEdit]:
        repo = MessagesRepository(uow.conn)
        _message_access(repo, principal, message_id)
        return repo.edits_page(message_id, after, size + 1)

    def key(edit: MessageEdit) -> tuple[datetime, UUID]:
        return edit.edited_at, edit.id

    return page_within(page_of(db.read(work), size, key), key)


def remove_reaction(db: Database, principal: Principal, message_id: int, emoji: str) -> None:
    user_id = principal.require_user()
    emoji = _canonical_emoji(emoji)

    def work(uow: UnitOfWork) -> None:
        repo = MessagesRepository(uow.conn)
        # As add_reaction: the change it logs draws its id under the conversation's row.
        row, _ = _message_access(repo, principal, message_id, "NO KEY UPDATE")
        if not repo.remove_reaction(row.conversation_id, message_id, user_id, emoji):
            raise not_found()

    db.transact(work)


def put_feedback(db: Database, principal: Principal, message_id: int, body: FeedbackPut) -> Feedback:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> Feedback:
        repo = MessagesRepository(uow.conn)
        _message_access(repo, principal, message_id, "KEY SHARE")
        return repo.put_feedback({"message_id": message_id, "user_id": user_id, **body.model_dump()})

    return db.transact(work)


def get_feedback(db: Database, principal: Principal, message_id: int) -> Feedback:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> Feedback:
        repo = MessagesRepository(uow.conn)
        _message_access(repo, principal, message_id)
        found = repo.get_feedback(message_id, user_id)
        if found is None:
            raise not_found()
        return found

    return db.read(work)


def search_messages(
    db: Database,
    principal: Principal,
    q: str | None,
    cursor: str | None,
    limit: int | None,
    conversation_id: UUID | None = None,
) -> JsonPage:
    """Full-text search over the caller's conversations only, or the one of them named (a filter, as the code
    executions' list takes one: a conversation the caller is not in matches nothing), newest first, paged as
    list_messages pages."""
    user_id = principal.require_user()
    query = (q or "").strip()
    if not query or len(query) > SEARCH_MAX_CHARS:
        raise UnprocessableError(
            f"q must hold 1 to {SEARCH_MAX_CHARS} characters.",
            errors=[{"loc": ["query", "q"], "type": "value_error", "msg": "q is empty or too long"}],
        )
    if "\x00" in query:
        # PostgreSQL text cannot hold it, so no message holds it: said of q, not left to the database's 422 about a
        # value that "cannot be stored".
        raise UnprocessableError(
            "q must not hold the NUL character (U+0000).",
            errors=[{"loc": ["query", "q"], "type": "value_error", "msg": "q holds the NUL character"}],
        )
    key = decode_cursor(cursor, (int,))
    params = {
        "user_id": user_id,
        "q": query,
        "conversation_id": conversation_id,
        "cursor": key[0] if key else None,
        "limit": page_limit(limit) + 1,
        "max_bytes": ANSWER_MAX_BYTES,
    }
    return db.read(lambda uow: _message_page(MessagesRepository(uow.conn).search(params)))
