"""Requests a test client cannot make, sent over a socket to a live server: a declared length with only part of the
body sent, or a chunked body. Each waits for the answer while the rest of the body is still unsent, as an attacker's
(or a slow browser's) request would."""

import http.client
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# Long enough for any answer of a live server on loopback; reached only when the server waits for the body instead.
ANSWER_TIMEOUT = 60
BLOCK = b"x" * 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def send(
    url: str,
    *,
    method: str = "POST",
    headers: dict[str, str],
    head: bytes = b"",
    filler: int = 0,
    tail: bytes = b"",
    declared: int | None = None,
    chunked: bool = False,
) -> Answer:
    """Send head, filler bytes and tail as the body of a request declaring `declared` bytes, then read the answer.

    chunked sends the body with Transfer-Encoding: chunked and no Content-Length; with neither, no body is sent. The
    server may answer before it has read anything; the socket is closed after the answer, whatever is left unsent.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_TIMEOUT)
    try:
        framing = {"Transfer-Encoding": "chunked"} if chunked else {}
        if declared is not None:
            framing["Content-Length"] = str(declared)
        lines = [f"{method} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in {**framing, **headers}.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        for chunk in _body(head, filler, tail):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        sock.close()


def _body(head: bytes, filler: int, tail: bytes):
    if head:
        yield head
    while filler > 0:
        yield BLOCK[:filler]
        filler -= len(BLOCK)
    if tail:
        yield tail


def multipart(fields: dict[str, str], *, file_field: str, file_name: str, boundary: str) -> tuple[bytes, bytes]:
    """Return a multipart body's bytes up to a file's content and the bytes after it, the fields coming first."""
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode()
