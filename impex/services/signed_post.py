"""POST a JSON body signed with HMAC-SHA256 (`X-Signature: sha256=HEX`, `X-Event-Id`): order webhooks and
outbound webhooks share it, so they sign, time out, refuse redirects and classify answers the same way."""

import hashlib
import hmac
import http
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from impex.outbound import OutboundRefused, opener

# The start of a receiver's answer kept with the attempt (shown only to who may change where the POST goes).
BODY_SHOWN = 300


class PostFailed(Exception):
    """A POST that did not land; retry says whether sending it again later may succeed.

    The message is for everyone who may view deliveries or runs: it never carries the receiver's answer, which is in
    response (for those who may change the subscription or exporter).
    """

    def __init__(self, message: str, *, retry: bool = True, http_status: int | None = None, response: str = ""):
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.http_status = http_status
        self.response = response


@dataclass(frozen=True)
class PostAnswer:
    status: int
    response: str
    duration_ms: int


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new destination: the body goes only where it is configured to go."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# Only to addresses the hub may call (impex.outbound), checked when the connection is made.
_opener = opener(_NoRedirects)


def json_body(payload: dict) -> bytes:
    """Return the bytes a payload is sent (and signed) as."""
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def signature(secret: str, body: bytes) -> str:
    """Return the X-Signature header of a body: sha256= and the hex HMAC-SHA256 with the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _text(raw: bytes) -> str:
    # A NUL byte in an answer would make the run's record unwritable (PostgreSQL text cannot hold one).
    return raw[:BODY_SHOWN].decode("utf-8", "replace").replace("\x00", "").strip()


def _status(status: int) -> str:
    """A status with its standard phrase: the receiver's own reason phrase is part of its answer, not shown."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _userinfo(url: str) -> str:
    """The user name and password part of a URL (saved before such URLs were refused), to keep out of messages."""
    scheme, sep, rest = url.partition("://")
    authority = rest.partition("/")[0]
    return authority.rpartition("@")[0] if sep else ""


def signed_post(*, url: str, body: bytes, secret: str, event_id: str, timeout: float, user_agent: str) -> PostAnswer:
    """POST body to url; return the answer of a 2xx, raise PostFailed otherwise.

    5xx, 408, 429, timeouts and network errors may be retried; other 4xx and redirects (never followed) not.
    """
    userinfo = _userinfo(url)
    try:
        return _post(url=url, body=body, secret=secret, event_id=event_id, timeout=timeout, user_agent=user_agent)
    except PostFailed as exc:
        if userinfo:  # a password in a URL saved before such URLs were refused is not repeated in messages
            password = userinfo.partition(":")[2]
            for secret_part in filter(None, (userinfo, password)):
                exc.message = exc.message.replace(secret_part, "***")
            exc.args = (exc.message,)
        raise


def _post(*, url: str, body: bytes, secret: str, event_id: str, timeout: float, user_agent: str) -> PostAnswer:
    headers = {"Content-Type": "application/json", "User-Agent": user_agent, "X-Event-Id": event_id}
    if secret:
        headers["X-Signature"] = signature(secret, body)
    started = time.monotonic()
    try:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with _opener.open(request, timeout=timeout) as answer:
            shown = _text(answer.read(BODY_SHOWN))
            took = int((time.monotonic() - started) * 1000)
            return PostAnswer(status=answer.status, response=shown, duration_ms=took)
    except urllib.error.HTTPError as exc:
        status = exc.code
        shown = _text(exc.read(BODY_SHOWN) if exc.fp else b"")
        if 300 <= status < 400:
            location = f"Location: {exc.headers.get('Location', '?')}"
            raise PostFailed(
                f"POST {url}: {_status(status)}, a redirect (not followed: set the URL to where the receiver is)",
                retry=False,
                http_status=status,
                response=f"{location}\n{shown}".strip()[:BODY_SHOWN],
            ) from exc
        # A refusal of the body itself (4xx) will not change by sending it again; a server error may.
        retry = status >= 500 or status in (408, 429)
        raise PostFailed(f"POST {url}: {_status(status)}", retry=retry, http_status=status, response=shown) from exc
    except TimeoutError as exc:
        raise PostFailed(f"POST {url}: no answer within {timeout} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OutboundRefused):
            raise PostFailed(f"POST {url}: refused: {exc.reason}", retry=False) from exc
        if isinstance(exc.reason, TimeoutError):
            raise PostFailed(f"POST {url}: no answer within {timeout} s") from exc
        raise PostFailed(f"POST {url}: {exc.reason}") from exc
    except OSError as exc:
        raise PostFailed(f"POST {url}: {exc}") from exc
    except (http.client.HTTPException, ValueError) as exc:
        # A URL saved before today's checks that the HTTP client cannot parse: sending it again will not help.
        raise PostFailed(f"POST {url}: the URL cannot be called ({exc})", retry=False) from exc
