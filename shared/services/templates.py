"""Agent templates: admins write them; premium ones need a premium-tier licence; use is counted per user."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ForbiddenError, NotFoundError, UnprocessableError
from shared.models.strict import Strict
from shared.models.web_url import WebUrl
from shared.pagination import Page, decode_cursor, page_as, page_limit, page_of, page_within
from shared.repositories.licenses import LicensesRepository
from shared.repositories.templates import PreferenceRow, TemplateRow, TemplatesRepository
from shared.services import admin_rights

Variant = Literal["planner", "individual", "both"]


class TemplateIn(Strict):
    template_name: str = Field(min_length=1, max_length=100)
    display_name: str | None = Field(None, max_length=200)
    description: str = Field(min_length=1, max_length=2000)
    prompt_template: str = Field(min_length=1, max_length=20000)
    icon_url: WebUrl | None = None
    category: str | None = Field(None, max_length=100)
    is_premium_only: bool = False
    variant_type: Variant = "individual"
    is_active: bool = True


class TemplatePatch(Strict):
    template_name: str | None = Field(None, min_length=1, max_length=100)
    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, min_length=1, max_length=2000)
    prompt_template: str | None = Field(None, min_length=1, max_length=20000)
    icon_url: WebUrl | None = None
    category: str | None = Field(None, max_length=100)
    is_premium_only: bool | None = None
    variant_type: Variant | None = None
    is_active: bool | None = None


class TemplateOut(BaseModel):
    id: UUID
    template_name: str
    display_name: str | None
    description: str
    prompt_template: str | None = None  # hidden from non-admins when the template is premium-only
    icon_url: str | None
    category: str | None
    is_premium_only: bool
    variant_type: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class PreferenceIn(Strict):
    is_enabled: bool


class PreferenceOut(BaseModel):
    template_id: UUID
    is_enabled: bool
    usage_count: int
    last_used_at: datetime | None


NON_NULL = ("template_name", "description", "prompt_template", "is_premium_only", "variant_type", "is_active")


def _out(row: TemplateRow, *, show_prompt: bool) -> TemplateOut:
    data = row.model_dump()
    if not show_prompt:
        data["prompt_template"] = None
    return TemplateOut.model_validate(data)


def _pref_out(row: PreferenceRow | None, template_id: UUID) -> PreferenceOut:
    if row is None:
        return PreferenceOut(template_id=template_id, is_enabled=True, usage_count=0, last_used_at=None)
    return PreferenceOut.model_validate(row.model_dump())


TEMPLATE_ADMINS = "Only admins manage templates."


def _is_admin_now(uow: UnitOfWork, principal: Principal) -> bool:
    return admin_rights.admin_role_now(uow, principal, write=False) is not None


def list_templates(db: Database, principal: Principal, *, cursor: str | None, limit: int | None) -> Page[TemplateOut]:
    principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, (str,))

    def work(uow: UnitOfWork) -> tuple[bool, list[TemplateRow]]:
        # Inactive templates and premium prompts, for an account that is an admin now (admin_rights).
        admin = _is_admin_now(uow, principal)
        rows = TemplatesRepository(uow.conn).list(
            active_only=not admin, after=after[0] if after else None, limit=size + 1
        )
        return admin, rows

    admin, rows = db.read(work)
    page = page_of(rows, size, lambda r: (r.template_name,))
    # A page of long prompts stops short of one Lambda answer (docs/ai.md, "Answer size").
    shown = page_as(page, lambda r: _out(r, show_prompt=admin or not r.is_premium_only))
    return page_within(shown, lambda t: (t.template_name,))


def create_template(db: Database, principal: Principal, body: TemplateIn) -> TemplateOut:
    admin_rights.require_admin(principal, TEMPLATE_ADMINS)

    def work(uow: UnitOfWork) -> TemplateOut:
        admin_rights.confirm_admin(uow, principal, write=True, detail=TEMPLATE_ADMINS)
        return _out(TemplatesRepository(uow.conn).add(body.model_dump()), show_prompt=True)

    return db.transact(work)


def update_template(db: Database, principal: Principal, template_id: UUID, body: TemplatePatch) -> TemplateOut:
    admin_rights.require_admin(principal, TEMPLATE_ADMINS)
    body.refuse_nulls(*NON_NULL)
    changes = body.model_dump(exclude_unset=True)

    def work(uow: UnitOfWork) -> TemplateOut:
        admin_rights.confirm_admin(uow, principal, write=True, detail=TEMPLATE_ADMINS)
        row = TemplatesRepository(uow.conn).update(template_id, changes)
        if row is None:
            raise NotFoundError()
        return _out(row, show_prompt=True)

    return db.transact(work)


def _visible_template(uow: UnitOfWork, principal: Principal, template_id: UUID) -> TemplateRow:
    row = TemplatesRepository(uow.conn).get(template_id)
    if row is None or (not row.is_active and not _is_admin_now(uow, principal)):
        raise NotFoundError()
    return row


def get_preference(db: Database, principal: Principal, template_id: UUID) -> PreferenceOut:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> PreferenceOut:
        repo = TemplatesRepository(uow.conn)
        _visible_template(uow, principal, template_id)
        return _pref_out(repo.preference(user_id, template_id), template_id)

    return db.read(work)


def put_preference(db: Database, principal: Principal, template_id: UUID, body: PreferenceIn) -> PreferenceOut:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> PreferenceOut:
        repo = TemplatesRepository(uow.conn)
        _visible_template(uow, principal, template_id)
        return _pref_out(repo.put_preference(user_id, template_id, body.is_enabled), template_id)

    return db.transact(work)


def usable_template(uow: UnitOfWork, user_id: UUID, template_id: UUID) -> TemplateRow:
    """The template for a completion: active, enabled by the user, licensed if premium. Its use is counted
    (count_template_use) with the completion's record, so a refused or failed completion counts none."""
    repo = TemplatesRepository(uow.conn)
    row = repo.get(template_id)
    if row is None or not row.is_active:
        raise NotFoundError()
    if row.is_premium_only and not LicensesRepository(uow.conn).has_premium(user_id):
        raise ForbiddenError("This template needs a premium licence.")
    preference = repo.preference(user_id, template_id)
    if preference is not None and not preference.is_enabled:
        raise UnprocessableError("You have disabled this template.", errors=[{"loc": ["body", "template_id"]}])
    return row


def count_template_use(uow: UnitOfWork, user_id: UUID, template_id: UUID) -> None:
    TemplatesRepository(uow.conn).count_use(user_id, template_id)
