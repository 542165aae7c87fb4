"""``proxy.route``: requests for one host and path prefix, proxied to one upstream.

A route is an entry of the proxy's route list, addressed through Caddy's admin API by its
``@id`` (the physical name). Its first handler is a ``vars`` handler carrying the ownership
label (``stackyard_owner``), which changes nothing for a request; a route without it, or with
another label, is foreign. Routes are kept longest path first, so ``/api`` wins over ``/``,
and the 404 fallback last; each change rewrites the list under a lock beside the socket.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import pydantic

from stackyard.errors import ForeignObjectError, ProviderPermanentError
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    Labelled,
    NamingRule,
    Observed,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.proxy import admin
from stackyard.providers.proxy.server import FALLBACK_ID, SERVER_NAME

__all__ = ["LABEL_VAR", "RouteConfig", "RouteKind", "route_json"]

LABEL_VAR = "stackyard_owner"
ROUTES = f"/config/apps/http/servers/{SERVER_NAME}/routes"
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: A path prefix: segments of unreserved and sub-delim characters, no ``*`` (Caddy's
#: wildcard), ``%``, ``?``, ``#``, empty, ``.`` or ``..`` segments, and no trailing slash.
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=:@-]+$")
_UPSTREAM = re.compile(r"^(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


def check_host(value: str) -> str:
    """A DNS host name: dot-separated labels of ``a-z0-9-`` (1-63, no leading or trailing
    ``-``), 253 characters at most; no wildcard, no trailing dot."""
    labels = value.split(".")
    if len(value) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise ValueError("must be a lower-case DNS host name (labels of a-z, 0-9 and -)")
    return value


def check_path(value: str) -> str:
    """``/`` or ``/seg/seg`` (see ``_SEGMENT``)."""
    if value == "/":
        return value
    parts = value.split("/")
    if (
        len(value) > 1024
        or parts[0] != ""
        or any(p in ("", ".", "..") or not _SEGMENT.match(p) for p in parts[1:])
    ):
        raise ValueError(
            "must be / or start with / and hold segments of letters, digits and -._~!$&'()+,;=:@ "
            "(no empty, . or .. segment, no *, %, ? or #, no trailing /)"
        )
    return value


def check_upstream(value: str) -> str:
    """``host:port`` (IPv6 in brackets), port 1-65535."""
    m = _UPSTREAM.match(value)
    if m is None or not 0 < int(m.group("port")) <= 65535:
        raise ValueError("must be host:port with a port from 1 to 65535")
    host = m.group("host")
    if host.startswith("["):
        ipaddress.IPv6Address(host[1:-1])
    return value


class RouteConfig(KindConfig):
    """Config of ``proxy.route``."""

    server: str = config_field(
        ...,
        replace_on_change=True,
        min_length=1,
        description="The proxy's admin URL (unix:///…/admin.sock, proxy.local_server's admin_url).",
    )
    host: str = config_field(..., description="The host name requests must carry.")
    path: str = config_field("/", description="The path prefix (/ for every path).")
    upstream: str = config_field(..., description="Where to send the requests: host:port.")

    @pydantic.field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @pydantic.field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)

    @pydantic.field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return check_upstream(value)


def route_json(route_id: str, label: str, cfg: RouteConfig) -> dict[str, Any]:
    """The Caddy route of ``cfg``: host (and path prefix) matched, label first, then the proxy."""
    match: dict[str, Any] = {"host": [cfg.host]}
    if cfg.path != "/":
        match["path"] = [cfg.path, f"{cfg.path}/*"]
    return {
        "@id": route_id,
        "match": [match],
        "handle": [
            {"handler": "vars", LABEL_VAR: label},
            {"handler": "reverse_proxy", "upstreams": [{"dial": cfg.upstream}]},
        ],
        "terminal": True,
    }


def _label(route: Mapping[str, Any]) -> str | None:
    handle = route.get("handle")
    if isinstance(handle, list) and handle and isinstance(handle[0], Mapping):
        first = handle[0]
        if first.get("handler") == "vars" and isinstance(first.get(LABEL_VAR), str):
            return str(first[LABEL_VAR])
    return None


def _described(route: Mapping[str, Any]) -> dict[str, str]:
    """host, path and upstream as a route of ours reads (empty strings where it differs)."""
    out = {"host": "", "path": "/", "upstream": ""}
    match = route.get("match")
    if isinstance(match, list) and match and isinstance(match[0], Mapping):
        hosts = match[0].get("host")
        if isinstance(hosts, list) and hosts:
            out["host"] = str(hosts[0])
        paths = match[0].get("path")
        if isinstance(paths, list) and paths:
            out["path"] = str(paths[0])
    for handler in route.get("handle") or []:
        if isinstance(handler, Mapping) and handler.get("handler") == "reverse_proxy":
            ups = handler.get("upstreams")
            if isinstance(ups, list) and ups and isinstance(ups[0], Mapping):
                out["upstream"] = str(ups[0].get("dial", ""))
    return out


def _order(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Longest path first (stable), the fallback last."""
    body = [r for r in routes if r.get("@id") != FALLBACK_ID]
    fallback = [r for r in routes if r.get("@id") == FALLBACK_ID]
    body.sort(key=lambda r: -len(_described(r)["path"]) if _described(r)["path"] != "/" else 0)
    return [*body, *fallback]


def _refuse(meta: ResourceMeta, name: str, why: str) -> NoReturn:
    raise ForeignObjectError(
        f"The proxy route {name!r} exists and is not managed by this environment ({why})",
        address=meta.address,
        hint="It is not this installation's: remove it from the proxy, or choose another name.",
    )


