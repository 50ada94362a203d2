"""A real SFTP server on loopback for the tests: asyncssh, one user, every session chrooted to one folder.

Run as `python -m tests.sftp_server --root DIR --host-key FILE --user NAME --password SECRET [--client-key FILE.pub]`.
It listens on 127.0.0.1 (a free port unless --port is given), prints `PORT <n>` on stdout once it accepts
connections, and stops when its standard input closes (the test session ended or died) or on SIGTERM.

Like OpenSSH's sftp-server, a plain rename never replaces an existing file; posix-rename@openssh.com does.
"""

import argparse
import asyncio
import signal
import sys
import threading

import asyncssh


class OneUser(asyncssh.SSHServer):
    """Let in one user, by password or (if given) by a client key."""

    def __init__(self, *, user: str, password: str, client_key: str | None):
        self.user = user
        self.password = password
        self.client_key = client_key
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        if username == self.user and self.client_key:
            self.conn.set_authorized_keys(self.client_key)
        return True  # always ask: nobody gets in without a password or key

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self.user and password == self.password


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def wait_for_stdin_to_close() -> None:
        # The test session holds our stdin open: when it ends or is killed, we stop too (no orphan servers).
        while sys.stdin.buffer.read(1024):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
    server = await asyncssh.listen(
        "127.0.0.1",
        args.port,
        server_host_keys=[args.host_key],
        server_factory=lambda: OneUser(user=args.user, password=args.password, client_key=args.client_key),
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=args.root),
        allow_scp=False,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the folder every SFTP session sees as /")
    parser.add_argument("--host-key", required=True, help="the server's private host key (OpenSSH format)")
    parser.add_argument("--user", required=True, help="the only user name let in")
    parser.add_argument("--password", required=True, help="that user's password")
    parser.add_argument("--client-key", help="a public key file (authorized_keys format) that also lets the user in")
    parser.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
