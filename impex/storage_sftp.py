"""The SFTP backend of impex.storage: django-storages' SFTPStorage made to check host keys, addresses and logins.

Imported by impex.storage when an sftp:// location is first used (paramiko takes a while to import).
"""

import os

import paramiko
from storages.backends.sftpstorage import SFTPStorage

from impex import outbound
from impex.storage import SFTP_CREDENTIALS, SFTP_TIMEOUT_SECONDS


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
    at an address the hub may not call (impex.outbound; unless check_address is off: IMPEX_STORAGE's own host)."""

    def get_default_settings(self):
        # login_from: the SFTP_HOSTS entry the login came from ("" for SFTP_PASSWORD / SFTP_KEY_FILE), for errors.
        return {
            **super().get_default_settings(),
            "allow_unknown_hosts": False,
            "login_from": "",
            "check_address": True,
        }

    def _connect(self):
        # django-storages trusts any unknown host key (AutoAddPolicy): a man in the middle would get the files.
        self._ssh = paramiko.SSHClient()
        known_hosts = self.known_host_file or os.path.expanduser("~/.ssh/known_hosts")
        if os.path.exists(known_hosts):
            self._ssh.load_host_keys(known_hosts)
        policy = paramiko.AutoAddPolicy() if self.allow_unknown_hosts else RefuseUnknownHost(known_hosts)
        self._ssh.set_missing_host_key_policy(policy)
        sock = None
        try:
            if self.check_address:
                # Resolved and checked once, and the socket goes to the address checked (no DNS rebinding); paramiko
                # still checks the host key by the name.
                port = self.params.get("port", 22)
                sock = outbound.connect(self.host, port, timeout=self.params.get("timeout", SFTP_TIMEOUT_SECONDS))
            self._ssh.connect(self.host, sock=sock, **self.params)
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
        self._sftp = self._ssh.open_sftp()
        # The connect timeout covers only the connection: a server that stalls later would hang a worker for good.
        self._sftp.get_channel().settimeout(SFTP_TIMEOUT_SECONDS)

    def _close_after_failure(self, sock) -> None:
        self._ssh.close()  # else each failed attempt leaves a transport thread behind
        if sock is not None:
            sock.close()  # paramiko closes it with its transport, unless it failed before making one
