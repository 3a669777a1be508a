"""Prometheus metrics, aggregated over all gunicorn workers.

prometheus_client's multiprocess mode keeps each process's samples in files
under PROMETHEUS_MULTIPROC_DIR; gunicorn_conf.py sets that directory up before
any worker imports this module, and the /metrics handler merges the files.
Outside gunicorn (unit tests) the default in-process registry is used.
"""
from __future__ import annotations

import os
import time

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY
from prometheus_client import multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("falconproc_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram("falconproc_http_request_duration_seconds", "Time to answer, by route", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
UPLOADS = Counter("falconproc_uploads_total", "Uploads stored", ["result"])
UPLOAD_BYTES = Counter("falconproc_upload_bytes_total", "Bytes of new content stored")


class MetricsMiddleware:
    """Counts and times every request by its route template (bounded label values)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        route = req.uri_template or "unmatched"
        REQUESTS.labels(req.method, route, resp.status[:3] if isinstance(resp.status, str) else str(resp.status)).inc()
        started = getattr(req.context, "started", None)
        if started is not None:
            LATENCY.labels(req.method, route).observe(time.perf_counter() - started)


def record_upload(size: int, is_new: bool) -> None:
    UPLOADS.labels("new" if is_new else "duplicate").inc()
    if is_new:
        UPLOAD_BYTES.inc(size)


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)
