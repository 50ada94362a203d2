"""A real FTP or FTPS server on loopback for the tests: pyftpdlib, one user, in a thread of the test process.

FTPServerThread(root=..., user=..., password=..., tls=(certfile, keyfile) or None) listens on 127.0.0.1 (a free
port) once started, and stops with stop(). Two knobs let tests play a bad server:
- mlsd = False: answer MLSD as an older server does (not understood);
- pasv_address: answer PASV with this address (a server behind NAT, or one pointing the client elsewhere);
- cut_after(name, n): the next download of that file sends n bytes, then the server drops the connection as if
  killed (control and data), once;
- stall_after(name, n): the next download of that file sends n bytes, then nothing until the test lets it go
  (release()): a server that hangs mid-transfer;
- grow_when_sized(name, data): the next SIZE of that file first appends data to it, once (an uploader still
  writing while a client looks at it).
"""

import os
import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer


class _TrappedFile:
    """A file opened for download that gives n bytes, then calls then() before every further read (the trap)."""

    def __init__(self, file, n: int, then):
        self._file = file
        self._left = n
        self._then = then
        self.name = file.name
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            self._then()
            return self._file.read(size)
        data = self._file.read(min(size if size > 0 else self._left, self._left))
        self._left -= len(data)
        return data

    def seek(self, *args):
        return self._file.seek(*args)

    def close(self) -> None:
        self.closed = True
        self._file.close()


def _drop_connection(cmd_channel) -> None:
    """Close a session's control and data sockets without a reply, as a server that died would."""
    data = cmd_channel.data_channel
    if data is not None:
        data.socket.close()
    cmd_channel.socket.close()
    raise ConnectionResetError("cut by the test")


class _TestFS(AbstractedFS):
    cuts: dict[str, int]  # set per server
    stalls: dict[str, int]
    floods: dict[str, tuple[int, int]]
    released: threading.Event

    def open(self, filename, mode):
        file = super().open(filename, mode)
        name = os.path.basename(filename)
        if "r" in mode and name in self.cuts:
            return _TrappedFile(file, self.cuts.pop(name), lambda: _drop_connection(self.cmd_channel))
        if "r" in mode and name in self.stalls:
            # The server's one thread waits: nothing more is sent until the test releases it.
            return _TrappedFile(file, self.stalls.pop(name), lambda: self.released.wait(60))
        if "r" in mode and name in self.floods:
            n, most = self.floods.pop(name)
            return _TrappedFile(file, n, _Flood(filename, most))
        return file


class _Flood:
    """Append a block to a file each time it is called, up to `most` bytes in all: a download that does not end
    where the file's size said (a hostile server's endless data, bounded so that a test ends)."""

    def __init__(self, path: str, most: int):
        self.path, self.left = path, most

    def __call__(self) -> None:
        if self.left > 0:
            with open(self.path, "ab") as fh:
                fh.write(b"z" * min(self.left, 64 * 1024))
            self.left -= 64 * 1024


class _Growing:
    """A control handler mixin that appends to a file the first time a client asks for its size."""

    grows: dict[str, bytes]  # set per server

    def ftp_SIZE(self, path):
        data = self.grows.pop(os.path.basename(path), None)
        if data is not None:
            with open(path, "ab") as fh:
                fh.write(data)
        return super().ftp_SIZE(path)


class FTPServerThread:
    """A pyftpdlib server on a loopback port, served by a thread of its own with an IOLoop of its own."""

    def __init__(self, *, root: Path, user: str, password: str, tls: tuple[Path, Path] | None = None):
        self.root, self.user, self.password = root, user, password
        authorizer = DummyAuthorizer()
        authorizer.add_user(user, password, str(root), perm="elradfmwMT")
        self.cuts: dict[str, int] = {}
        self.grows: dict[str, bytes] = {}
        self.stalls: dict[str, int] = {}
        self.floods: dict[str, tuple[int, int]] = {}
        self.released = threading.Event()
        fs = type(
            "FS",
            (_TestFS,),
            {"cuts": self.cuts, "stalls": self.stalls, "floods": self.floods, "released": self.released},
        )
        base = TLS_FTPHandler if tls else FTPHandler
        attrs = {
            "grows": self.grows,
            "authorizer": authorizer,
            "abstracted_fs": fs,
            "use_sendfile": False,  # through the file object, so that a cut can cut
            "banner": "impex test server",
            "timeout": 60,
        }
        if tls:
            attrs.update(certfile=str(tls[0]), keyfile=str(tls[1]), tls_control_required=True, tls_data_required=True)
        self.handler = type("Handler", (_Growing, base), attrs)
        self.ioloop = IOLoop()
        self.server = FTPServer(("127.0.0.1", 0), self.handler, ioloop=self.ioloop)
        self.host, self.port = self.server.address[:2]
        self.thread = threading.Thread(target=self._serve, name=f"ftp-server-{self.port}", daemon=True)

    def _serve(self) -> None:
        self.server.serve_forever(timeout=0.2, handle_exit=False)

    def start(self) -> "FTPServerThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.ioloop.call_later(0, self.server.close_all)
        self.thread.join(timeout=10)

    @property
    def pasv_address(self) -> str | None:
        return self.handler.masquerade_address

    @pasv_address.setter
    def pasv_address(self, address: str | None) -> None:
        self.handler.masquerade_address = address

    @property
    def mlsd(self) -> bool:
        return "MLSD" in self.handler.proto_cmds

    @mlsd.setter
    def mlsd(self, on: bool) -> None:
        """Understand MLSD or not (an older server: "500 Command not understood")."""
        commands = dict(self.handler.__mro__[2].proto_cmds)
        if not on:
            del commands["MLSD"]
        self.handler.proto_cmds = commands

    def cut_after(self, name: str, n: int) -> None:
        """Drop the connection after n bytes of the next download of a file of that name."""
        self.cuts[name] = n

    def stall_after(self, name: str, n: int) -> None:
        """Hold the server after n bytes of the next download of a file of that name, until release()."""
        self.released.clear()
        self.stalls[name] = n

    def flood_after(self, name: str, n: int, most: int) -> None:
        """Send more than the file holds after n bytes of the next download of a file of that name: up to `most`
        bytes more, appended as they are read."""
        self.floods[name] = (n, most)

    def release(self) -> None:
        """Let a stalled download go on."""
        self.released.set()

    def grow_when_sized(self, name: str, data: bytes) -> None:
        """Append data to a file of that name when a client next asks for its size."""
        self.grows[name] = data
