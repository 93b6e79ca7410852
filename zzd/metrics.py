"""Prometheus metrics, one registry per server process object (no module globals,
so two servers in one test process do not share counters)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zzd.http.contract import operation

__all__ = ["Metrics", "routes"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("zzd_ws_connections", "Open authenticated WebSocket connections", registry=r)
        self.frames = Counter("zzd_ws_frames_total", "Client frames handled", ["type", "outcome"], registry=r)
        self._frame_counts: dict[tuple[str, str], Any] = {}
        self.send_seconds = Histogram(
            "zzd_send_commit_seconds",
            "From receiving a send to its committed acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.closes = Counter("zzd_ws_closes_total", "Connections closed by the server", ["code"], registry=r)
        self.catch_ups = Counter("zzd_catch_ups_total", "Gap repairs read from the database", registry=r)
        #: Handshakes refused before the upgrade: 503 (``busy``: hellos pending; ``full``: the connection
        #: cap; ``draining``) or 401 (``unauthorized``: a bad token in the ``Authorization`` header).
        self.ws_refused = Counter(
            "zzd_ws_refused_total",
            "WebSocket handshakes refused before the upgrade (503 or 401)",
            ["reason"],
            registry=r,
        )
        # Closed loop (issue 6): seconds from a task's creation to its acceptance, resolution, closing.
        loop_buckets = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800)
        self.task_seconds = {
            m: Histogram(
                f"zzd_task_{m}_seconds",
                f"Seconds from a task's creation until it was {done}",
                ["category"],
                buckets=loop_buckets,
                registry=r,
            )
            for m, done in (("accept", "accepted"), ("resolve", "resolved"), ("close", "closed"))
        }  # fmt: skip
        self.task_timers = Counter(
            "zzd_task_timers_total", "Task deadline timers run by this process", ["kind", "status"], registry=r
        )
        # Per route (the template, not the URL: bounded label values), method and status.
        self.http_requests = Counter(
            "zzd_http_requests_total", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "zzd_http_request_seconds",
            "From a request's arrival to its answer",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.notice_frames = Counter(
            "zzd_notice_deliveries_total",
            "Notice events (notice.new, notice.remind) written to open sockets: each records 'delivered'",
            registry=r,
        )

    def frame(self, type_: str, outcome: str) -> None:
        """Count one handled client frame (the labelled child looked up once, not per frame)."""
        child = self._frame_counts.get((type_, outcome))
        if child is None:
            child = self._frame_counts[(type_, outcome)] = self.frames.labels(type_, outcome)
        child.inc()

    def observe_task(self, measure: str, category: str, seconds: float) -> None:
        """A closed-loop duration (``messaging.tasks.service.Observe``)."""
        self.task_seconds[measure].labels(category=category).observe(seconds)

    def counter_fn(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        """Expose a count owned elsewhere as a counter (``name`` gets the ``_total`` suffix)."""
        self.registry.register(_CountOf(name, doc, fn))

    def gauge_fn(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        """Expose a value owned elsewhere (e.g. publisher counters) without copying it."""
        Gauge(name, doc, registry=self.registry).set_function(fn)


class _CountOf(Collector):
    def __init__(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        self._name, self._doc, self._fn = name, doc, fn

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._doc, value=self._fn())


_METRICS_DOC = {
    "responses": {
        "200": {
            "description": "Prometheus text format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
}


@operation({200: None}, public=True, extra=_METRICS_DOC, tag="meta")
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics of this process."""
    metrics: Metrics = request.app.state.services.metrics
    return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
