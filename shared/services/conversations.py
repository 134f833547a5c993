"""Conversations, participants, threads, panels and data references: the rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, get_args
from uuid import UUID, uuid4

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, ForbiddenError, RetryableError, UnprocessableError
from shared.models.conversations import (
    Conversation,
    ConversationCreate,
    ConversationKind,
    ConversationUpdate,
    DataRef,
    DataRefCreate,
    Panel,
    PanelCreate,
    PanelUpdate,
    Participant,
    ParticipantAdd,
    ParticipantUpdate,
    Thread,
    ThreadCreate,
    is_blank,
)
from shared.pagination import JsonPage, Page, decode_cursor, decode_scoped_cursor, page_limit, page_of, page_within
from shared.repositories.conversations import ConversationsRepository
from shared.services.access import conversation_access, not_found, require_admin
from shared.settings import Settings

CONVERSATION_KINDS: tuple[str, ...] = get_args(ConversationKind)  # as the CHECK on conversations.kind has them
OWNED_KINDS = ("room", "assistant")  # deleted with their owner; direct and group chats survive their creator
TITLED_KINDS = ("group", "room")  # created with a title and never without one
# A title of only spaces or invisible characters (a zero-width space, a lone joiner) lists as a blank row: no title.
_NEEDS_TITLE = "A {kind} needs a title with a visible character (not only whitespace or invisible characters)."


def _invalid(field: str, message: str) -> UnprocessableError:
    return UnprocessableError(message, errors=[{"loc": ["body", field], "type": "value_error", "msg": message}])


def view(repo: ConversationsRepository, conversation_id: UUID, user_id: UUID | None) -> Conversation:
    row = repo.get_view(conversation_id, user_id)
    if row is None:
        raise not_found()
    return Conversation.model_validate(row)


# Conversations -----------------------------------------------------------------------------------------------


def kinds_asked(kind: str | None) -> tuple[str, ...] | None:
    """The kinds a list of conversations is filtered to, from the `kind` parameter (kinds separated by commas), in
    the schema's order and each once; None for every kind. A value that names no kind is a 422 on the parameter."""
    if kind is None:
        return None
    asked = kind.split(",")
    unknown = next((name for name in asked if name not in CONVERSATION_KINDS), None)
    if unknown is not None:
        message = f"Unknown kind {unknown!r}: kind is one or more of {', '.join(CONVERSATION_KINDS)}, comma-separated."
        raise UnprocessableError(message, errors=[{"loc": ["query", "kind"], "type": "enum", "msg": message}])
    return tuple(name for name in CONVERSATION_KINDS if name in asked)


def list_conversations(
    db: Database, principal: Principal, cursor: str | None, limit: int | None, kind: str | None = None
) -> JsonPage:
    """The caller's conversations by last activity, newest first, of the kinds in `kind` (all when None), as JSON
    that PostgreSQL rendered (a Page[Conversation]). A filtered page's cursor carries its filter: it goes on only
    under the same one (decode_scoped_cursor)."""
    user_id = principal.require_user()
    kinds = kinds_asked(kind)
    scope = None if kinds is None else ",".join(kinds)
    size = page_limit(limit)
    after = decode_scoped_cursor(cursor, (datetime, UUID), scope)

    def work(uow: UnitOfWork) -> JsonPage:
        items, last = ConversationsRepository(uow.conn).list_for_member(user_id, after, size + 1, kinds)
        return JsonPage.of(items, last, scope)

    # One statement answers the page, so it runs in autocommit: no BEGIN and ROLLBACK round trips.
    return db.statement(work)


# A list of things in one conversation (participants, threads, panels, data references), newest keyset
# (time, id), visible to whoever may see the conversation.
_Item = TypeVar("_Item", Participant, Thread, Panel, DataRef)


def _page_in_conversation(
    db: Database,
    principal: Principal,
    conversation_id: UUID,
    cursor: str | None,
    limit: int | None,
    fetch: Callable[[ConversationsRepository, UUID, tuple[Any, ...] | None, int], list[_Item]],
    time_of: Callable[[_Item], datetime],
) -> Page[_Item]:
    size = page_limit(limit)
    after = decode_cursor(cursor, (datetime, UUID))

    def work(uow: UnitOfWork) -> list[_Item]:
        repo = ConversationsRepository(uow.conn)
        conversation_access(repo, principal, conversation_id)
        return fetch(repo, conversation_id, after, size + 1)

    return page_of(db.read(work), size, lambda item: (time_of(item), item.id))


def _created_key(item: Thread | Panel) -> tuple[datetime, UUID]:
    return item.created_at, item.id


