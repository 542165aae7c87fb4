"""Metrics: ``GET /metrics`` in the Prometheus text format, ``GET /api/v1/metrics`` as JSON
(what ``stackyard metrics -o json`` prints), and the request-latency middleware.

The figures (``stackyard.ops.metrics``) are read from the state store at each scrape, by a
custom collector on a fresh registry; only the request-latency histogram lives between
scrapes, in the app's own registry (one per server process). A scrape needs a token whose
user may ``view`` the organisation; ``STACKYARD_METRICS_PUBLIC=1`` lets a scrape without
any ``Authorization`` header read them too (a header that is sent is still checked).

``prometheus_client`` is imported here only inside functions: the server's extra, never on
a CLI path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackyard.api.routing import BEARER, yard
from stackyard.api.schemas import Document
from stackyard.errors import InvalidInputError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import Metric

    from stackyard.identity import Identity
    from stackyard.ops.metrics import Metrics

router = APIRouter(tags=["metrics"])

#: Set to 1 on the server to let scrapes without a credential read the metrics.
PUBLIC_ENV = "STACKYARD_METRICS_PUBLIC"
#: The Prometheus text format, version 0.0.4.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Window = Annotated[
    str,
    Query(
        max_length=12,
        pattern=r"^(\d+d)?(\d+h)?(\d+m)?$",
        description="The DORA window: 30d, 12h, 1d12h.",
    ),
]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def public() -> bool:
    """Whether scrapes without a credential are let in (``STACKYARD_METRICS_PUBLIC=1``)."""
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


async def _figures(request: Request, window: str) -> Metrics:
    """The figures for the caller: authenticated (``view`` on the organisation), or anonymous
    when the server allows it and no credential was sent."""
    from stackyard.identity import Identity
    from stackyard.model.platform import parse_duration
    from stackyard.ops import metrics

    try:
        window_s = parse_duration(window)
    except ValueError as exc:
        raise InvalidInputError(str(exc), hint="Use a window such as 30d, 12h or 1d12h.") from None
    y = yard(request)
    header = request.headers.get("authorization")
    if header is None and public():
        anonymous = Identity(user="metrics-scrape", teams=(), via="anonymous")
        return await y.call(anonymous, lambda ws: metrics.figures(ws, window_s=window_s))
    client = request.client.host if request.client else ""
    who: Identity = await y.bounded(lambda: y.authenticator.authenticate(header, client=client))
    return await y.call(who, lambda ws: metrics.collect(ws, window_s=window_s))


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The Prometheus text exposition format (0.0.4).",
        }
    },
    summary="Prometheus metrics",
)
async def prometheus(request: Request, _bearer: Bearer = None, window: Window = "30d") -> Response:
    """DORA, the platform and the service itself, for Prometheus to scrape (docs/metrics.md)."""
    figures = await _figures(request, window)
    latency = getattr(request.app.state, "request_latency", None)
    cache = getattr(request.app.state, "read_cache_counter", None)
    return Response(exposition(figures, latency, cache), media_type=TEXT_FORMAT)


@router.get(
    "/api/v1/metrics",
    response_model=Document,
    tags=["metrics"],
    summary="The metrics as JSON",
)
async def metrics_json(request: Request, _bearer: Bearer = None, window: Window = "30d") -> Any:
    """The figures of ``/metrics`` as a document (``stackyard metrics -o json``)."""
    figures = await _figures(request, window)
    return figures.to_json()


# -- the Prometheus rendering ---------------------------------------------------------------


def exposition(
    figures: Metrics, latency: Histogram | None = None, cache: Counter | None = None
) -> bytes:
    """``figures`` (and the request latency and the read cache's answers) in the Prometheus
    text format, from a registry made for this scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Figures(figures))
    for own in (latency, cache):
        if own is not None:
            registry.register(own)
    return bytes(generate_latest(registry))


