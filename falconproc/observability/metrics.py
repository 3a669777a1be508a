"""Prometheus metrics, aggregated over all gunicorn workers.

prometheus_client's multiprocess mode keeps each process's samples in files
under PROMETHEUS_MULTIPROC_DIR; gunicorn_conf.py sets that directory up before
any worker imports this module, and the /metrics handler merges the files.
Outside gunicorn (unit tests) the default in-process registry is used.
"""
from __future__ import annotations

import bisect
import os
import threading
import time

import falcon
import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily

from falconproc.observability.metrics_dir import fold_lock, run_directory
from falconproc.observability.runtime import service_root_pid
from falconproc.queue import QueueUnavailable

REQUESTS = Counter("falconproc_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY = Histogram("falconproc_http_request_duration_seconds", "Time to answer, by route", ["method", "route"],
                    buckets=LATENCY_BUCKETS)
UPLOADS = Counter("falconproc_uploads_total", "Uploads stored", ["result"])
UPLOAD_BYTES = Counter("falconproc_upload_bytes_total", "Bytes of new content stored")
SCANS = Counter("falconproc_scans_total", "Virus scans recorded, by how the bytes reached clamd "
                "(upload: streamed while the body arrived; job: the scan job)", ["via", "status"])
JOBS = Counter("falconproc_jobs_total", "Job attempts by outcome", ["type", "outcome"])
# Video posters by how they were chosen (key_frames, all_frames: the key frames were blank,
# dark: every frame was) or why there is none (error_corrupt, error_timeout, ...).
VIDEO_POSTERS = Counter("falconproc_video_posters_total", "Video poster frames made, by method or error",
                        ["result"])
JOB_SECONDS = Histogram("falconproc_job_duration_seconds", "Wall time of job attempts", ["type"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))


# livesum: a worker that died takes its in-flight count with it (mark_process_dead).
IN_FLIGHT = Gauge("falconproc_http_requests_in_flight", "Requests being handled, over all web workers",
                  multiprocess_mode="livesum")

