"""The ``proxy`` provider: a per-environment reverse proxy (Caddy) for ``dns`` and ``route``.

``proxy.local_server`` supervises Caddy on 127.0.0.1 with its admin API on a Unix socket in
its data dir; ``proxy.route`` adds a host and path prefix → upstream route through that API,
labelled with its owner; ``proxy.hostname`` derives a ``*.localhost`` host name. Socket and
HTTP errors become ``ProviderError`` at one boundary (``admin.provider_errors``). Why Caddy:
docs/adr/0007-proxy.md.
"""

from __future__ import annotations

from stackyard.providers.api import Provider
from stackyard.providers.proxy.hostname import HostnameConfig, HostnameKind, host_label
from stackyard.providers.proxy.route import RouteConfig, RouteKind
from stackyard.providers.proxy.server import ProxyServer

__all__ = [
    "PROVIDER",
    "HostnameConfig",
    "HostnameKind",
    "ProxyServer",
    "RouteConfig",
    "RouteKind",
    "host_label",
]

VERSION = "0.1.0"

#: The entry point ``stackyard.providers: proxy``.
PROVIDER = Provider(
    name="proxy",
    version=VERSION,
    kinds=(ProxyServer(), RouteKind(), HostnameKind()),
    description="A per-environment Caddy reverse proxy: routes by host and path, and "
    "*.localhost host names.",
    parallelism=10,
)