def create_conversation(db: Database, principal: Principal, body: ConversationCreate) -> tuple[Conversation, bool]:
    """The new conversation (True), or the existing direct conversation with the same other user (False)."""
    user_id = principal.require_user()
    others = list(dict.fromkeys(pid for pid in body.participant_ids if pid != user_id))
    if body.kind == "direct" and (len(others) != 1 or len(body.participant_ids) != 1):
        raise _invalid("participant_ids", "A direct conversation needs exactly one other user.")
    if body.kind in TITLED_KINDS and (body.title is None or is_blank(body.title)):
        raise _invalid("title", _NEEDS_TITLE.format(kind=body.kind))

    def work(uow: UnitOfWork) -> tuple[Conversation, bool]:
        repo = ConversationsRepository(uow.conn)
        users = repo.active_users(others)
        if len(users) != len(others):
            raise _invalid("participant_ids", "Every participant must be an active user.")
        direct_key = ":".join(sorted(str(u) for u in (user_id, *others))) if body.kind == "direct" else None
        values = body.model_dump(exclude={"participant_ids"})
        values.update(
            id=uuid4(),
            user_id=user_id if body.kind in OWNED_KINDS else None,
            created_by=user_id,
            direct_key=direct_key,
            anonymous_token_hash=None,
        )
        new_id = repo.insert(values)
        created = new_id is not None
        if new_id is None:
            assert direct_key is not None
            existing = repo.find_direct(direct_key)
            # A user back in it is a change in its feed: drawn under the conversation's row, as an addition's is.
            if existing is None or not repo.lock(existing):
                # The pair's conversation was deleted (its last user left, or an admin deleted it) between the insert
                # and here: run the whole unit of work again, whose insert then creates it. Answered 409 before,
                # though nothing conflicted with what the client asked.
                raise RetryableError("The direct conversation was deleted while it was being found.")
            new_id = existing
        if body.kind == "direct":
            # Both sides of a 1:1 conversation administer it (either may delete it).
            repo.add_participants(new_id, [user_id, *others], admin_id=user_id, role="admin", logged=not created)
        else:
            repo.add_participants(new_id, [user_id], admin_id=user_id, role="admin", logged=False)
            humans = [u for u, is_ai in users.items() if not is_ai]
            models = [u for u, is_ai in users.items() if is_ai]
            repo.add_participants(new_id, humans, admin_id=user_id, role="member", logged=False)
            repo.add_participants(new_id, models, admin_id=user_id, role="ai", logged=False)
        return view(repo, new_id, user_id), created

    return db.transact(work)


def get_conversation(db: Database, principal: Principal, conversation_id: UUID) -> Conversation:
    def work(uow: UnitOfWork) -> Conversation:
        repo = ConversationsRepository(uow.conn)
        conversation_access(repo, principal, conversation_id)
        return view(repo, conversation_id, principal.user_id)

    return db.read(work)


def update_conversation(
    db: Database, principal: Principal, conversation_id: UUID, body: ConversationUpdate
) -> Conversation:
    body.refuse_nulls("status")

    def work(uow: UnitOfWork) -> Conversation:
        repo = ConversationsRepository(uow.conn)
        # NO KEY UPDATE: the update takes the row that way anyway, and taking it after the participant's lock could
        # deadlock with a removal holding the row.
        access = conversation_access(repo, principal, conversation_id, "NO KEY UPDATE")
        require_admin(access)
        changes = body.model_dump(exclude_unset=True)
        if (
            access.kind in TITLED_KINDS
            and "title" in changes
            and (changes["title"] is None or is_blank(changes["title"]))
        ):
            raise _invalid("title", _NEEDS_TITLE.format(kind=access.kind))
        repo.update(conversation_id, changes)
        return view(repo, conversation_id, principal.user_id)

    return db.transact(work)


def delete_conversation(db: Database, principal: Principal, conversation_id: UUID) -> None:
    def work(uow: UnitOfWork) -> None:
        repo = ConversationsRepository(uow.conn)
        require_admin(conversation_access(repo, principal, conversation_id, "UPDATE"))
        repo.delete(conversation_id)

    db.transact(work)


# Participants ------------------------------------------------------------------------------------------------


def list_participants(
    db: Database, principal: Principal, conversation_id: UUID, cursor: str | None, limit: int | None
) -> Page[Participant]:
    principal.require_user()
    return _page_in_conversation(
        db, principal, conversation_id, cursor, limit, ConversationsRepository.list_participants, lambda p: p.joined_at
    )


def _check_role_fits(is_ai: bool, role: str) -> None:
    if (role == "ai") != is_ai:
        raise _invalid("role", "Role 'ai' is for model accounts, and model accounts only have role 'ai'.")


