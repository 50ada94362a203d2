"""Calling the HTTP API as an integration does: JSON bodies and a connection's Bearer token."""

import json


class Api:
    def __init__(self, client, token: str):
        self.client = client
        self.token = token

    def call(
        self, method: str, url: str, body=None, *, token: str | None = None, raw: str | bytes | None = None, **query
    ):
        headers = {}
        token = self.token if token is None else token
        if token:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        send = getattr(self.client, method.lower())
        if method == "GET":
            return send(url, query, **headers)
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return send(url, data=data, content_type="application/json", **headers)

    def get(self, url, **kwargs):
        return self.call("GET", url, **kwargs)

    def put(self, url, body=None, **kwargs):
        return self.call("PUT", url, body, **kwargs)

    def patch(self, url, body=None, **kwargs):
        return self.call("PATCH", url, body, **kwargs)

    def post(self, url, body=None, **kwargs):
        return self.call("POST", url, body, **kwargs)

    def delete(self, url, **kwargs):
        return self.call("DELETE", url, **kwargs)
