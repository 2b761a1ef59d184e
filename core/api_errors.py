"""REST error bodies: every error is `{"code", "message", "field"?, "details"?}`.

Domain errors from services keep their stable code; DRF's own errors
(validation, authentication, throttling) are mapped onto the same shape.
"""

from django.conf import settings
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ServiceError

# The same codes as the services' errors, whichever layer raised them (DRF, Django).
CODES_BY_STATUS = {403: "forbidden", 404: "not_found"}


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response(exc.as_dict(), status=exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc.detail)
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response
    code = CODES_BY_STATUS.get(response.status_code) or getattr(exc, "default_code", "error")
    detail = response.data.get("detail", str(exc)) if isinstance(response.data, dict) else str(exc)
    response.data = {"code": code, "message": str(detail)}
    return response


def _validation_body(detail) -> dict:
    """Name the first offending field and list every field's errors."""
    if isinstance(detail, dict):
        fields = {
            name: [str(e) for e in (errors if isinstance(errors, list) else [errors])]
            for name, errors in detail.items()
        }
        first_field, first_errors = next(iter(fields.items()))
        body = {"code": "invalid", "message": f"{first_field}: {first_errors[0]}", "details": {"fields": fields}}
        if first_field != "non_field_errors":
            body["field"] = first_field
        return body
    errors = detail if isinstance(detail, list) else [detail]
    return {"code": "invalid", "message": str(errors[0]) if errors else "Invalid input."}


@csrf_exempt
def unrouted(request, *args, **kwargs):
    """Any path under /api/ that no endpoint matches, whatever the method: the
    documented JSON 404 instead of Django's HTML page.

    Routed last, so it also takes the paths CommonMiddleware would redirect with
    APPEND_SLASH; it keeps doing that for GET and HEAD (`/api/v1/docs` to
    `/api/v1/docs/`)."""
    path = request.path_info
    if settings.APPEND_SLASH and request.method in ("GET", "HEAD") and not path.endswith("/"):
        try:
            match = resolve(path + "/", urlconf=getattr(request, "urlconf", None))
        except Resolver404:
            match = None
        if match is not None and match.func is not unrouted:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    body = {"code": "not_found", "message": "No API endpoint at this path."}
    return JsonResponse(body, status=status.HTTP_404_NOT_FOUND)