def add_participant(db: Database, principal: Principal, conversation_id: UUID, body: ParticipantAdd) -> Participant:
    principal.require_user()

    def work(uow: UnitOfWork) -> Participant:
        repo = ConversationsRepository(uow.conn)
        # NO KEY UPDATE, as a removal and a role change take it: the addition's change in the feed is drawn under it,
        # so in commit order (under KEY SHARE it could commit after a poll had seen a larger position).
        access = conversation_access(repo, principal, conversation_id, "NO KEY UPDATE")
        require_admin(access)
        if access.kind == "direct":
            raise ConflictError("A direct conversation has exactly two participants.")
        users = repo.active_users([body.user_id])
        if body.user_id not in users:
            raise _invalid("user_id", "user_id must name an active user.")
        _check_role_fits(users[body.user_id], body.role)
        if not repo.add_participant(conversation_id, body.user_id, body.role):
            raise ConflictError("This user is already a participant of the conversation.", reason="already_participant")
        added = repo.get_participant(conversation_id, body.user_id)
        assert added is not None
        return added

    return db.transact(work)


def _would_orphan(repo: ConversationsRepository, conversation_id: UUID, user_id: UUID) -> bool:
    """Whether `user_id` stepping down leaves other people without an admin."""
    target = repo.get_participant(conversation_id, user_id)
    if target is None or target.role != "admin":
        return False
    admins, humans = repo.others(conversation_id, user_id)
    return admins == 0 and humans > 0


def update_participant(
    db: Database, principal: Principal, conversation_id: UUID, user_id: UUID, body: ParticipantUpdate
) -> Participant:
    principal.require_user()

    def work(uow: UnitOfWork) -> Participant:
        repo = ConversationsRepository(uow.conn)
        # The conversation's row before the check: a check after waiting for a removal's lock reads the removal
        # (a new snapshot), and no removal of the caller commits until this change does.
        repo.lock(conversation_id)
        access = conversation_access(repo, principal, conversation_id)
        require_admin(access)
        if access.kind == "direct":
            # Both users administer a 1:1 conversation; a demoted one could be left alone with it, unable to
            # delete or rename it once the other leaves.
            raise ConflictError("Both users of a direct conversation are its admins; their roles do not change.")
        target = repo.get_participant(conversation_id, user_id)
        if target is None:
            raise not_found()
        users = repo.active_users([user_id])
        _check_role_fits(users.get(user_id, False), body.role)
        if body.role != "admin" and _would_orphan(repo, conversation_id, user_id):
            raise ConflictError("The last conversation admin cannot be demoted while others remain.")
        repo.set_role(conversation_id, user_id, body.role)
        updated = repo.get_participant(conversation_id, user_id)
        assert updated is not None
        return updated

    return db.transact(work)


def remove_participant(db: Database, principal: Principal, conversation_id: UUID, user_id: UUID) -> None:
    caller = principal.require_user()

    def work(uow: UnitOfWork) -> None:
        repo = ConversationsRepository(uow.conn)
        # The conversation's row before the check, as update_participant takes it: an admin removed while this
        # waited removes nobody.
        repo.lock(conversation_id)
        access = conversation_access(repo, principal, conversation_id)
        if user_id != caller:
            require_admin(access)
            if access.kind == "direct":
                # Either user may leave or delete a 1:1 conversation, but not shut the other one out of it.
                raise ConflictError("A direct conversation keeps its two users; each may only leave it.")
        if repo.get_participant(conversation_id, user_id) is None:
            raise not_found()
        if _would_orphan(repo, conversation_id, user_id):
            raise ConflictError("The last conversation admin cannot leave while others remain.")
        if repo.count_humans(conversation_id) <= 1:
            # This removal may leave nobody, and then deletes the conversation: its row is taken for that now,
            # before the participant's is. Taken after, the delete waited for a write of the leaving user that
            # holds the conversation's row (KEY SHARE) and waits for the participant row deleted here: a deadlock.
            repo.lock(conversation_id, "UPDATE")
        repo.remove_participant(conversation_id, user_id)
        if repo.count_humans(conversation_id) == 0:
            repo.delete(conversation_id)  # nobody left to reach it (model accounts do not sign in)

    db.transact(work)


# Threads -----------------------------------------------------------------------------------------------------


def create_thread(
    db: Database, settings: Settings, principal: Principal, conversation_id: UUID, body: ThreadCreate
) -> Thread:
    def work(uow: UnitOfWork) -> Thread:
        repo = ConversationsRepository(uow.conn)
        access = conversation_access(repo, principal, conversation_id, "KEY SHARE")
        # Anyone holding an anonymous conversation's token may write to it: its threads are bounded like its
        # messages (each may carry a request body's worth of thread_data).
        limit = settings.anonymous_message_limit if access.kind == "anonymous" else None
        values = {"conversation_id": conversation_id, "user_id": principal.user_id, **body.model_dump()}
        thread = repo.insert_thread(values, limit)
        if thread is None:
            raise ConflictError(f"This anonymous conversation is full: it holds at most {limit} threads.", limit=limit)
        return thread

    return db.transact(work)


