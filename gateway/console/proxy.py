"""Which Host and which client the console believes (issue 22, finding 8).

The ``Host`` header is the browser's, or an attacker's: a page on ``evil.example`` that
a DNS trick (rebinding) points at the console's address sends ``Host: evil.example``,
and a redirect built from it sends the person there. So the console answers only the
names in ``[console] allowed_hosts`` (Starlette's ``TrustedHostMiddleware``, 400 for the
rest).

Behind a reverse proxy, the proxy is the peer: the client's address, the scheme it used
and the name it asked for arrive in ``X-Forwarded-For``, ``-Proto`` and ``-Host`` — which
anyone can send. They are believed only from ``[console] trusted_proxy``: For and Proto
as uvicorn's own ``ProxyHeadersMiddleware`` reads them (the last address that is not a
trusted proxy), Host here, before the Host check, so that the check and every URL the
console builds see the name the person typed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.config import ConsoleSection


class ForwardedHost:
    """``X-Forwarded-Host`` from a trusted proxy replaces ``Host``; from anyone else it is
    ignored. Of several values the last is the one our proxy added (each appends)."""

    def __init__(self, app: ASGIApp, trusted: Sequence[str]) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(t) for t in trusted]

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        try:
            peer = ipaddress.ip_address(client[0]) if client else None
        except ValueError:  # a Unix socket's peer has no address
            return False
        return peer is not None and any(peer in net for net in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._from_proxy(scope):
            values = [v for k, v in scope["headers"] if k == b"x-forwarded-host"]
            host = b",".join(values).split(b",")[-1].strip() if values else b""
            if host:
                scope = {**scope, "headers": [*((k, v) for k, v in scope["headers"]
                                                 if k != b"host"), (b"host", host)]}
        await self.app(scope, receive, send)


def middleware(section: ConsoleSection) -> list[Middleware]:
    """Outermost first: the forwarded headers (from the trusted proxy only), then the
    Host check on the name they leave."""
    layers = []
    if section.trusted_proxy:
        layers += [Middleware(ForwardedHost, trusted=section.trusted_proxy),
                   Middleware(ProxyHeadersMiddleware, trusted_hosts=list(section.trusted_proxy))]
    return [*layers, Middleware(TrustedHostMiddleware, allowed_hosts=section.hosts,
                                www_redirect=False)]
