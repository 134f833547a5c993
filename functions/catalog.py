"""The model catalog, deployed resources, agent templates and the caller's template preferences."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions._http import admins_first, lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import created_json, no_content, replies
from shared.bootstrap import container
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import catalog, templates
from shared.services.catalog import (
    CATALOG_ADMINS,
    ModelIn,
    ModelOut,
    ModelPatch,
    ResourceIn,
    ResourceOut,
    ResourcePatch,
)
from shared.services.templates import (
    TEMPLATE_ADMINS,
    PreferenceIn,
    PreferenceOut,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)

app = make_resolver()


@app.get("/v1/model-configurations", summary="List model configurations", tags=["catalog"])
def get_models(cursor: Cursor = None, limit: Limit = None) -> Page[ModelOut]:
    return catalog.list_models(container().db, principal_of(app), cursor=cursor, limit=limit)


@app.post(
    "/v1/model-configurations",
    summary="Add a model configuration (admins)",
    tags=["catalog"],
    responses=replies(ModelOut, 201),
)
@admins_first(CATALOG_ADMINS)
def post_model(body: ModelIn) -> Response[str]:
    c = container()
    return created_json(catalog.create_model(c.db, principal_of(app), body, c.settings))


@app.patch("/v1/model-configurations/<id>", summary="Change a model configuration (admins)", tags=["catalog"])
@admins_first(CATALOG_ADMINS)
def patch_model(id: PathId, body: ModelPatch) -> ModelOut:
    c = container()
    return catalog.update_model(c.db, principal_of(app), id, body, c.settings)


@app.get("/v1/deployed-resources", summary="List deployed resources (admins)", tags=["catalog"])
@admins_first(CATALOG_ADMINS)
def get_resources(cursor: Cursor = None, limit: Limit = None) -> Page[ResourceOut]:
    return catalog.list_resources(container().db, principal_of(app), cursor=cursor, limit=limit)


@app.post(
    "/v1/deployed-resources",
    summary="Record a deployed resource (admins)",
    tags=["catalog"],
    responses=replies(ResourceOut, 201),
)
@admins_first(CATALOG_ADMINS)
def post_resource(body: ResourceIn) -> Response[str]:
    c = container()
    return created_json(catalog.create_resource(c.db, principal_of(app), body, c.settings))


@app.get("/v1/deployed-resources/<id>", summary="Get a deployed resource (admins)", tags=["catalog"])
@admins_first(CATALOG_ADMINS)
def get_resource(id: PathId) -> ResourceOut:
    return catalog.get_resource(container().db, principal_of(app), id)


@app.patch("/v1/deployed-resources/<id>", summary="Change a deployed resource (admins)", tags=["catalog"])
@admins_first(CATALOG_ADMINS)
def patch_resource(id: PathId, body: ResourcePatch) -> ResourceOut:
    c = container()
    return catalog.update_resource(c.db, principal_of(app), id, body, c.settings)


@app.delete("/v1/deployed-resources/<id>", summary="Delete a deployed resource (admins)", tags=["catalog"])
@admins_first(CATALOG_ADMINS)
def delete_resource(id: PathId) -> Response[None]:
    catalog.delete_resource(container().db, principal_of(app), id)
    return no_content()


@app.get("/v1/agent-templates", summary="List agent templates", tags=["templates"])
def get_templates(cursor: Cursor = None, limit: Limit = None) -> Page[TemplateOut]:
    return templates.list_templates(container().db, principal_of(app), cursor=cursor, limit=limit)


@app.post(
    "/v1/agent-templates",
    summary="Add an agent template (admins)",
    tags=["templates"],
    responses=replies(TemplateOut, 201),
)
@admins_first(TEMPLATE_ADMINS)
def post_template(body: TemplateIn) -> Response[str]:
    return created_json(templates.create_template(container().db, principal_of(app), body))


@app.patch("/v1/agent-templates/<id>", summary="Change an agent template (admins)", tags=["templates"])
@admins_first(TEMPLATE_ADMINS)
def patch_template(id: PathId, body: TemplatePatch) -> TemplateOut:
    return templates.update_template(container().db, principal_of(app), id, body)


@app.get("/v1/users/me/agent-templates/<id>", summary="My preference for a template", tags=["templates"])
def get_preference(id: PathId) -> PreferenceOut:
    return templates.get_preference(container().db, principal_of(app), id)


@app.put("/v1/users/me/agent-templates/<id>", summary="Enable or disable a template for me", tags=["templates"])
def put_preference(id: PathId, body: PreferenceIn) -> PreferenceOut:
    return templates.put_preference(container().db, principal_of(app), id, body)


lambda_handler = lambda_entry(app)
