"""The ftplib side of impex.storage.ftp: django-storages' FTPStorage made to check addresses, verify TLS, time out,
list names with spaces, and read a file through a local spool instead of memory.

Imported by impex.storage.ftp when an ftp:// or ftps:// location is first used.
"""

import ftplib
import os
import ssl
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

from django.conf import settings
from storages.backends.ftp import FTPStorage

from impex import outbound
from impex.storage.base import CHUNK_BYTES

# What ftplib raises for a server that answers badly, drops the connection or times out.
FTP_ERRORS = ftplib.all_errors


class FTPFailure(ConnectionError):
    """An FTP server refused the login, or a transfer failed or broke off (nothing partial is handed on): a network
    error, tried again at the next use."""


class _CheckedConnect:
    """ftplib's connect, with the socket opened by impex.outbound to an address that was checked (SPEC 13).

    ftplib.FTP.connect resolves and connects in one step (socket.create_connection), with no place to check the
    address it picked; the rest is as ftplib does it. Data connections go to the control connection's peer address,
    never to the one a server names in its PASV reply (trust_server_pasv_ipv4_address, off by default, is pinned
    off here): a server answering PASV with an internal address cannot make the hub call it.
    """

    trust_server_pasv_ipv4_address = False
    check_address = True

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if not self.check_address:
            return super().connect(self.host, self.port, self.timeout, source_address)
        self.sock = outbound.connect(self.host, self.port, timeout=self.timeout, source_address=source_address)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


class CheckedFTP(_CheckedConnect, ftplib.FTP):
    """Plain FTP through a checked socket."""


class CheckedFTPTLS(_CheckedConnect, ftplib.FTP_TLS):
    """Explicit FTPS (AUTH TLS, then PROT P for data) through a checked socket.

    Each data connection resumes the control connection's TLS session: ftplib starts a new one, which servers that
    insist on reuse (vsftpd's require_ssl_reuse, its default) refuse with "522 SSL connection failed".
    """

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def tls_context() -> ssl.SSLContext:
    """Return the TLS context of FTPS connections: certificates verified against the system's CAs or FTPS_CA_FILE.

    ftplib.FTP_TLS's default context verifies nothing: a man in the middle would get the password and the files.
    """
    return ssl.create_default_context(cafile=settings.FTPS_CA_FILE or None)


class CheckedFTPStorage(FTPStorage):
    """FTPStorage connecting with timeouts, checked addresses, verified TLS, and credentials it never prints.

    FTPStorage takes its login from a URL with the password in it and prints that URL's parts, password included,
    in its connection error; it connects with no timeout (a stalled server hangs a worker for good) and without
    checking the address or the FTPS certificate. So the connection is made here (_start_connection, the one place
    FTPStorage connects); FTPStorage's save, exists and get_available_name still do their work on it, in the
    location's folder (the working folder once connected). The rest (listing, sizes, times, reads, deletes, renames)
    is in FTPBackend, on the connection's public ftplib calls, with absolute paths.
    """

    def get_default_settings(self):
        return {
            **super().get_default_settings(),
            "location": "",  # the location as shown (no password); the login comes from the settings below
            "host": "",
            "port": 21,
            "user": "",
            "password": "",
            "secure": False,
            "root_path": "/",
            "timeout": 30,  # seconds, on connecting and on every reply or block of data (FTP_TIMEOUT_SECONDS)
            "login_from": "",
            "check_address": True,
            "encoding": "utf-8",  # FTPStorage's latin-1 garbles UTF-8 names (RFC 2640; pyftpdlib, vsftpd, ...)
        }

    def _decode_location(self, location):
        # FTPStorage parses user:password@host:port/path out of its location URL (which must hold a password, and
        # breaks on one with '@' or ':'); the parts are given separately here.
        return {
            "active": False,
            "secure": self.secure,
            "path": self.root_path,
            "host": self.host,
            "user": self.user,
            "passwd": self.password,
            "port": self.port,
        }

    def _save(self, name, content):
        # FTPStorage._save seeks the content back to its start and closes it: a stream (a download being copied,
        # read once) can do neither, and its caller closes it. _put_file reads it a chunk at a time.
        self._start_connection()
        self._put_file(name, content)
        return name

    @property
    def ftp(self) -> ftplib.FTP:
        """The connection, made (again) when there is none or it dropped; in the location's folder if it exists."""
        self._start_connection()
        return self._connection

    def _start_connection(self):
        if self._connection is not None:
            try:
                self._connection.voidcmd("NOOP")
                return
            except FTP_ERRORS:
                self.close()
        self._connection = self.connect()

    def connect(self) -> ftplib.FTP:
        """Connect, log in (TLS first for ftps) and go to the location's folder if it is there."""
        cls = CheckedFTPTLS if self.secure else CheckedFTP
        kwargs = {"context": tls_context()} if self.secure else {}
        ftp = cls(timeout=self.timeout, encoding=self.encoding, **kwargs)
        ftp.check_address = self.check_address
        try:
            try:
                ftp.connect(self.host, self.port)
                ftp.login(self.user, self.password)
            except ftplib.error_perm as exc:
                raise FTPFailure(
                    f"FTP login as {self.user!r} to {self.host}:{self.port} refused ({exc}); tried "
                    f"{self.login_from + ' password' if self.login_from else 'FTP_PASSWORD'}: check it and the user"
                ) from exc
            if self.secure:
                ftp.prot_p()
            ftp.set_pasv(True)
            _cwd(ftp, self.root_path)  # FTPStorage works relative to it; a folder not there yet is made by a save
        except BaseException:
            ftp.close()
            raise
        return ftp

    def enter_root(self) -> None:
        """Work in the location's folder, made if it is not there yet: FTPStorage saves relative to the working folder
        (which a save that failed half-way may have left in a sub-folder)."""
        ftp = self.ftp
        if _cwd(ftp, self.root_path):
            return
        ftp.cwd("/")
        for part in [p for p in self.root_path.split("/") if p]:
            if not _cwd(ftp, part):
                try:
                    ftp.mkd(part)
                except ftplib.error_perm:
                    if not _cwd(ftp, part):  # another writer made it meanwhile
                        raise
                    continue
                ftp.cwd(part)

    def close(self) -> None:
        """Let go of the connection (politely if it still answers)."""
        if self._connection is not None:
            try:
                self._connection.quit()
            except FTP_ERRORS:
                self._connection.close()
        self._connection = None

    disconnect = close


