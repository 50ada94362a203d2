"""Token authentication of the HTTP API: `Authorization: Bearer TOKEN`, a connection's token (SPEC section 10)."""

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from impex.models import Connection
from impex.services.tokens import api_token_check


@dataclass(frozen=True)
class ConnectionClient:
    """The caller of an API request: the connection whose token it carries (not a Django user)."""

    connection: Connection

    is_authenticated = True
    is_anonymous = False

    def __str__(self):
        return f"connection {self.connection.code}"


class ConnectionTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate by a connection's API token; no token or a wrong one is a 401 with WWW-Authenticate."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed("send the connection's token as 'Authorization: Bearer TOKEN'")
        token = api_token_check(raw.strip())
        if token is None:
            raise exceptions.AuthenticationFailed("the token is unknown or revoked, or its connection is switched off")
        return ConnectionClient(token.connection), token

    def authenticate_header(self, request):
        return f'{self.keyword} realm="impex-hub"'


class ConnectionOrStaff(permissions.BasePermission):
    """A connection's token or a logged-in staff user: who may read the OpenAPI schema (SPEC 13: not anonymous)."""

    def has_permission(self, request, view):
        user = request.user
        return isinstance(user, ConnectionClient) or bool(user and user.is_active and user.is_staff)


class ConnectionTokenScheme(OpenApiAuthenticationExtension):
    """Describe the token in the OpenAPI schema: HTTP bearer, a connection's token."""

    target_class = "impex.api_auth.ConnectionTokenAuthentication"
    name = "connectionToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A connection's API token: manage.py impex_connection CODE --new-token.",
        }
