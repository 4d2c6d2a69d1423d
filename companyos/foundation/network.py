"""Who is asking: the client's address as far as this deployment can trust it.

Behind ``TRUSTED_PROXY_COUNT`` reverse proxies, each appending the address it
received from to ``X-Forwarded-For``, the client is the entry that many from
the right; anything further left was written by the client and proves
nothing. With no trusted proxy the socket's address is the answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

__all__ = ["address_in", "client_address"]


def client_address(request: HttpRequest) -> str:
    """The client's IP address, or ``""`` when the server did not say."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or ""


def address_in(address: str, networks: Iterable[str]) -> bool:
    """Whether ``address`` lies in one of ``networks`` (CIDR or single addresses); False for a malformed one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)