class Figures:
    """A Prometheus collector of one ``Metrics`` (read once per scrape)."""

    def __init__(self, figures: Metrics) -> None:
        self.figures = figures

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on what the store holds."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.figures

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"stackyard_{name}", doc, labels=list(labels))

        deployments = CounterMetricFamily(
            "stackyard_deployments",
            "Deployments recorded, by outcome (status) and environment type.",
            labels=["outcome", "env_type"],
        )
        for (outcome, env_type), n in sorted(m.deployments.items()):
            deployments.add_metric([outcome, env_type], n)
        yield deployments

        yield _one(gauge("dora_window_seconds", "The window the DORA figures cover."), m.window_s)
        per = ("team", "workload")
        frequency = gauge(
            "dora_deployment_frequency_per_day",
            "Succeeded production deployments per day of the window.",
            per,
        )
        lead = gauge(
            "dora_lead_time_seconds",
            "Median time from a release's creation to its success in production.",
            per,
        )
        failure = gauge(
            "dora_change_failure_ratio",
            "Failed production deployments over all finished ones in the window.",
            per,
        )
        restore = gauge(
            "dora_time_to_restore_seconds",
            "Median time from a failed production deployment to the next succeeded one.",
            per,
        )
        for d in m.dora:
            key = [d.team, d.workload]
            frequency.add_metric(key, d.frequency_per_day)
            if d.lead_time_s is not None:
                lead.add_metric(key, d.lead_time_s)
            if d.change_failure_ratio is not None:
                failure.add_metric(key, d.change_failure_ratio)
            if d.time_to_restore_s is not None:
                restore.add_metric(key, d.time_to_restore_s)
        yield from (frequency, lead, failure, restore)

        envs = gauge("environments", "Environments by type and status.", ("type", "status"))
        for (env_type, status), n in sorted(m.environments.items()):
            envs.add_metric([env_type, status], n)
        yield envs
        for name, doc, h in (
            (
                "ephemeral_environment_lifetime_seconds",
                "Ephemeral environments' lifetimes, creation to destruction.",
                m.ephemeral_lifetime,
            ),
            (
                "ephemeral_environment_ready_seconds",
                "Ephemeral environments' time from creation to ready.",
                m.ephemeral_ready,
            ),
        ):
            buckets = [(_le(b), float(c)) for b, c in zip(h.buckets, h.counts, strict=True)]
            buckets.append(("+Inf", float(h.count)))
            yield HistogramMetricFamily(f"stackyard_{name}", doc, buckets=buckets, sum_value=h.sum)

        denies = CounterMetricFamily(
            "stackyard_policy_denies", "Policy decisions that denied, by stage.", labels=["stage"]
        )
        for stage, n in sorted(m.policy_denies.items()):
            denies.add_metric([stage], n)
        yield denies
        yield _one(
            gauge("approvals_waiting", "Deployments awaiting an approval."), m.approvals_waiting
        )
        drift = gauge(
            "drift_findings",
            "Drift findings of each live environment's newest completed scan.",
            ("env_type",),
        )
        for env_type, n in sorted(m.drift_findings.items()):
            drift.add_metric([env_type], n)
        yield drift
        adoption = gauge(
            "component_instances",
            "Component instances in live environments, by component and version.",
            ("component", "version"),
        )
        for (component, version), n in sorted(m.component_instances.items()):
            adoption.add_metric([component, version], n)
        yield adoption
        cost = gauge(
            "cost_monthly",
            "Declared monthly cost of live environments, by owner team and environment.",
            ("team", "env", "currency"),
        )
        for (team, env, currency), amount in sorted(m.cost.items()):
            cost.add_metric([team, env, currency], float(amount))
        yield cost

        jobs = gauge("jobs", "Jobs by status.", ("status",))
        for status, n in sorted(m.jobs.items()):
            jobs.add_metric([status], n)
        yield jobs
        yield _one(
            gauge("job_oldest_queued_age_seconds", "Age of the oldest queued job."),
            m.job_oldest_queued_age_s,
        )
        yield _one(gauge("workers", "Workers seen running jobs in the last minute."), m.workers)

        if m.slo:
            slo = ("env", "target", "component")
            availability = gauge(
                "slo_availability_ratio", "Measured availability over the SLO window.", slo
            )
            budget = gauge(
                "slo_error_budget_remaining_ratio", "Error budget left (1: all of it).", slo
            )
            for s in m.slo:
                key = [str(s["env"]), str(s["target"]), str(s["component"])]
                availability.add_metric(key, float(s["availability_ratio"]))
                if s.get("error_budget_remaining_ratio") is not None:
                    budget.add_metric(key, float(s["error_budget_remaining_ratio"]))
            yield from (availability, budget)


def _one(family: Any, value: float) -> Any:
    family.add_metric([], value)
    return family


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


# -- request latency ------------------------------------------------------------------------


def instrument(app: FastAPI) -> None:
    """Time every HTTP request of ``app`` (``stackyard_http_request_duration_seconds``): the
    histogram in ``app.state.request_latency``, the outermost middleware filling it."""
    from prometheus_client import CollectorRegistry, Histogram

    own: CollectorRegistry = CollectorRegistry(auto_describe=True)
    histogram = Histogram(
        "stackyard_http_request_duration_seconds",
        "HTTP requests' duration, by method, route template and status.",
        ["method", "route", "status"],
        registry=own,
    )
    app.state.request_latency = histogram
    app.add_middleware(RequestLatency, histogram=histogram)


class RequestLatency:
    """Observes each HTTP request's duration, labelled by the route's template (never the
    raw path: an unmatched request is ``(unmatched)``). Event streams are left out: their
    duration is how long a client watched."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, timing it to the end of its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "stream": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        seen["stream"] = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not seen["stream"]:
                method = str(scope.get("method", "")).upper()
                route = getattr(scope.get("route"), "path", None)
                self.histogram.labels(
                    method if method in _METHODS else "OTHER",
                    route if isinstance(route, str) and route else "(unmatched)",
                    str(seen["status"]),
                ).observe(time.perf_counter() - start)