def _cwd(ftp: ftplib.FTP, path: str) -> bool:
    """Change the working folder; tell whether it is there."""
    try:
        ftp.cwd(path)
    except ftplib.error_perm:
        return False
    return True


def parse_mlsd_time(value: str) -> datetime | None:
    """Return an MLSD/MDTM time (YYYYMMDDHHMMSS[.sss], UTC), aware or naive as USE_TZ says; None if unreadable."""
    try:
        when = datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return when if settings.USE_TZ else when.replace(tzinfo=None)


def listing(ftp: ftplib.FTP, path: str) -> Iterator[tuple[str, str, int, datetime | None]] | None:
    """Return (name, type, size, modified) of each entry of a folder by MLSD; None where the server has no MLSD.

    FTPStorage lists with LIST and splits each line on spaces: a name with a space breaks it (or its size). MLSD
    (RFC 3659) gives exact names, types, sizes and UTC times in one listing.
    """
    try:
        entries = list(ftp.mlsd(path, facts=["type", "size", "modify"]))
    except ftplib.error_perm as exc:
        if str(exc)[:3] in ("500", "501", "502", "504"):
            return None  # not understood: fall back to NLST
        raise
    return (
        (name, facts.get("type", "").lower(), int(facts.get("size") or 0), parse_mlsd_time(facts.get("modify", "")))
        for name, facts in entries
    )


class _Overflow(Exception):
    """A download went past the size the server gave (not an ftplib error: it must not read as a broken transfer)."""


def download(ftp: ftplib.FTP, path: str, *, expected: int | None, shown: str) -> IO[bytes]:
    """Download a file into an anonymous local file (flat memory) and return it at its start, once it is complete.

    FTPStorage reads a whole file into memory. A stream straight off the data connection would hold the control
    connection for as long as the caller reads (no other command meanwhile, e.g. saving its copy on the same
    server), and a transfer cut short would show only at its end: so the file is spooled first, and handed on only
    once the server confirmed the transfer and the size matches. FTPFailure if not: nothing partial is read.
    """
    os.makedirs(settings.IMPEX_CACHE_DIR, exist_ok=True)
    spool = tempfile.TemporaryFile(dir=settings.IMPEX_CACHE_DIR)  # removed on close, or when the process dies
    received = 0

    def write(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if expected is not None and received > expected:
            # A server sending without end (hostile, or a file appended to): stop at once, before the disk fills.
            raise _Overflow
        spool.write(data)

    try:
        try:
            ftp.retrbinary(f"RETR {path}", write, blocksize=CHUNK_BYTES)
        except ftplib.error_perm:
            raise  # the server's answer (550: no such file), not a broken transfer
        except _Overflow:
            raise FTPFailure(
                f"the download of {shown} sent more than the {expected:,} bytes its size said (stopped after "
                f"{received:,} bytes): nothing of it was used; it is tried again next time"
            ) from None
        except FTP_ERRORS as exc:
            reason = str(exc) or ("the server closed the connection" if isinstance(exc, EOFError) else repr(exc))
            raise FTPFailure(
                f"the download of {shown} broke off after {received:,} bytes"
                f"{f' of {expected:,}' if expected is not None else ''} ({reason}): "
                "nothing of it was used; it is tried again next time"
            ) from exc
        if expected is not None and received != expected:
            raise FTPFailure(
                f"the download of {shown} ended after {received:,} of {expected:,} bytes: nothing of it was used; "
                "it is tried again next time"
            )
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise
