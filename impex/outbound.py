"""Where the hub may call out to: public addresses only, unless an operator lists the host (SPEC 13).

A URL typed in the admin (a webhook, an exporter, an SFTP host) must not reach the hub's own machine, its
private network or a cloud's metadata service. Names are checked when they are saved (a clear message) and
again when the connection is made: the name is resolved once, every address it has is checked, and the socket
goes to an address that passed, so a name that changes its answer between the check and the call (DNS
rebinding) gains nothing.
"""

import http.client
import ipaddress
import socket
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings

# Addresses no name may resolve to unless listed, whatever ipaddress thinks of them (cloud metadata services).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
ALLOW_SETTING = "IMPEX_ALLOWED_HOSTS_OUTBOUND"


class OutboundRefused(OSError):
    """A host the hub may not call: not public, not listed, or not resolvable."""


def _allowed_entries() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Return the listed host names (lower case) and networks of IMPEX_ALLOWED_HOSTS_OUTBOUND."""
    names: set[str] = set()
    networks = []
    for entry in getattr(settings, ALLOW_SETTING, ()):
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return names, networks


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(value.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _why_not_public(address) -> str:
    """Say why an address is not one the hub calls by default; empty if it is public."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_unspecified or address.is_reserved or not address.is_global:
        return "not a public address"
    return ""


def _listed(host: str, addresses, names, networks) -> bool:
    if host.lower().rstrip(".").strip("[]") in names:
        return True
    return bool(addresses) and all(any(a in net for net in networks) for a in addresses)


def host_refusal(host: str, port: int | None = None) -> str:
    """Resolve a host and say why the hub may not call it (empty: it may); every address it has is checked."""
    return _resolve(host, port)[1]


def _resolve(host: str, port: int | None) -> tuple[list, str]:
    """Return a host's addresses and, if it may not be called, why (empty message: it may)."""
    names, networks = _allowed_entries()
    if not host:
        return [], "no host"
    bare = host.strip("[]")
    if bare.lower().rstrip(".") in names:
        try:
            return _lookup(bare, port), ""
        except OSError as exc:
            return [], f"the host {host} cannot be resolved ({exc})"
    try:
        addresses = _lookup(bare, port)
    except OSError as exc:
        return [], f"the host {host} cannot be resolved ({exc.strerror or exc})"
    if not addresses:
        return [], f"the host {host} has no address"
    if _listed(bare, addresses, names, networks):
        return addresses, ""
    for address in addresses:
        why = _why_not_public(address)
        if why:
            return addresses, (
                f"{host} is {why} ({address}): the hub calls only public addresses unless the host is listed in "
                f"{ALLOW_SETTING}"
            )
    return addresses, ""


def _lookup(host: str, port: int | None) -> list:
    infos = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    seen = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = _address(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


def url_refusal(url: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Say why the hub may not call a URL (a scheme it does not use, no host, or a host it may not reach)."""
    # Parsers disagree on a backslash or a control character in the authority (http://a\@b/ is host b to urlsplit,
    # host a to http.client): what is checked must be what is called, so such URLs are refused outright.
    if any(c == "\\" or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "the URL may not hold a backslash, a space or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"the URL is not valid ({exc})"
    if parts.scheme.lower() not in schemes:
        return f"use a {' or '.join(s + '://' for s in schemes)} URL"
    if "@" in parts.netloc:
        return "keep user names and passwords out of the URL (it is shown in the admin): sign with the secret instead"
    if not parts.hostname:
        return "the URL has no host"
    return host_refusal(parts.hostname, port)


def connect(host: str, port: int, *, timeout: float | None = None, source_address=None) -> socket.socket:
    """Open a TCP connection to a host the hub may call, to an address that was checked; OutboundRefused else."""
    addresses, message = _resolve(host, port)
    if message and not addresses:
        # A name that does not resolve now (a DNS outage) may resolve later: a network error, tried again.
        raise OSError(message)
    if message:
        raise OutboundRefused(message)
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect((str(address), port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OutboundRefused(f"the host {host} has no address")


def _create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None) -> socket.socket:
    """http.client's socket factory, through connect()."""
    wait = None if timeout is socket._GLOBAL_DEFAULT_TIMEOUT else timeout
    return connect(address[0], address[1], timeout=wait, source_address=source_address)


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    # HTTPSConnection.connect() takes its socket from HTTPConnection.connect(), then wraps it for self.host: SNI
    # and the certificate's name stay the host's, not the address's.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)


def opener(*handlers) -> urllib.request.OpenerDirector:
    """Build a urllib opener whose every connection goes only where host_refusal allows (no proxies)."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _CheckedHTTPHandler(), _CheckedHTTPSHandler(), *handlers
    )