def list_threads(
    db: Database, principal: Principal, conversation_id: UUID, cursor: str | None, limit: int | None
) -> Page[Thread]:
    # An anonymous-conversation token may list the threads of its conversation: no require_user here.
    page = _page_in_conversation(
        db, principal, conversation_id, cursor, limit, ConversationsRepository.list_threads, lambda t: t.created_at
    )
    # Each thread_data takes up to a request body, which is up to 3.5 times as much in an answer: a page of them
    # stops short of one answer.
    return page_within(page, _created_key)


def thread_access(repo: ConversationsRepository, principal: Principal, thread_id: UUID) -> Thread:
    """The thread when the caller may see its conversation; 404 otherwise."""
    thread = repo.get_thread(thread_id)
    if thread is None:
        raise not_found()
    conversation_access(repo, principal, thread.conversation_id)
    return thread


def get_thread(db: Database, principal: Principal, thread_id: UUID) -> Thread:
    return db.read(lambda uow: thread_access(ConversationsRepository(uow.conn), principal, thread_id))


# Panels and data references ----------------------------------------------------------------------------------


def create_panel(db: Database, principal: Principal, conversation_id: UUID, body: PanelCreate) -> Panel:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> Panel:
        repo = ConversationsRepository(uow.conn)
        conversation_access(repo, principal, conversation_id, "KEY SHARE")
        return repo.insert_panel({"conversation_id": conversation_id, "created_by": user_id, **body.model_dump()})

    return db.transact(work)


def list_panels(
    db: Database, principal: Principal, conversation_id: UUID, cursor: str | None, limit: int | None
) -> Page[Panel]:
    principal.require_user()
    page = _page_in_conversation(
        db, principal, conversation_id, cursor, limit, ConversationsRepository.list_panels, lambda p: p.created_at
    )
    # A panel's layout and its config each take up to a request body: a page of them stops short of one answer.
    return page_within(page, _created_key)


_Created = TypeVar("_Created", Panel, DataRef)


def _changeable(repo: ConversationsRepository, principal: Principal, user_id: UUID, item: _Created | None) -> _Created:
    """A panel or data reference its creator or a conversation admin may change; 404 when the caller may
    not see its conversation, 403 for other participants."""
    if item is None:
        raise not_found()
    access = conversation_access(repo, principal, item.conversation_id, "KEY SHARE")
    if item.created_by != user_id and not access.is_admin:
        raise ForbiddenError("Only its creator or a conversation admin may change this.")
    return item


def update_panel(db: Database, principal: Principal, panel_id: UUID, body: PanelUpdate) -> Panel:
    user_id = principal.require_user()
    body.refuse_nulls("name", "layout", "config")

    def work(uow: UnitOfWork) -> Panel:
        repo = ConversationsRepository(uow.conn)
        _changeable(repo, principal, user_id, repo.get_panel(panel_id))
        updated = repo.update_panel(panel_id, body.name, body.layout, body.config)
        if updated is None:
            raise not_found()
        return updated

    return db.transact(work)


def delete_panel(db: Database, principal: Principal, panel_id: UUID) -> None:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> None:
        repo = ConversationsRepository(uow.conn)
        _changeable(repo, principal, user_id, repo.get_panel(panel_id))
        repo.delete_panel(panel_id)

    db.transact(work)


def create_data_ref(db: Database, principal: Principal, conversation_id: UUID, body: DataRefCreate) -> DataRef:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> DataRef:
        repo = ConversationsRepository(uow.conn)
        conversation_access(repo, principal, conversation_id, "KEY SHARE")
        values = {"conversation_id": conversation_id, "created_by": user_id, **body.model_dump()}
        ref = repo.insert_data_ref(values)
        if ref is None:
            raise _invalid("file_id", "file_id must be a file you own (and panel_id a panel of this conversation).")
        return ref

    return db.transact(work)


def list_data_refs(
    db: Database, principal: Principal, conversation_id: UUID, cursor: str | None, limit: int | None
) -> Page[DataRef]:
    principal.require_user()
    return _page_in_conversation(
        db, principal, conversation_id, cursor, limit, ConversationsRepository.list_data_refs, lambda r: r.created_at
    )


def delete_data_ref(db: Database, principal: Principal, ref_id: UUID) -> None:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> None:
        repo = ConversationsRepository(uow.conn)
        _changeable(repo, principal, user_id, repo.get_data_ref(ref_id))
        repo.delete_data_ref(ref_id)

    db.transact(work)
