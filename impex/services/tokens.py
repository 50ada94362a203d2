"""API tokens of connections (SPEC sections 9 and 10): issued once, kept only as a hash, revocable."""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from impex.models import ApiToken, Connection

PREFIX = "ihub_"
# last_used_at is a hint for people, not an audit: written at most this often per token, not on every request.
USE_MARK_EVERY = timedelta(minutes=1)


def token_hash(raw: str) -> str:
    """Return the SHA-256 a token is kept as (tokens are random and long: no slow hash is needed)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_issue(*, connection: Connection, by: str = "") -> str:
    """Issue a new token for the connection and return it: the only time it is shown."""
    raw = PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(
        connection=connection, key_hash=token_hash(raw), prefix=raw[: len(PREFIX) + 6], created_by=by
    )
    return raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, by: str = "") -> bool:
    """Revoke a token (it stops working at once); return False if it was revoked already."""
    return bool(
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now(), revoked_by=by)
    )


def api_token_check(raw: str) -> ApiToken | None:
    """Return the live token a request carries, with its connection, or None (unknown, revoked, connection off)."""
    if not raw or not raw.startswith(PREFIX) or len(raw) > 200:
        return None
    # Looked up by the hash of what was sent: the database compares hashes, never the secret itself.
    token = (
        ApiToken.objects.select_related("connection")
        .filter(key_hash=token_hash(raw), revoked_at__isnull=True, connection__active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > USE_MARK_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
