"""Prometheus metrics, aggregated over all gunicorn workers.

prometheus_client's multiprocess mode keeps each process's samples in files
under PROMETHEUS_MULTIPROC_DIR; gunicorn_conf.py sets that directory up before
any worker imports this module, and the /metrics handler merges the files.
Outside gunicorn (unit tests) the default in-process registry is used.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import falcon
import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY
from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.core import GaugeMetricFamily

from falconproc.observability.runtime import service_root_pid

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("falconproc_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram("falconproc_http_request_duration_seconds", "Time to answer, by route", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
UPLOADS = Counter("falconproc_uploads_total", "Uploads stored", ["result"])
UPLOAD_BYTES = Counter("falconproc_upload_bytes_total", "Bytes of new content stored")
SCANS = Counter("falconproc_scans_total", "Virus scans recorded, by how the bytes reached clamd "
                "(upload: streamed while the body arrived; job: the scan job)", ["via", "status"])
JOBS = Counter("falconproc_jobs_total", "Job attempts by outcome", ["type", "outcome"])
JOB_SECONDS = Histogram("falconproc_job_duration_seconds", "Wall time of job attempts", ["type"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))


# livesum: a worker that died takes its in-flight count with it (mark_process_dead).
IN_FLIGHT = Gauge("falconproc_http_requests_in_flight", "Requests being handled, over all web workers",
                  multiprocess_mode="livesum")

# The queue's states (JobQueue.stats keys) by the names GET /jobs uses: "failed" there
# means waiting for a retry, so the dead-lettered jobs are "dead" here too.
QUEUE_STATE_NAMES = {"pending": "pending", "processing": "running", "failed": "dead", "done": "done"}


class MetricsMiddleware:
    """Counts and times every request by its route template (bounded label values)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        IN_FLIGHT.inc()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        if getattr(req.context, "started", None) is not None:
            IN_FLIGHT.dec()
        route = req.uri_template or "unmatched"
        REQUESTS.labels(req.method, route, resp.status[:3] if isinstance(resp.status, str) else str(resp.status)).inc()
        started = getattr(req.context, "started", None)
        if started is not None:
            LATENCY.labels(req.method, route).observe(time.perf_counter() - started)


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
                                  "Jobs by state: pending (queued or waiting for a retry), running, dead "
                                  "(dead-lettered), done", labels=["state"])
        for state, count in self.queue_stats().items():
            queue.add_metric([QUEUE_STATE_NAMES.get(state, state)], count)
        yield queue
        if self.oldest_pending is not None:
            age = GaugeMetricFamily("falconproc_queue_oldest_pending_age_seconds",
                                    "Age of the oldest pending job, by job type", labels=["type"])
            now = time.time()
            for job_type, enqueued_at in sorted(self.oldest_pending().items()):
                age.add_metric([job_type], max(0.0, now - enqueued_at))
            yield age
        yield from process_metrics()
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


_FOLD_LOCK = ".fold.lock"
_FOLDED_TYPES = ("counter", "histogram")


@contextmanager
def _fold_lock(directory: str, exclusive: bool) -> Iterator[None]:
    """Scrapes read under a shared lock, a fold writes under an exclusive one: no scrape
    sees a dead worker's samples both in its file and in the archive, or in neither."""
    fd = os.open(os.path.join(directory, _FOLD_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def fold_dead_process(pid: int, directory: str) -> int:
    """After a web worker died: its live gauges go (prometheus_client's
    mark_process_dead) and its counter and histogram samples are added into one archive
    file per type, so that totals stay monotonic while the files of recycled workers
    do not pile up under METRICS_DIR. Returns how many files were folded."""
    multiprocess.mark_process_dead(pid, directory)
    folded = 0
    with _fold_lock(directory, exclusive=True):
        for typ in _FOLDED_TYPES:
            source = os.path.join(directory, f"{typ}_{pid}.db")
            if not os.path.exists(source):
                continue
            archive = MmapedDict(os.path.join(directory, f"{typ}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(source):
                    old, _ = archive.read_value(key)
                    archive.write_value(key, old + value, timestamp)
            finally:
                archive.close()
            os.remove(source)
            folded += 1
    return folded


class MetricsResource:
    def __init__(self, state: ServiceStateCollector | None = None):
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        registry = CollectorRegistry()
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            multiprocess.MultiProcessCollector(registry, directory)
            with _fold_lock(directory, exclusive=False):
                output = generate_latest(registry)
        else:
            output = generate_latest(REGISTRY)
        if self.state is not None:
            state_registry = CollectorRegistry()
            state_registry.register(self.state)
            output += generate_latest(state_registry)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = output
