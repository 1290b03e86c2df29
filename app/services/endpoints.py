"""Where notifications may go (notifications.md, Security): an endpoint's host is resolved and
refused when any address it resolves to is loopback, private, link-local, multicast, reserved or
otherwise not globally routable, unless the host (or the address itself) is listed in
``COCM_SUBSCRIPTION_ALLOWED_HOSTS``. Asked when a Subscription is written and again before every
delivery (a name can move)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def endpoint_problem(url: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why ``url`` may not receive notifications, or None when it may."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return "the endpoint names no host"
    if host in allowed_hosts:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return "the endpoint's host does not resolve"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if str(address) in allowed_hosts:
            continue
        if not address.is_global or address.is_multicast:
            return "the endpoint's host resolves to a non-public address"
    return None
