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
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("falconproc_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram("falconproc_http_request_duration_seconds", "Time to answer, by route", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
UPLOADS = Counter("falconproc_uploads_total", "Uploads stored", ["result"])
UPLOAD_BYTES = Counter("falconproc_upload_bytes_total", "Bytes of new content stored")
JOBS = Counter("falconproc_jobs_total", "Job attempts by outcome", ["type", "outcome"])
JOB_SECONDS = Histogram("falconproc_job_duration_seconds", "Wall time of job attempts", ["type"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))


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


class ServiceStateCollector:
    """Gauges read at scrape time: queue depth by state, memory of the process tree, storage."""

    def __init__(self, queue_stats, governor, store):
        self.queue_stats = queue_stats
        self.governor = governor
        self.store = store

    def collect(self):
        queue = GaugeMetricFamily("falconproc_queue_jobs", "Jobs by queue state", labels=["state"])
        for state, count in self.queue_stats().items():
            queue.add_metric([state], count)
        yield queue
        reading = self.governor.reading()
        yield GaugeMetricFamily("falconproc_memory_used_bytes",
                                "Memory of the service process tree (in a cgroup v2: its working set)",
                                value=reading.used)
        yield GaugeMetricFamily("falconproc_memory_limit_bytes",
                                "MEMORY_LIMIT_BYTES, or the cgroup's memory.max when smaller",
                                value=self.governor.limit_of(reading))
        try:
            files, total = self.store.usage()
        except Exception:  # a remote store that does not answer: /health says why; skip the figures
            files = total = None
        if files is not None:
            yield GaugeMetricFamily("falconproc_stored_files", "Originals in the store", value=files)
            yield GaugeMetricFamily("falconproc_stored_bytes", "Bytes of originals in the store", value=total)
        yield GaugeMetricFamily("falconproc_storage_available_bytes", "Free space for the store",
                                value=self.store.free_space())


class MetricsResource:
    def __init__(self, state: ServiceStateCollector | None = None):
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        registry = CollectorRegistry()
        if os.environ.get(MULTIPROC_ENV):
            multiprocess.MultiProcessCollector(registry)
            output = generate_latest(registry)
        else:
            output = generate_latest(REGISTRY)
        if self.state is not None:
            state_registry = CollectorRegistry()
            state_registry.register(self.state)
            output += generate_latest(state_registry)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = output
