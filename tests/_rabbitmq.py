"""A real RabbitMQ for tests: the machine's (management API on), or a private local node.

Order: ``STACKYARD_TEST_RABBITMQ_URL`` (a management URL with admin credentials, plus
``STACKYARD_TEST_RABBITMQ_AMQP_PORT``); the machine's server when its management API answers
on 127.0.0.1:15672 (``guest``/``guest``, AMQP on 5672); a node started by
``rabbitmq.local_server`` in a temporary home when Debian's rabbitmq-server is installed;
otherwise skip (a failure under ``STACKYARD_REQUIRE_SERVICES=1``). The machine's management
plugin is off by default: ``rabbitmq-plugins enable rabbitmq_management`` (``.ci/run`` does it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pytest

from _services import require_or_skip
from stackyard.providers.rabbitmq.client import segment

__all__ = ["RabbitTarget", "rabbitmq", "rabbitmq_leaked"]

MACHINE_URL = "http://guest:guest@127.0.0.1:15672"


@dataclass(frozen=True)
class RabbitTarget:
    """A server to test against: its management URL (with admin credentials) and AMQP port."""

    admin_url: str
    amqp_port: int
    host: str = "127.0.0.1"

    def api(self) -> httpx.Client:
        """An admin client of the management API (``/api`` as its base)."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.admin_url)
        return httpx.Client(
            base_url=f"{parts.scheme}://{parts.hostname}:{parts.port}/api",
            auth=(parts.username or "", parts.password or ""),
            timeout=10,
            trust_env=False,
        )


def _answers(url: str) -> bool:
    try:
        target = RabbitTarget(url, 0)
        with target.api() as api:
            return api.get("/overview").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitTarget]:
    """A real RabbitMQ with its management API."""
    if url := os.environ.get("STACKYARD_TEST_RABBITMQ_URL"):
        yield RabbitTarget(url, int(os.environ.get("STACKYARD_TEST_RABBITMQ_AMQP_PORT", "5672")))
        return
    if os.environ.get("STACKYARD_TEST_EMBEDDED") != "1" and _answers(MACHINE_URL):
        yield RabbitTarget(MACHINE_URL, 5672)
        return
    from stackyard.errors import ProviderError
    from stackyard.providers.api import CreateRequest, DeleteRequest, ResourceMeta
    from stackyard.providers.rabbitmq import PROVIDER

    kind = PROVIDER.kind("rabbitmq.local_server")
    home = tmp_path_factory.mktemp("embedded-rabbitmq")
    meta = ResourceMeta("tests/embedded", kind.name, "tests", "tests-rabbitmq-server")
    config = {"home": str(home)}
    try:
        out = kind.create(CreateRequest(meta, config)).outputs
    except ProviderError as exc:
        require_or_skip(
            "RabbitMQ's management API is not reachable on 127.0.0.1:15672 (enable it: "
            f"rabbitmq-plugins enable rabbitmq_management), and no local node: {exc}"
        )
        return
    try:
        yield RabbitTarget(str(out["admin_url"]), int(out["port"]))
    finally:
        kind.delete(DeleteRequest(meta, config, {}))


def rabbitmq_leaked(target: RabbitTarget) -> Callable[[str], list[str]]:
    """A sweeper check: vhosts and users labelled with (or named after) the env."""

    def check(env: str) -> list[str]:
        with target.api() as api:
            vhosts = api.get("/vhosts", params={"columns": "name,description"}).json()
            users = api.get("/users").json()
        found: list[tuple[str, str]] = [
            ("vhosts", v["name"])
            for v in vhosts
            if f":{env}:" in str(v.get("description") or "") or v["name"].startswith(env)
        ]
        for user in users:
            tags = user.get("tags") or []
            tags = tags.split(",") if isinstance(tags, str) else tags
            labelled = any(f":{env}:" in unquote(t) for t in tags)
            if labelled or user["name"].startswith(env):
                found.append(("users", user["name"]))
        if found:  # clean up, so one failing test does not pollute the server
            with target.api() as api:
                for path, name in found:
                    api.delete(f"/{path}/{segment(name)}")
        return [f"rabbitmq {path[:-1]} {name!r}" for path, name in found]

    return check