class RequestTally:
    """This process's request counts, latencies and in-flight count, summed in plain
    dicts and written to prometheus_client's samples by ``flush()``: every
    FLUSH_SECONDS from a daemon thread, before this process answers /metrics, and when a
    worker exits. In multiprocess mode every sample write is a locked mmap update, five
    per request done one by one (a tenth of a cached read's time); summed, a request
    costs one dict update. A SIGKILLed worker loses at most FLUSH_SECONDS of counts."""

    FLUSH_SECONDS = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], list] = {}  # -> [sum, per-bucket counts]
        self._in_flight = 0
        self._flusher_pid: int | None = None
        # LATENCY's bounds, +Inf last: bucket i counts amounts <= bounds[i] (> bounds[i-1])
        self._bounds = [float(b) for b in LATENCY_BUCKETS] + [float("inf")]

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1
        if self._flusher_pid != os.getpid():  # first request of this (forked) process
            self._start_flusher()

    def finished(self, method: str, route: str, status: str, seconds: float | None) -> None:
        with self._lock:
            if seconds is not None:
                self._in_flight -= 1
            key = (method, route, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            if seconds is not None:
                entry = self._latency.get((method, route))
                if entry is None:
                    entry = self._latency[(method, route)] = [0.0, [0] * len(self._bounds)]
                entry[0] += seconds
                entry[1][bisect.bisect_left(self._bounds, seconds)] += 1

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            latency, self._latency = self._latency, {}
            in_flight = self._in_flight
        for labels, count in counts.items():
            REQUESTS.labels(*labels).inc(count)
        for labels, (total, buckets) in latency.items():
            child = LATENCY.labels(*labels)
            # Histogram.observe() one amount at a time would be n writes; its two kinds
            # of samples (the sum and one counter per bucket) take the sums at once.
            child._sum.inc(total)
            for index, count in enumerate(buckets):
                if count:
                    child._buckets[index].inc(count)
        IN_FLIGHT.set(in_flight)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()

        def run() -> None:
            while True:
                time.sleep(self.FLUSH_SECONDS)
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - metrics must never take a worker down
                    pass

        threading.Thread(target=run, name="falconproc-metrics-flush", daemon=True).start()


TALLY = RequestTally()


class MetricsMiddleware:
    """Counts and times every request by its route template (bounded label values)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        TALLY.started()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        status = resp.status[:3] if isinstance(resp.status, str) else str(resp.status)
        TALLY.finished(req.method, req.uri_template or "unmatched", status,
                       None if started is None else time.perf_counter() - started)


def record_upload(size: int, is_new: bool) -> None:
    UPLOADS.labels("new" if is_new else "duplicate").inc()
    if is_new:
        UPLOAD_BYTES.inc(size)


def record_scan(via: str, status: str) -> None:
    SCANS.labels(via, status).inc()


class ServiceStateCollector:
    """Gauges read at scrape time: queue depth by state, memory of the process tree, storage."""

    def __init__(self, queue_stats, governor, store, oldest_pending=None):
        self.queue_stats = queue_stats
        self.governor = governor
        self.store = store
        self.oldest_pending = oldest_pending

    def collect(self):
        yield build_info()
        queue = GaugeMetricFamily("falconproc_queue_jobs",
                                  "Jobs by state, as GET /jobs names them: queued, running, retrying "
                                  "(waiting for a retry after a failed attempt), done, dead (dead-lettered)",
                                  labels=["state"])
        try:
            for state, count in self.queue_stats().items():
                queue.add_metric([state], count)
            yield queue
        except QueueUnavailable:  # Redis down: /health says so; no figures rather than a failed scrape
            pass
        if self.oldest_pending is not None:
            age = GaugeMetricFamily("falconproc_queue_oldest_pending_age_seconds",
                                    "Age of the oldest pending job, by job type", labels=["type"])
            now = time.time()
            try:
                for job_type, enqueued_at in sorted(self.oldest_pending().items()):
                    age.add_metric([job_type], max(0.0, now - enqueued_at))
                yield age
            except QueueUnavailable:
                pass
        yield from process_metrics()
        reading = self.governor.pressure_reading()  # as /health shows it
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


def build_info() -> GaugeMetricFamily:
    import sys

    from falconproc import __version__
    from falconproc.native import ingest

    info = GaugeMetricFamily("falconproc_build_info", "Always 1; the labels say what runs",
                             labels=["version", "implementation", "python"])
    info.add_metric([__version__, ingest.IMPLEMENTATION, sys.version.split()[0]], 1)
    return info


def _role(proc: psutil.Process, root: int) -> str:
    """master (gunicorn's), web (its workers), supervisor (the job supervisor, its other
    child), job (anything below: job processes, tesseract)."""
    if proc.pid == root:
        return "master"
    try:
        if proc.ppid() != root:
            return "job"
        return "supervisor" if "worker" in proc.cmdline()[3:4] else "web"
    except psutil.Error:
        return "job"


def process_metrics():
    """RSS, CPU seconds and open descriptors of every process of the service's tree,
    read at scrape time (nothing is stored per process, so dead ones leave nothing)."""
    root = service_root_pid()
    rss = GaugeMetricFamily("falconproc_process_resident_memory_bytes", "RSS per process of the service",
                            labels=["pid", "role"])
    cpu = GaugeMetricFamily("falconproc_process_cpu_seconds", "CPU seconds (user + system) per process",
                            labels=["pid", "role"])
    fds = GaugeMetricFamily("falconproc_process_open_fds", "Open file descriptors per process",
                            labels=["pid", "role"])
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        procs = []
    for proc in procs:
        try:
            with proc.oneshot():
                labels = [str(proc.pid), _role(proc, root)]
                times = proc.cpu_times()
                rss.add_metric(labels, proc.memory_info().rss)
                cpu.add_metric(labels, times.user + times.system)
                fds.add_metric(labels, proc.num_fds())
        except psutil.Error:
            continue  # exited meanwhile
    yield from (rss, cpu, fds)


class MetricsResource:
    def __init__(self, state: ServiceStateCollector | None = None):
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        TALLY.flush()  # this process's requests so far (the others' are at most FLUSH_SECONDS old)
        registry = CollectorRegistry()
        directory = run_directory()
        if directory:
            multiprocess.MultiProcessCollector(registry, directory)
            with fold_lock(directory, exclusive=False):
                output = generate_latest(registry)
        else:
            output = generate_latest(REGISTRY)
        if self.state is not None:
            state_registry = CollectorRegistry()
            state_registry.register(self.state)
            output += generate_latest(state_registry)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = output
