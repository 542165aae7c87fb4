"""The proxy provider against a real Caddy (``proxy.local_server``): routes created, observed,
updated, deleted and re-created through the admin API, requests proxied by host and path,
drift, foreign routes, hostile names, the sweeper, and a restart that keeps the routes."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from _sweeper import Sweeper, sweeper, sweeper_checks  # noqa: F401  (fixtures)
from stackyard.errors import ForeignObjectError, ProviderError, ProviderPermanentError
from stackyard.host import supervise
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    Kind,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    validate_config,
)
from stackyard.providers.proxy import PROVIDER, host_label
from stackyard.providers.proxy import admin as caddy
from stackyard.providers.proxy.route import LABEL_VAR, ROUTES
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "route.default#web.route"


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.server.name} {self.path} {self.headers.get('Host')}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    """Two real HTTP servers on 127.0.0.1 that answer '<name> <path> <host>'."""
    servers = {}
    for name in ("alpha", "beta"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        srv.name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[name] = srv
    yield {n: f"127.0.0.1:{s.server_address[1]}" for n, s in servers.items()}
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A Caddy proxy (``proxy.local_server``) in a throw-away home."""
    kind = PROVIDER.kind("proxy.local_server")
    home = tmp_path_factory.mktemp("proxy-home")
    meta = ResourceMeta("tests/proxy", kind.name, "tests", "tests-proxy")
    config = {"home": str(home)}
    try:
        applied = kind.create(CreateRequest(meta, config))
    except ProviderError as exc:
        from _services import require_or_skip

        require_or_skip(f"no Caddy: {exc}")
        return
    try:
        yield {"outputs": dict(applied.outputs), "kind": kind, "meta": meta, "config": config}
    finally:
        kind.delete(DeleteRequest(meta, config, {}))


