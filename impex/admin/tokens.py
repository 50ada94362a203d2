"""A connection's API tokens on its admin page (SPEC sections 9, 10): listed by prefix, issued (shown once), revoked.

The new token is rendered in the response to the POST that issued it, never in a URL, a message (messages may ride
in the session cookie) or a log line; admin_view marks the page not to be cached. The confirmation page hands out a
one-use nonce kept in the session, so that sending the form again (a reload, the back button) issues nothing more.
"""

import secrets

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from config.adminkit import LOCATIONS_PERMISSION
from impex.models import ApiToken, Connection
from impex.services.tokens import api_token_issue, api_token_revoke, token_hash

ISSUE_NONCES = "impex_api_token_issue_nonces"
# A user may open the confirmation page in a few tabs: the latest nonces each stay usable once.
NONCES_KEPT = 10


class ConnectionTokensAdminMixin:
    """The API tokens of a connection on its change page: the list, "Issue a new API token" and "Revoke"."""

    def may_issue_token(self, request, conn: Connection) -> bool:
        """Tell whether the user may issue a token: change the connection and set where the hub talks to."""
        return self.has_change_permission(request, conn) and request.user.has_perm(LOCATIONS_PERMISSION)

    def may_revoke_token(self, request, conn: Connection) -> bool:
        """Tell whether the user may revoke a token: who may issue one, or who may revoke in the token list."""
        return self.may_issue_token(request, conn) or (
            self.has_view_or_change_permission(request, conn) and request.user.has_perm("impex.change_apitoken")
        )

    def get_urls(self):
        tokens = [
            path(
                "<path:object_id>/api-tokens/new/",
                self.admin_site.admin_view(self.api_token_issue_view),
                name="impex_connection_api_token_issue",
            ),
            path(
                "<path:object_id>/api-tokens/<int:token_id>/revoke/",
                self.admin_site.admin_view(self.api_token_revoke_view),
                name="impex_connection_api_token_revoke",
            ),
        ]
        return [*tokens, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conn = self.get_object(request, unquote(object_id))
        extra = {} if conn is None else {"api_tokens": self.api_tokens_context(request, conn)}
        return super().change_view(request, object_id, form_url, extra_context={**extra, **(extra_context or {})})

    def api_tokens_context(self, request, conn: Connection) -> dict | None:
        """Gather the connection's tokens for its page (None: the user may not see them)."""
        may_issue, may_revoke = self.may_issue_token(request, conn), self.may_revoke_token(request, conn)
        if not (may_issue or may_revoke or request.user.has_perm("impex.view_apitoken")):
            return None
        return {
            "tokens": list(ApiToken.objects.filter(connection=conn).order_by("-created_at", "-pk")),
            "issue_url": reverse("admin:impex_connection_api_token_issue", args=[conn.pk]) if may_issue else "",
            "may_revoke": may_revoke,
        }

    def _token_connection(self, request, object_id) -> Connection:
        conn = self.get_object(request, unquote(object_id))
        if conn is None:
            raise Http404("No such connection.")
        return conn

    def _token_page(self, request, conn: Connection, template: str, **context):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": conn,
            "connection": conn,
            "connection_url": reverse("admin:impex_connection_change", args=[conn.pk]),
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, f"admin/impex/connection/{template}", context)

    def api_token_issue_view(self, request, object_id):
        """GET: ask to confirm; POST (change connection + change_locations): issue a token and show it this once."""
        conn = self._token_connection(request, object_id)
        if not self.may_issue_token(request, conn):
            raise PermissionDenied
        if request.method == "GET":
            nonce = secrets.token_urlsafe(16)
            request.session[ISSUE_NONCES] = [*request.session.get(ISSUE_NONCES, [])[-(NONCES_KEPT - 1) :], nonce]
            return self._token_page(
                request, conn, "api_token_issue.html", title=f"Issue a new API token for {conn.code}", nonce=nonce
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        nonces = request.session.get(ISSUE_NONCES, [])
        nonce = request.POST.get("nonce", "")
        if nonce not in nonces:
            self.message_user(
                request,
                "This form was sent already (or its page is too old): no token was issued now. A token shown once "
                "is never shown again; if you did not copy it, revoke it and issue a new one.",
                messages.WARNING,
            )
            return HttpResponseRedirect(self._tokens_anchor(conn))
        request.session[ISSUE_NONCES] = [n for n in nonces if n != nonce]
        raw = api_token_issue(connection=conn, by=request.user.get_username())
        token = ApiToken.objects.get(key_hash=token_hash(raw))
        self.log_change(request, conn, f"Issued the API token {token.prefix}….")
        return self._token_page(
            request, conn, "api_token_shown.html", title=f"New API token of {conn.code}", token=token, raw=raw
        )

    def api_token_revoke_view(self, request, object_id, token_id):
        """GET: ask to confirm, naming the token; POST: revoke it (it stops working at once), back to the page."""
        conn = self._token_connection(request, object_id)
        if not self.may_revoke_token(request, conn):
            raise PermissionDenied
        token = ApiToken.objects.filter(connection=conn, pk=token_id).first()
        if token is None:
            raise Http404("No such token of this connection.")
        if request.method == "GET":
            return self._token_page(
                request, conn, "api_token_revoke.html", title=f"Revoke the API token {token.prefix}…", token=token
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        if api_token_revoke(token=token, by=request.user.get_username()):
            self.log_change(request, conn, f"Revoked the API token {token.prefix}….")
            self.message_user(
                request,
                f"API token {token.prefix}… of {conn.code} revoked: requests carrying it get 401 from now on.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, f"API token {token.prefix}… was revoked already.", messages.WARNING)
        return HttpResponseRedirect(self._tokens_anchor(conn))

    @staticmethod
    def _tokens_anchor(conn: Connection) -> str:
        return reverse("admin:impex_connection_change", args=[conn.pk]) + "#api-tokens"
