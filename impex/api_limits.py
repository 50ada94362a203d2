"""What the HTTP API reads (JSON bodies, checked to be text and shallow) and how often a token may call it (SPEC 10).

A body's size is judged before it is read, by impex.middleware.RequestBodyLimitMiddleware (IMPEX_API_MAX_BODY).
"""

import base64
import json
import math
import pickle
import random
import re
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.db import connection, connections, router, transaction
from django.utils import timezone
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
            _lock_token(request.auth.pk)
            return super().allow_request(request, view)

    def wait(self):
        # Until enough of the window's requests have aged out (even after IMPEX_API_RATE was lowered).
        return self.duration - (self.now - self.history[self.num_requests - 1])


def _lock_token(pk: int) -> None:
    """Lock the token's row until the transaction ends (concurrent requests of one token count one by one).

    On PostgreSQL the same statement lets that transaction commit without waiting for the disk: it writes only the
    rate count, which a crash of the database server may lose (a client then gets a few requests more), and the row
    lock makes it a transaction that would otherwise wait for a WAL flush on every API request.
    """
    table = connection.ops.quote_name(ApiToken._meta.db_table)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT set_config('synchronous_commit', 'off', true) FROM {table} WHERE id = %s FOR UPDATE", [pk]
            )
    else:
        ApiToken.objects.select_for_update().filter(pk=pk).first()


class RateCountCache(DatabaseCache):
    """Django's database cache, each set() one INSERT ... ON CONFLICT DO UPDATE (the "api_rate" cache).

    DatabaseCache.set() counts the table's rows, then selects the key and updates it inside a savepoint: four
    statements on every API request. Here nothing is culled by count (that would forget live counts: one entry per
    token); the expired entries (tokens not used for a while) are deleted on about one set() in CLEAN_EVERY.
    """

    CLEAN_EVERY = 1000

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        timeout = self.get_backend_timeout(timeout)
        expires = datetime.max if timeout is None else datetime.fromtimestamp(timeout, tz=UTC)
        db = router.db_for_write(self.cache_model_class)
        ops = connections[db].ops
        table, quote = ops.quote_name(self._table), ops.quote_name
        value = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
        with connections[db].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({quote('cache_key')}, {quote('value')}, {quote('expires')}) "
                f"VALUES (%s, %s, %s) ON CONFLICT ({quote('cache_key')}) "
                f"DO UPDATE SET {quote('value')} = EXCLUDED.{quote('value')}, "
                f"{quote('expires')} = EXCLUDED.{quote('expires')}",
                [key, value, ops.adapt_datetimefield_value(expires.replace(microsecond=0))],
            )
            if random.randrange(self.CLEAN_EVERY) == 0:
                now = ops.adapt_datetimefield_value(timezone.now().replace(microsecond=0))
                cursor.execute(f"DELETE FROM {table} WHERE {quote('expires')} < %s", [now])