def get(port: int, host: str, path: str) -> tuple[int, str]:
    """A request to the proxy with ``Host: host`` (what curl --resolve sends)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


class Harness:
    def __init__(self, outputs: dict[str, Any], env: str) -> None:
        self.kind: Kind = PROVIDER.kind("proxy.route")
        self.env = env
        self.port = int(outputs["port"])
        self.server = outputs["admin_url"]
        self.sock = caddy.socket_of(self.server, "tests")

    def meta(self, resource: str = "route", uid: str = UID) -> ResourceMeta:
        name = physical_name(self.env, uid, resource, self.kind.naming)
        return ResourceMeta(f"{uid}/{resource}", self.kind.name, self.env, name, "inst01")

    def config(self, **values: Any) -> dict[str, Any]:
        return validate_config(self.kind, {"server": self.server, **values})

    def routes(self) -> list[dict[str, Any]]:
        return list(caddy.request(self.sock, "GET", ROUTES) or [])

    def ids(self) -> list[str]:
        return [str(r.get("@id")) for r in self.routes()]


@pytest.fixture
def proxy(server: dict[str, Any], sweeper: Sweeper) -> Harness:  # noqa: F811
    h = Harness(server["outputs"], sweeper.env)

    def leaked(env: str) -> list[str]:
        return [
            f"proxy route {r.get('@id')}"
            for r in h.routes()
            if f":{env}:" in str((r.get("handle") or [{}])[0].get(LABEL_VAR, ""))
        ]

    sweeper.add_check(leaked)
    return h


def test_route_lifecycle_and_requests_through_the_proxy(
    proxy: Harness, upstreams: dict[str, str]
) -> None:
    k, meta = proxy.kind, proxy.meta()
    host = f"web-{proxy.env}.localhost"
    cfg = proxy.config(host=host, upstream=upstreams["alpha"])
    out = dict(k.create(CreateRequest(meta, cfg)).outputs)
    assert out == {"host": host, "path": "/", "upstream": upstreams["alpha"]}
    assert dict(k.create(CreateRequest(meta, cfg)).outputs) == out  # idempotent
    assert proxy.ids().count(meta.physical_name) == 1
    assert proxy.ids()[-1] == "stackyard-fallback"
    assert get(proxy.port, host, "/hello") == (200, f"alpha /hello {host}")
    assert get(proxy.port, f"other-{proxy.env}.localhost", "/hello")[0] == 404
    observed = k.observe(ObserveRequest(meta, cfg))
    assert observed is not None and observed.managed
    assert dict(observed.config) == dict(cfg)

    # update in place: a path prefix and another upstream
    new = proxy.config(host=host, path="/api", upstream=upstreams["beta"])
    req = UpdateRequest(meta, new, cfg, out, frozenset({"path", "upstream"}))
    out2 = dict(k.update(req).outputs)
    assert out2["path"] == "/api"
    assert get(proxy.port, host, "/api/v1?x=1") == (200, f"beta /api/v1?x=1 {host}")
    assert get(proxy.port, host, "/api") == (200, f"beta /api {host}")
    assert get(proxy.port, host, "/apis")[0] == 404  # a prefix is a whole segment
    assert get(proxy.port, host, "/")[0] == 404

    # delete twice, then re-create
    k.delete(DeleteRequest(meta, new, out2))
    k.delete(DeleteRequest(meta, new, out2))
    assert k.observe(ObserveRequest(meta, new)) is None
    assert get(proxy.port, host, "/api/v1")[0] == 404
    k.create(CreateRequest(meta, new))
    assert get(proxy.port, host, "/api/v1")[0] == 200
    k.delete(DeleteRequest(meta, new, out2))


def test_longest_prefix_wins_whatever_the_order(proxy: Harness, upstreams: dict[str, str]) -> None:
    k = proxy.kind
    host = f"shop-{proxy.env}.localhost"
    root, api = proxy.meta("root"), proxy.meta("api")
    rcfg = proxy.config(host=host, upstream=upstreams["alpha"])
    acfg = proxy.config(host=host, path="/api/v2", upstream=upstreams["beta"])
    k.create(CreateRequest(root, rcfg))  # the catch-all first
    k.create(CreateRequest(api, acfg))
    try:
        assert get(proxy.port, host, "/api/v2/items")[1].startswith("beta ")
        assert get(proxy.port, host, "/api/v1/items")[1].startswith("alpha ")
        assert get(proxy.port, host, "/")[1].startswith("alpha ")
        # the same host and path for another resource is refused
        with pytest.raises(ProviderPermanentError, match="already routed"):
            k.create(CreateRequest(proxy.meta("dup"), acfg))
    finally:
        k.delete(DeleteRequest(api, acfg, {}))
        k.delete(DeleteRequest(root, rcfg, {}))


def test_drift_is_found_and_fixed(proxy: Harness, upstreams: dict[str, str]) -> None:
    k, meta = proxy.kind, proxy.meta()
    host = f"drift-{proxy.env}.localhost"
    cfg = proxy.config(host=host, upstream=upstreams["alpha"])
    out = dict(k.create(CreateRequest(meta, cfg)).outputs)
    # changed out of band, through the admin API
    path = f"/id/{meta.physical_name}/handle/1/upstreams/0/dial"
    caddy.request(proxy.sock, "PATCH", path, upstreams["beta"])
    observed = k.observe(ObserveRequest(meta, cfg, out))
    assert observed is not None and observed.managed
    assert observed.config["upstream"] == upstreams["beta"] != cfg["upstream"]
    k.update(UpdateRequest(meta, cfg, cfg, out, frozenset()))
    assert get(proxy.port, host, "/")[1].startswith("alpha ")
    # deleted out of band: missing, and a create brings it back
    caddy.request(proxy.sock, "DELETE", f"/id/{meta.physical_name}")
    assert k.observe(ObserveRequest(meta, cfg, out)) is None
    k.create(CreateRequest(meta, cfg))
    assert get(proxy.port, host, "/")[1].startswith("alpha ")
    k.delete(DeleteRequest(meta, cfg, out))


def test_foreign_routes_are_never_touched(proxy: Harness, upstreams: dict[str, str]) -> None:
    k, meta = proxy.kind, proxy.meta()
    host = f"foreign-{proxy.env}.localhost"
    cfg = proxy.config(host=host, upstream=upstreams["alpha"])
    unlabelled = {
        "@id": meta.physical_name,
        "match": [{"host": [host]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": upstreams["beta"]}]}],
        "terminal": True,
    }
    before = proxy.routes()
    caddy.request(proxy.sock, "PATCH", ROUTES, [unlabelled, *before])
    try:
        observed = k.observe(ObserveRequest(meta, cfg))
        assert observed is not None and not observed.managed
        with pytest.raises(ForeignObjectError):
            k.create(CreateRequest(meta, cfg))
        with pytest.raises(ForeignObjectError):
            k.delete(DeleteRequest(meta, cfg, {}))
        assert get(proxy.port, host, "/")[1].startswith("beta ")  # left as it was
        # another installation's route: foreign too
        other = ResourceMeta(meta.address, meta.kind, meta.env, meta.physical_name, "other1")
        with pytest.raises(ForeignObjectError):
            k.create(CreateRequest(other, cfg))
    finally:
        caddy.request(proxy.sock, "PATCH", ROUTES, before)


HOSTILE = [
    ("", "empty"),
    ("a/../b", "dot segments"),
    ("x\x00y", "NUL"),
    ("x\ny", "newline"),
    ("'; DROP TABLE x; --", "SQL"),
    ('{"@id":"x"}', "JSON"),
    ("*", "wildcard"),
    ("%2e%2e", "encoded dots"),
    ("аdmin", "Cyrillic a"),
    ("🔥💥", "emoji"),
    ("UPPER.case", "upper case"),
    ("a" * 300, "too long"),
    ("-lead", "leading dash"),
]


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=[r for _, r in HOSTILE])
def test_hostile_names(proxy: Harness, upstreams: dict[str, str], text: str, reason: str) -> None:
    k = proxy.kind
    uid = f"route.default#{text}.{text}"
    before = proxy.ids()
    # derived: always a valid route id, created and deleted exactly
    name = physical_name(text, uid, text, k.naming)
    meta = ResourceMeta(f"{uid}/{text}", k.name, proxy.env, name, "inst01")
    cfg = proxy.config(
        host=f"{host_label(text + proxy.env)}.localhost", upstream=upstreams["alpha"]
    )
    k.create(CreateRequest(meta, cfg))
    assert name in proxy.ids()
    k.delete(DeleteRequest(meta, cfg, {}))
    assert proxy.ids() == before
    # raw, as host or path: refused at validation, before any request
    with pytest.raises(ProviderPermanentError):
        validate_config(k, {"server": proxy.server, "host": text, "upstream": upstreams["alpha"]})
    with pytest.raises(ProviderPermanentError):
        validate_config(k, {"server": proxy.server, "host": "a.localhost", "path": f"/{text}/", "upstream": upstreams["alpha"]})  # fmt: skip
    assert proxy.ids() == before


def test_sweep_finds_unrecorded_routes(proxy: Harness, upstreams: dict[str, str]) -> None:
    k = proxy.kind
    metas = [proxy.meta(f"r{i}") for i in range(3)]
    for i, meta in enumerate(metas):
        k.create(CreateRequest(meta, proxy.config(host=f"s{i}-{proxy.env}.localhost", upstream=upstreams["alpha"])))  # fmt: skip
    prefix = f"stackyard:inst01:{proxy.env}:"
    found = k.labelled({"server": proxy.server}, prefix, limit=100)  # type: ignore[attr-defined]
    assert sorted(f.physical_name for f in found) == sorted(m.physical_name for m in metas)
    assert k.labelled({"server": proxy.server}, "stackyard:inst01:nobody:", limit=100) == []  # type: ignore[attr-defined]
    for f in found:
        meta = ResourceMeta(f.label.removeprefix(prefix), k.name, proxy.env, f.physical_name, "inst01")  # fmt: skip
        k.delete(DeleteRequest(meta, f.config, {}))
    assert not any(m.physical_name in proxy.ids() for m in metas)


def test_server_restart_keeps_routes(
    server: dict[str, Any], proxy: Harness, upstreams: dict[str, str]
) -> None:
    kind, smeta, sconfig = server["kind"], server["meta"], server["config"]
    k, meta = proxy.kind, proxy.meta()
    host = f"keep-{proxy.env}.localhost"
    cfg = proxy.config(host=host, upstream=upstreams["alpha"])
    k.create(CreateRequest(meta, cfg))
    try:
        pidfile = Path(sconfig["home"]) / "servers" / smeta.physical_name / "server.pid"
        supervise.stop(pidfile)
        observed = kind.observe(ObserveRequest(smeta, sconfig))
        assert observed is not None and observed.health == "stopped"
        with pytest.raises(ProviderError):
            k.observe(ObserveRequest(meta, cfg))  # the socket is gone: transient
        kind.update(UpdateRequest(smeta, sconfig, sconfig, {}, frozenset()))
        assert get(proxy.port, host, "/x")[1].startswith("alpha ")  # Caddy's autosave
        assert kind.observe(ObserveRequest(smeta, sconfig)).health == "ok"  # type: ignore[union-attr]
    finally:
        k.delete(DeleteRequest(meta, cfg, {}))


def test_admin_socket_is_private(server: dict[str, Any]) -> None:
    sock = caddy.socket_of(server["outputs"]["admin_url"], "tests")
    assert sock.exists() and (sock.parent.stat().st_mode & 0o077) == 0
    assert server["outputs"]["url"] == f"http://127.0.0.1:{server['outputs']['port']}"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("web-dev", "web-dev"),
        ("Web_App.dev", "web-app-dev"),
        ("🔥", None),
        ("a" * 80, None),
    ],
    ids=["plain", "mixed", "emoji", "long"],
)
def test_hostname_labels(text: str, label: str | None) -> None:
    kind = PROVIDER.kind("proxy.hostname")
    meta = ResourceMeta("dns.default#w.dns/host", kind.name, "dev", "x")
    host = kind.create(CreateRequest(meta, {"name": text})).outputs["host"]
    first = host.removesuffix(".localhost")
    assert host.endswith(".localhost") and 0 < len(first) <= 63
    assert all(c.isascii() and (c.isalnum() or c == "-") for c in first)
    if label is not None:
        assert first == label
    assert kind.observe(ObserveRequest(meta, {"name": text}, {"host": host})) is not None
    assert kind.observe(ObserveRequest(meta, {"name": text})) is None
