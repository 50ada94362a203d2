"""A webhook receiver on loopback for tests: records every POST and answers as the test scripts it."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The running server: its URL, what it received, the answers to give next (status, delay seconds), their body."""

    url: str
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)
    body: bytes | None = None  # what every answer says; None: "answer <status>"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_next(self, *statuses: int, delay: float = 0.0) -> None:
        with self.lock:
            self.answers.extend((s, delay) for s in statuses)


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    """Start a receiver on a free loopback port in a thread of its own."""
    holder: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            receiver: Receiver = holder["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status, delay = receiver.answers.pop(0) if receiver.answers else receiver.default
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(receiver.body if receiver.body is not None else f"answer {status}".encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/orders")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["receiver"], server
