"""What the HTTP API reads (JSON bodies, checked to be text and shallow) and how often a token may call it (SPEC 10).

A body's size is judged before it is read, by impex.middleware.RequestBodyLimitMiddleware (IMPEX_API_MAX_BODY).
"""

import json
import math
import re

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from rest_framework import exceptions, parsers, throttling
from rest_framework.utils.json import strict_constant

from impex.models import ApiToken

# No body of the API nests deeper than a few levels; far deeper JSON is refused, not handed on.
MAX_JSON_DEPTH = 32
# After json.loads any surrogate code point is a lone one (a valid pair is one character).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _where(path: tuple) -> str:
    return "the body" + "".join(f"[{json.dumps(k)}]" if isinstance(k, str) else f"[{k}]" for k in path)


def _lone_surrogate(text: str) -> str:
    return f"a lone UTF-16 surrogate ({_SURROGATE.search(text).group().encode('unicode_escape').decode()})"


def _json_problem(data) -> str | None:
    """Return what makes parsed JSON unusable (nested too deep, a lone surrogate in a key or a string), or None."""
    if isinstance(data, str) and _SURROGATE.search(data):
        return f"the body holds {_lone_surrogate(data)}, which is not text"
    stack = [(data, ())] if isinstance(data, dict | list) else []
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_JSON_DEPTH:
            return f"the JSON nests deeper than {MAX_JSON_DEPTH} levels (at {_where(path)})"
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str) and _SURROGATE.search(key):
                return f"a key of {_where(path)} holds {_lone_surrogate(key)}, which is not text"
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    return f"{_where((*path, key))} holds {_lone_surrogate(item)}, which is not text"
            elif isinstance(item, dict | list):
                stack.append((item, (*path, key)))
    return None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


class JSONBodyParser(parsers.BaseParser):
    """Read a JSON body: bad JSON, text not in the declared encoding, numbers out of range, deep nesting and lone
    surrogates are a 400 saying so.

    Not a subclass of DRF's JSONParser, which DRF reads through request.body and so under Django's 2.5 MB
    DATA_UPLOAD_MAX_MEMORY_SIZE: this one reads the stream, which holds at most IMPEX_API_MAX_BODY bytes (the
    middleware refuses a longer Content-Length, and Django never reads past it).
    """

    media_type = "application/json"
    renderer_class = parsers.JSONParser.renderer_class

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"the body is not {encoding} text: {exc}") from exc
        try:
            data = json.loads(text, parse_constant=strict_constant, parse_float=_finite_float)
        except RecursionError as exc:
            raise exceptions.ParseError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from exc
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        problem = _json_problem(data)
        if problem:
            raise exceptions.ParseError(problem)
        return data


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """IMPEX_API_RATE requests per token (not per address), past which 429 with Retry-After.

    The history is kept in the "api_rate" cache (the database by default, shared by every web process and machine)
    and read and written under a lock on the token's row, so concurrent requests of one token count one by one.
    """

    scope = "token"

    @property
    def cache(self):
        return caches["api_rate"]

    def get_rate(self):
        return settings.IMPEX_API_RATE

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.auth.key_hash}

    def allow_request(self, request, view):
        if not isinstance(request.auth, ApiToken):
            return True  # a staff session reading the schema
        with transaction.atomic():
            ApiToken.objects.select_for_update().filter(pk=request.auth.pk).first()
            return super().allow_request(request, view)

    def wait(self):
        # Until enough of the window's requests have aged out (even after IMPEX_API_RATE was lowered).
        return self.duration - (self.now - self.history[self.num_requests - 1])
