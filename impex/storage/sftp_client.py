"""The paramiko side of impex.storage.sftp: django-storages' SFTPStorage made to check host keys, addresses and logins,
and a reader that streams a remote file with bounded read-ahead.

Imported by impex.storage.sftp when an sftp:// location is first used (paramiko takes a while to import).
"""

import io
import os
from collections.abc import Iterator

import paramiko
from storages.backends.sftpstorage import SFTPStorage

from impex import outbound
from impex.storage.sftp import SFTP_CREDENTIALS, SFTP_TIMEOUT_SECONDS

# Read-ahead of an SFTP download: a window of requests of paramiko's largest read size, so many in flight at once.
SFTP_WINDOW_REQUESTS = 128
SFTP_IN_FLIGHT = 64
SFTP_REQUEST_BYTES = 32768


class RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse a server whose host key is not in the known-hosts file, saying which key and what to do."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise paramiko.SSHException(
            f"Server {hostname!r} not found in known_hosts: its {key.get_name()} host key {key.fingerprint} is not in "
            f"{self.known_hosts} (SFTP_KNOWN_HOST_FILE); add the server's key there after checking it "
            "(ssh-keyscan), or set SFTP_ALLOW_UNKNOWN_HOSTS to trust any key"
        )


class CheckedSFTPStorage(SFTPStorage):
    """SFTPStorage that refuses a server whose host key is not known (unless allow_unknown_hosts is set), and a host
    at an address the hub may not call (impex.outbound; unless check_address is off: IMPEX_STORAGE's own host).

    It overrides the public sftp property (and close), through which SFTPStorage does all its work: SFTPStorage's own
    connection trusts any unknown host key (AutoAddPolicy, and sends the password to it: a man in the middle would
    get the files) and has no setting to refuse one.
    """

    def __init__(self, **settings):
        super().__init__(**settings)
        self.ssh_client: paramiko.SSHClient | None = None
        self.sftp_client: paramiko.SFTPClient | None = None

    def get_default_settings(self):
        # login_from: the SFTP_HOSTS entry the login came from ("" for SFTP_PASSWORD / SFTP_KEY_FILE), for errors.
        return {
            **super().get_default_settings(),
            "allow_unknown_hosts": False,
            "login_from": "",
            "check_address": True,
        }

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session, connected (again) when there is none or its connection dropped."""
        transport = self.ssh_client.get_transport() if self.ssh_client is not None else None
        if self.sftp_client is None or transport is None or not transport.is_active():
            self.close()
            self.sftp_client = self.connect()
        return self.sftp_client

    def close(self) -> None:
        if self.ssh_client is not None:
            self.ssh_client.close()
        self.ssh_client = self.sftp_client = None

    def connect(self) -> paramiko.SFTPClient:
        """Connect, checking the host key and the address, and open an SFTP session."""
        self.ssh_client = client = paramiko.SSHClient()
        known_hosts = self.known_host_file or os.path.expanduser("~/.ssh/known_hosts")
        if os.path.exists(known_hosts):
            client.load_host_keys(known_hosts)
        policy = paramiko.AutoAddPolicy() if self.allow_unknown_hosts else RefuseUnknownHost(known_hosts)
        client.set_missing_host_key_policy(policy)
        sock = None
        try:
            if self.check_address:
                # Resolved and checked once, and the socket goes to the address checked (no DNS rebinding); paramiko
                # still checks the host key by the name.
                port = self.params.get("port", 22)
                sock = outbound.connect(self.host, port, timeout=self.params.get("timeout", SFTP_TIMEOUT_SECONDS))
            client.connect(self.host, sock=sock, **self.params)
        except paramiko.AuthenticationException as exc:
            self._close_after_failure(sock)
            # paramiko says only "Authentication failed.": say who logged in where, and what was tried.
            given = [
                f"{self.login_from} {label.removeprefix('SFTP_').lower()}" if self.login_from else label
                for key, label in SFTP_CREDENTIALS
                if self.params.get(key)
            ]
            raise paramiko.AuthenticationException(
                f"SFTP login as {self.params.get('username', '(the local user)')!r} to {self.host}:"
                f"{self.params.get('port', 22)} refused ({exc}); tried "
                f"{' and '.join(given) if given else 'no SFTP_PASSWORD or SFTP_KEY_FILE'}: check them and the user"
            ) from exc
        except Exception:
            self._close_after_failure(sock)
            raise
        session = client.open_sftp()
        # The connect timeout covers only the connection: a server that stalls later would hang a worker for good.
        session.get_channel().settimeout(SFTP_TIMEOUT_SECONDS)
        return session

    def _close_after_failure(self, sock) -> None:
        self.close()  # else each failed attempt leaves a transport thread behind
        if sock is not None:
            sock.close()  # paramiko closes it with its transport, unless it failed before making one


class SFTPReader(io.RawIOBase):
    """A remote SFTP file read front to back, a window of read-ahead at a time.

    Without read-ahead each 32 KB waits for its round trip (3 MB/s on loopback). paramiko's prefetch() asks for
    the whole file from a thread of its own that outlives close(): a file closed after its first bytes (a header,
    a download cut off) went on being fetched, into memory, through the connection's next reads. Here each window
    (SFTP_WINDOW_REQUESTS requests, 4 MB) is asked for only once the one before is read.
    """

    def __init__(self, remote: paramiko.SFTPFile):
        super().__init__()
        self._remote = remote
        self._size = remote.stat().st_size
        self._asked = 0  # bytes of the file asked for so far
        self._pieces: Iterator[bytes] = iter(())
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            piece = next(self._pieces, None)
            if piece is not None:
                self._left = piece
                continue
            if self._asked >= self._size:
                return 0
            end = min(self._size, self._asked + SFTP_WINDOW_REQUESTS * SFTP_REQUEST_BYTES)
            chunks = [(at, min(SFTP_REQUEST_BYTES, end - at)) for at in range(self._asked, end, SFTP_REQUEST_BYTES)]
            self._asked = end
            self._pieces = self._remote.readv(chunks, SFTP_IN_FLIGHT)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._remote.close()
        super().close()
