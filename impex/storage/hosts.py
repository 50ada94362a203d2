"""The servers the hub logs in to (SFTP, FTP): which an operator listed in a *_HOSTS setting, which is IMPEX_STORAGE's,
and why the hub may not use one (SPEC 13). A host a connection editor names gets no login unless listed."""

from django.conf import settings

from impex import outbound
from impex.exceptions import ConfigurationError
from impex.locations import parse_location


def listed_entry(hosts: dict[str, dict], host: str, port: int) -> tuple[str, dict] | None:
    """Return the key and entry of host:port, else of host, in a *_HOSTS setting (case-insensitive); None if absent."""
    for key in (f"{host}:{port}", host):
        for listed, entry in hosts.items():
            if listed.lower() == key.lower():
                return listed, entry
    return None


def is_hub_host(host: str, port: int, *, schemes: tuple[str, ...], default_port: int) -> bool:
    """Tell whether host:port is the server of IMPEX_STORAGE (one of schemes), which the operator chose."""
    try:
        hub = parse_location(settings.IMPEX_STORAGE)
    except ConfigurationError:
        return False
    return hub.scheme in schemes and (hub.host, hub.port or default_port) == (host.lower(), port)


def server_refusal(host: str, port: int, *, unlisted: str, hub: bool, resolve: bool) -> str:
    """Say why the hub may not use a server (empty: it may): unlisted (the reason given), or an address refused.

    resolve: also resolve the name and check its addresses (impex.outbound), as every connection does; the hub's own
    storage server (hub) is the operator's choice and not checked.
    """
    if unlisted:
        return unlisted
    if resolve and not hub:
        return outbound.host_refusal(host, port)
    return ""