def _ownership(meta: ResourceMeta, name: str, label: str | None) -> tuple[bool, str]:
    if label == meta.label:
        return True, ""
    if not label:
        return False, f"{name!r} exists without a stackyard label"
    return False, f"{name!r} is labelled {label!r}, not {meta.label!r}"


class RouteKind:
    """``proxy.route``: outputs host, path, upstream and url (the proxy's, for this route)."""

    name: ClassVar[str] = "proxy.route"
    config_model: ClassVar[type[KindConfig]] = RouteConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NamingRule(max_length=63, allowed="a-z0-9", separator="-")

    def _cfg(self, meta: ResourceMeta, config: Mapping[str, Any]) -> tuple[RouteConfig, Path]:
        try:
            cfg = RouteConfig.model_validate(dict(config))
        except pydantic.ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise ProviderPermanentError(
                f"proxy.route: invalid config ({fields})", address=meta.address
            ) from None
        return cfg, admin.socket_of(cfg.server, meta.address)

    def _route_id(self, meta: ResourceMeta) -> str:
        if not _LABEL_RE.match(meta.physical_name):
            raise ProviderPermanentError(
                "proxy.route: the physical name is not a valid route id", address=meta.address
            )
        return meta.physical_name

    @staticmethod
    def _outputs(cfg: RouteConfig) -> dict[str, Any]:
        return {"host": cfg.host, "path": cfg.path, "upstream": cfg.upstream}

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the route by its id (one GET); no writes. ``managed`` only with our label;
        a changed host, path or upstream is drift (observed config differs)."""
        cfg, sock = self._cfg(req.meta, req.config)
        route_id = self._route_id(req.meta)
        with admin.provider_errors(req.meta.address):
            try:
                found = admin.request(sock, "GET", f"/id/{route_id}")
            except admin.AdminError as exc:
                if exc.status == 404:
                    return None
                raise
        if not isinstance(found, Mapping):
            return None
        managed, why = _ownership(req.meta, route_id, _label(found))
        seen = _described(found)
        return Observed(
            config={"server": cfg.server, **seen},
            outputs={**seen},
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Add the route (or converge ours to the config), keeping the list ordered. A foreign
        route with our id, or another owner's route for the same host and path, is refused
        before any write. Safe to repeat."""
        return self._converge(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Rewrite the route in place (host, path, upstream). Safe to repeat."""
        return self._converge(req.meta, req.config)

    def _converge(self, meta: ResourceMeta, config: Mapping[str, Any]) -> Applied:
        cfg, sock = self._cfg(meta, config)
        route_id = self._route_id(meta)
        wanted = route_json(route_id, meta.label, cfg)
        with admin.provider_errors(meta.address), admin.locked(sock):
            routes = admin.request(sock, "GET", ROUTES) or []
            if not isinstance(routes, list):
                raise ProviderPermanentError(
                    "proxy.route: the proxy's route list is not a list", address=meta.address
                )
            kept: list[dict[str, Any]] = []
            for r in routes:
                if not isinstance(r, dict):
                    continue
                if r.get("@id") == route_id:
                    managed, why = _ownership(meta, route_id, _label(r))
                    if not managed:
                        _refuse(meta, route_id, why)
                    continue
                seen = _described(r)
                if r.get("@id") != FALLBACK_ID and (seen["host"], seen["path"]) == (
                    cfg.host,
                    cfg.path,
                ):
                    raise ProviderPermanentError(
                        f"proxy.route: {cfg.host}{cfg.path} is already routed by "
                        f"{r.get('@id')!r} ({_label(r) or 'unlabelled'})",
                        address=meta.address,
                        hint="Give this route another host or path, or remove the other one.",
                    )
                kept.append(r)
            if not any(r.get("@id") == FALLBACK_ID for r in kept):
                from stackyard.providers.proxy.server import fallback_route

                kept.append(fallback_route())
            ordered = _order([*kept, wanted])
            if ordered != routes:
                admin.request(sock, "PATCH", ROUTES, ordered)
        return Applied(self._outputs(cfg), physical_id=route_id)

    def delete(self, req: DeleteRequest) -> None:
        """Remove the route (one DELETE by id). Missing: success; foreign: refused. Safe to
        repeat."""
        _, sock = self._cfg(req.meta, req.config)
        route_id = self._route_id(req.meta)
        with admin.provider_errors(req.meta.address), admin.locked(sock):
            try:
                found = admin.request(sock, "GET", f"/id/{route_id}")
            except admin.AdminError as exc:
                if exc.status == 404:
                    return
                raise
            if isinstance(found, Mapping):
                managed, why = _ownership(req.meta, route_id, _label(found))
                if not managed:
                    _refuse(req.meta, route_id, why)
            admin.request(sock, "DELETE", f"/id/{route_id}")

    # -- Sweepable ---------------------------------------------------------------------------

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The proxy's admin URL."""
        return str(config.get("server", ""))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """The proxy's routes whose label starts with ``prefix`` (one GET of the list)."""
        server = str(config.get("server", ""))
        sock = admin.socket_of(server, "proxy.route")
        with admin.provider_errors("proxy.route"):
            routes = admin.request(sock, "GET", ROUTES) or []
        out: list[Labelled] = []
        for r in routes if isinstance(routes, list) else []:
            label = _label(r) if isinstance(r, Mapping) else None
            if label is None or not label.startswith(prefix):
                continue
            out.append(
                Labelled(
                    physical_name=str(r.get("@id", "")),
                    label=label,
                    config={"server": server, **_described(r)},
                )
            )
            if len(out) >= limit:
                break
        return out
