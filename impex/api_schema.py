"""What every endpoint of the HTTP API may answer besides its success (SPEC section 10), for the OpenAPI schema."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

_detail = inline_serializer("ErrorDetail", {"detail": serializers.CharField()})

UNAUTHORISED = {401: OpenApiResponse(_detail, description="No token, or one that is unknown or revoked.")}
BAD_BODY = {
    400: OpenApiResponse(
        description="The request does not validate: the errors of each field, by field name "
        "(non_field_errors for the whole body)."
    )
}
NOT_FOUND = {404: OpenApiResponse(_detail, description="No such entity, or no such log.")}
TOO_BIG = {413: OpenApiResponse(_detail, description="The body is bigger than the endpoint takes.")}


def responses(success: dict, *, bad_body: bool = True, not_found: bool | str = False, too_big: bool = False) -> dict:
    """Return the answers of an endpoint: its success and the errors it may give (not_found: True, or what a 404
    means there)."""
    if isinstance(not_found, str):
        missing = {404: OpenApiResponse(_detail, description=not_found)}
    else:
        missing = NOT_FOUND if not_found else {}
    return {**success, **(BAD_BODY if bad_body else {}), **UNAUTHORISED, **missing, **(TOO_BIG if too_big else {})}
