"""Request validation with the per-route analysis done once instead of on every request.

Powertools' OpenAPIRequestValidationMiddleware works out on every request which query parameters are
scalars (a walk over each annotation's type tree) and normalizes the headers and cookies even for routes
that declare none of them; on a page read that came to about half of the time the handler spends outside
the database. This middleware answers the same, through Powertools' own field validation, and decides once
per route whether that route is one it can take the short way: path, body and scalar query and header
parameters, no cookies (every Confab route today). Any other route goes through Powertools' middleware unchanged.
Where no other middleware is in the way, it then calls the route and the response side itself rather than
through Powertools' two remaining middleware frames, whose bookkeeping cost as much as the validation.

tests/unit/test_validation_middleware.py runs both over every route with valid and invalid requests and
requires the same values and the same errors, and answers requests through both dispatches and requires the
same responses, so a Powertools upgrade that changes what this builds on shows there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import _find_request_param_name
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares import openapi_validation as powertools
from aws_lambda_powertools.event_handler.openapi.compat import _normalize_errors, is_scalar_field
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes.common import CaseInsensitiveDict

from shared.errors import InvalidRequestError


class RequestValidation(powertools.OpenAPIRequestValidationMiddleware):
    """OpenAPIRequestValidationMiddleware with each route's parameter analysis cached."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._short_way: dict[int, bool] = {}
        self._plain: dict[int, bool] = {}

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response[Any]:
        route = app.context["_route"]
        dependant = route.dependant
        short_way = self._short_way.get(id(route))
        if short_way is None:
            short_way = self._short_way[id(route)] = not dependant.cookie_params and all(
                is_scalar_field(param) for param in (*dependant.query_params, *dependant.header_params)
            )
        if not short_way:
            return super().handler(app, next_middleware)

        values, errors = powertools._request_params_to_args(dependant.path_params, app.context["_route_args"])
        event = app.current_event
        if dependant.query_params:
            query = event.resolved_query_string_parameters
            multi_valued = powertools._get_multi_value_query_params(event)
            _add_scalars(dependant.query_params, query, multi_valued, values, errors)
        if dependant.header_params:
            multi_valued = CaseInsensitiveDict(event.get("multiValueHeaders"))  # type: ignore[no-untyped-call]
            _add_scalars(dependant.header_params, event.resolved_headers_field, multi_valued, values, errors)
        if dependant.body_params:
            body_values, body_errors = powertools._request_body_to_args(
                required_params=dependant.body_params, received_body=self._get_body(app)
            )
            values.update(body_values)
            errors.extend(body_errors)
        if errors:
            raise RequestValidationError(_normalize_errors(errors))
        app.context["_route_args"] = values
        if self._plain.get(id(route)) is None:
            self._plain[id(route)] = _plain(app, route)
        if self._plain[id(route)]:
            # What the two frames after this one would do: call the route, then the response side.
            response = app._to_response(route.func(**values))
            return app._response_validation_middleware._handle_response(route=route, response=response)
        return next_middleware(app)

    def _parse_json_data(self, app: Any) -> dict[str, Any]:
        try:
            parsed: dict[str, Any] = super()._parse_json_data(app)
        except RecursionError as exc:
            # json.loads recurses per nesting level: a body of a few hundred KB of brackets exhausts the stack.
            raise InvalidRequestError("The request body is nested too deeply.") from exc
        except ValueError as exc:
            # Not a JSONDecodeError (Powertools' 400 for malformed JSON): json.loads' own refusal of an integer
            # of more than 4300 digits (sys.get_int_max_str_digits), a plain ValueError that was a 500.
            raise InvalidRequestError("The request body holds a number too long to read.") from exc
        return parsed


def _plain(app: Any, route: Any) -> bool:
    """Whether nothing stands between this middleware and the route but the response side and Powertools' last
    frame (no router or route middlewares, no injected Request, no Depends): then both are called directly,
    without the two frames' per-request bookkeeping (debug strings built even with debug logging off)."""
    return (
        isinstance(getattr(app, "_response_validation_middleware", None), ResponseValidation)
        and not app._router_middlewares
        and not route.middlewares
        and not route.has_dependencies
        and _find_request_param_name(route.func) is None
    )


def _add_scalars(params: Any, received: Any, multi_valued: Any, values: dict[str, Any], errors: list[Any]) -> None:
    """Powertools' normalization of scalar parameters (a comma-split value joined again, a one-item list
    unwrapped), then their validation into `values` and `errors`."""
    for param in params:
        powertools._process_scalar_param(received, param, multi_valued)
    found, failed = powertools._request_params_to_args(params, received)
    values.update(found)
    errors += failed


class ResponseValidation(powertools.OpenAPIResponseValidationMiddleware):
    """OpenAPIResponseValidationMiddleware, less the work of validating a string body as a string.

    Routes that build their JSON body themselves (a page PostgreSQL rendered, a model pydantic serialized once)
    are declared `-> Response[str]`; Powertools would check that the string is a string and hand it back."""

    def _handle_response(self, *, route: Any, response: Response[Any]) -> Response[Any]:
        field = route.dependant.return_param
        if field is not None and field.type_ is str and isinstance(response.body, str):
            return response
        return super()._handle_response(route=route, response=response)


# What a route checks of its caller before its request is validated, by route function (functions/_http.admins_first).
FIRST_CHECKS: dict[Callable[..., Any], Callable[[Any], object]] = {}


class CallerFirst(RequestValidation):
    """A route's check of its caller (FIRST_CHECKS), then the request's validation: a caller the route refuses
    whatever it sends is told so before being told what is wrong with the request."""

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response[Any]:
        check = FIRST_CHECKS.get(app.context["_route"].func)
        if check is not None:
            check(app)
        return super().handler(app, next_middleware)


def install(app: APIGatewayRestResolver) -> None:
    """Use RequestValidation, after each route's check of its caller (CallerFirst), on `app` (made with
    enable_validation=True) before its first request.

    Powertools builds a route's middleware stack from these two attributes on first use, and creates both
    itself only when the request one is missing.
    """
    app._request_validation_middleware = CallerFirst()
    app._response_validation_middleware = ResponseValidation(
        validation_serializer=app._serializer,
        has_response_validation_error=app._has_response_validation_error,
    )
