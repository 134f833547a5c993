"""API models for conversations and messaging: request bodies and responses."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field

from shared.models.json_values import JsonObject
from shared.models.money import Money
from shared.models.strict import Strict

ConversationKind = Literal["direct", "group", "room", "assistant", "anonymous"]
CreatableKind = Literal["direct", "group", "room", "assistant"]
ParticipantRole = Literal["admin", "member", "ai"]
MessageStatus = Literal["sent", "delivered", "read"]

Title = Field(None, min_length=1, max_length=500)


# Conversations --------------------------------------------------------------------------------------------


class ConversationCreate(Strict):
    kind: CreatableKind
    title: str | None = Title
    # direct: the other user; group/room: the first members besides the creator.
    participant_ids: list[UUID] = Field(default_factory=list, max_length=100)
    use_case: str | None = Field(None, max_length=200)
    room_type: str | None = Field(None, max_length=100)
    room_token: str | None = Field(None, min_length=1, max_length=200)
    host: str | None = Field(None, max_length=255)
    cmd_port: int | None = Field(None, ge=1, le=65535)
    viz_port: int | None = Field(None, ge=1, le=65535)


class ConversationUpdate(Strict):
    title: str | None = Title
    status: str | None = Field(None, min_length=1, max_length=50)
    use_case: str | None = Field(None, max_length=200)
    room_type: str | None = Field(None, max_length=100)
    host: str | None = Field(None, max_length=255)
    cmd_port: int | None = Field(None, ge=1, le=65535)
    viz_port: int | None = Field(None, ge=1, le=65535)


class MessagePreview(BaseModel):
    id: int
    sender_id: UUID | None
    sender_kind: str
    content: str
    created_at: datetime


# The most unread messages a conversation counts for the caller: `unread_count` stops there, and
# `unread_count_capped` says there are more (a badge shows "999+"). Counting reads each unread message, so an
# uncapped count made every list call read all of a busy group's unread messages (docs/conversations.md,
# "Benchmarks"); three digits is what a badge shows. The list's function (migration 0623) has the same number
# written in (a constant LIMIT in its kept plan): the two change together.
UNREAD_COUNT_MAX = 999


class Conversation(BaseModel):
    id: UUID
    kind: ConversationKind
    is_group: bool
    title: str | None
    user_id: UUID | None
    created_by: UUID | None
    use_case: str | None
    status: str
    room_type: str | None
    room_token: str | None
    host: str | None
    cmd_port: int | None
    viz_port: int | None
    last_message_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # The caller's view: their role, unread count and the last message (lists and GET).
    role: str | None = None
    unread_count: int = Field(
        0,
        description=(
            f"Messages from others after the caller's read cursor, counted up to {UNREAD_COUNT_MAX}: "
            f"{UNREAD_COUNT_MAX} when there are more, and then unread_count_capped is true."
        ),
    )
    unread_count_capped: bool = Field(
        False,
        description=(
            f"True when more than {UNREAD_COUNT_MAX} messages are unread (unread_count is then {UNREAD_COUNT_MAX}, "
            f'not the real number): show "{UNREAD_COUNT_MAX}+".'
        ),
    )
    last_message: MessagePreview | None = None
    # The change feed's head: poll GET .../changes only when this is above the newest change id applied.
    last_change_id: int | None = Field(
        None,
        description=(
            "The newest position of the conversation's change feed (GET /v1/conversations/{id}/changes): its newest "
            "change kept, or where maintenance purged its changes up to if that is newer; null while it has had no "
            "change. A client polls the feed only when this is above the newest change id it applied."
        ),
    )


class AnonymousConversationCreate(Strict):
    title: str | None = Title


class AnonymousConversation(BaseModel):
    conversation: Conversation
    # Shown once; only its hash is kept. Send it as `Authorization: Bearer <token>`.
    token: str


# Participants ---------------------------------------------------------------------------------------------


class ParticipantAdd(Strict):
    user_id: UUID
    role: ParticipantRole = "member"


class ParticipantUpdate(Strict):
    role: ParticipantRole


class Participant(BaseModel):
    id: UUID
    conversation_id: UUID
    user_id: UUID
    username: str
    role: ParticipantRole
    last_read_message_id: int | None
    last_read_at: datetime | None
    joined_at: datetime


# Messages -------------------------------------------------------------------------------------------------


class MessageCreate(Strict):
    # The length limit is a settings value checked by the service (422); this cap only keeps pydantic cheap.
    content: str = Field(min_length=1)
    attachments: list[UUID] = Field(default_factory=list)
    thread_id: UUID | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class MessageUpdate(Strict):
    content: str = Field(min_length=1)


class Message(BaseModel):
    id: int
    conversation_id: UUID
    thread_id: UUID | None
    sender_id: UUID | None
    sender_kind: str
    content: str
    attachments: list[dict[str, Any]]
    status: MessageStatus
    status_timestamps: dict[str, Any]
    model_id: str | None
    idempotency_key: str | None
    created_at: datetime
    edited_at: datetime | None


class MessageChange(BaseModel):
    """An edit, deletion or change of the reactions of a message, a read or delivered mark, or a participant added,
    removed, leaving or given another role, in a conversation's change feed (GET /v1/conversations/{id}/changes).
    More kinds may come: a client skips a kind it does not know (its position still counts)."""

    id: int  # the change's position: drawn with message ids, in commit order within the conversation
    # A mark: the message it went up to (it may be deleted since). A participant change: null (it is about no message).
    message_id: int | None
    kind: Literal["edited", "deleted", "reactions", "read", "delivered", "participants"]
    changed_at: datetime  # a mark: also the time it stamped in status_timestamps
    message: Message | None  # an edit: the message as it reads now; any other kind: null
    # A reactions change: the message's reaction summary as it is now, as GET /v1/messages/{id}/reactions lists it
    # for the caller (empty once the last reaction is taken back); any other kind: null.
    reactions: list[ReactionCount] | None
    # A read or delivered mark: the reader; a participant change: the participant concerned (either null once their
    # account is deleted); any other kind: null.
    user_id: UUID | None = Field(
        None,
        description=(
            "read/delivered: the reader. Each message of the conversation (thread messages included) with an id up "
            "to message_id, a sender_id other than user_id and a status below kind (sent < delivered < read) takes "
            "status kind and status_timestamps[kind] = changed_at (read: also status_timestamps.delivered = "
            "changed_at where it has none); read also moves the reader's read cursor up to message_id "
            "(docs/conversations.md, 'Read and delivered marks in the feed'). participants: the participant "
            "concerned; null once their account is deleted (re-read the participant list)."
        ),
    )
    participant: Participant | None = Field(
        None,
        description=(
            "participants: the participant user_id names as GET /v1/conversations/{id}/participants lists them at "
            "the time of the poll (added, or given another role), or null when they are no longer a participant "
            "(removed, left, account deleted): replace or drop them in the member list held. Any other kind: null "
            "(docs/conversations.md, 'Participant changes in the feed')."
        ),
    )


class ReadMark(Strict):
    message_id: int = Field(ge=1)
    # "read" moves the read cursor; "delivered" only marks messages as delivered to this device.
    status: Literal["delivered", "read"] = "read"


class ReadCursor(BaseModel):
    conversation_id: UUID
    last_read_message_id: int | None
    last_read_at: datetime | None
    updated: int  # messages whose status moved forward


# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters a renderer draws as nothing,
# among them the variation selectors, joiners, Hangul fillers and tag characters.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip


def _invisible(char: str) -> bool:
    code = ord(char)
    return (
        char.isspace()
        or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp")
        or any(low <= code <= high for low, high in _IGNORABLE)
    )


def is_blank(value: str) -> bool:
    """Whether the text shows nothing: only whitespace or invisible characters (or none at all)."""
    return all(_invisible(char) for char in value)


def _visible_emoji(value: str) -> str:
    # A blank reaction (a space, a lone variation selector or joiner) shows as an empty chip nobody can read.
    if is_blank(value):
        raise ValueError("must hold a visible character, not only whitespace or invisible characters")
    return value


class ReactionCreate(Strict):
    emoji: Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_visible_emoji)]


class Reaction(BaseModel):
    message_id: int
    user_id: UUID
    emoji: str
    created_at: datetime


class ReactionCount(BaseModel):
    emoji: str
    count: int
    reacted_by_me: bool


class ReactionSummary(BaseModel):
    message_id: int
    reactions: list[ReactionCount]


class FeedbackPut(Strict):
    rating: int | None = Field(None, ge=1, le=5)
    model_name: str | None = Field(None, max_length=200)
    model_provider: str | None = Field(None, max_length=100)
    temperature: float | None = Field(None, ge=0, le=10)
    # An integer column: beyond it the database refused the row with a 422 that named no field.
    max_tokens: int | None = Field(None, ge=1, le=2**31 - 1)


class MessageEdit(BaseModel):
    """An earlier version of an edited message: its text before the edit, who edited it and when."""

    id: UUID
    message_id: int
    previous_content: str
    edited_by: UUID | None  # null for an anonymous sender, or once the editor's account is deleted
    edited_at: datetime


class Feedback(BaseModel):
    id: UUID
    message_id: int
    user_id: UUID
    rating: int | None
    model_name: str | None
    model_provider: str | None
    temperature: float | None
    max_tokens: int | None
    created_at: datetime
    updated_at: datetime


# Threads --------------------------------------------------------------------------------------------------


class ThreadCreate(Strict):
    title: str | None = Title
    model_id: str | None = Field(None, max_length=200)
    thread_data: JsonObject = Field(default_factory=dict)


class Thread(BaseModel):
    id: UUID
    conversation_id: UUID
    user_id: UUID | None
    title: str | None
    thread_data: dict[str, Any]
    model_id: str | None
    tokens_input_total: int
    tokens_output_total: int
    tokens_cached_total: int
    tokens_total: int
    requests_count: int
    cost_total_usd: Money
    last_usage_at: datetime | None
    created_at: datetime
    updated_at: datetime


# Panels and data references -------------------------------------------------------------------------------


class PanelCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    layout: JsonObject = Field(default_factory=dict)
    config: JsonObject = Field(default_factory=dict)


class PanelUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    layout: JsonObject | None = None
    config: JsonObject | None = None


class Panel(BaseModel):
    id: UUID
    conversation_id: UUID
    name: str
    layout: dict[str, Any]
    config: dict[str, Any]
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime


class DataRefCreate(Strict):
    file_id: UUID
    panel_id: UUID | None = None


class DataRef(BaseModel):
    id: UUID
    conversation_id: UUID
    file_id: UUID
    panel_id: UUID | None
    created_by: UUID | None
    created_at: datetime


# Files ----------------------------------------------------------------------------------------------------


class FileCreate(Strict):
    name: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", min_length=1, max_length=200)
    size: int = Field(ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class UserFile(BaseModel):
    id: UUID
    owner_id: UUID
    original_name: str
    content_type: str
    size: int
    sha256: str | None
    status: str
    created_at: datetime
    updated_at: datetime


class Transfer(BaseModel):
    """Where and how to move the bytes: PUT the raw body, or POST a form with `fields` and then the file."""

    method: Literal["PUT", "POST", "GET"]
    url: str
    fields: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    expires_at: datetime


class FileUpload(BaseModel):
    file: UserFile
    upload: Transfer


class FileDownload(BaseModel):
    file: UserFile
    download: Transfer | None
