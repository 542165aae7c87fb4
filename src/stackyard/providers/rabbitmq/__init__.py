"""The ``rabbitmq`` provider: vhosts, users and permissions through the management HTTP API.

Vhosts are labelled ``stackyard:<installation>:<env>:<address>`` in their description, users
in a tag (the label, percent-encoded), both set by the same request that creates them;
permissions go with their user and vhost. ``rabbitmq.local_server`` runs a private RabbitMQ
node from Debian's package for the local cloud. httpx's exceptions become ``ProviderError``
at one boundary (``client.provider_errors``).
"""

from __future__ import annotations

import atexit

from stackyard.providers.api import Provider
from stackyard.providers.rabbitmq.client import PASSWORD_DRIFTED, Clients, provider_errors
from stackyard.providers.rabbitmq.permission import PermissionConfig, PermissionKind
from stackyard.providers.rabbitmq.server import RabbitmqServer
from stackyard.providers.rabbitmq.user import UserConfig, UserKind
from stackyard.providers.rabbitmq.vhost import VhostConfig, VhostKind

__all__ = [
    "PASSWORD_DRIFTED",
    "PROVIDER",
    "Clients",
    "PermissionConfig",
    "PermissionKind",
    "RabbitmqServer",
    "UserConfig",
    "UserKind",
    "VhostConfig",
    "VhostKind",
    "make_provider",
    "provider_errors",
]

VERSION = "0.1.0"


def make_provider(clients: Clients | None = None) -> Provider:
    """A rabbitmq provider whose kinds share one set of HTTP clients."""
    shared = clients if clients is not None else Clients()
    return Provider(
        name="rabbitmq",
        version=VERSION,
        kinds=(VhostKind(shared), UserKind(shared), PermissionKind(shared), RabbitmqServer()),
        description="RabbitMQ vhosts, users and permissions (management HTTP API), and a "
        "local RabbitMQ server.",
        parallelism=10,
    )


_CLIENTS = Clients()
atexit.register(_CLIENTS.close)

#: The entry point ``stackyard.providers: rabbitmq``.
PROVIDER = make_provider(_CLIENTS)
