"""``falconproc bench``: load any falconproc instance (a local one, the deployed container)
with a mix of uploads, preset reads and text polls.

Closed loop by default (``--concurrency`` clients, each sending its next request when the
last one is answered); ``--rate N`` switches to an open loop (N arrivals per second
whatever the answers, latency counted from the scheduled start so a slow server is not
hidden by clients that wait for it). A progress line every second, a final table, and in
``--out``: ``bench-<time>.json`` (every sample) and ``bench-<time>.png`` (latency over time,
throughput, status mix, and the service's memory from ``/health`` when reachable).

Only the standard library talks HTTP (one keep-alive connection per client thread);
matplotlib draws the chart (the ``bench`` extra).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

OPERATIONS = ("upload", "preset", "text")


@dataclass
class Sample:
    at: float  # seconds since the start (the scheduled start in open loop)
    op: str
    status: int  # 0: connection error
    latency: float


def parse_mix(raw: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, _, weight = item.partition("=")
        if name not in OPERATIONS:
            raise argparse.ArgumentTypeError(f"unknown operation {name!r} (one of {', '.join(OPERATIONS)})")
        try:
            mix[name] = float(weight or 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {item!r}") from None
    if not mix or sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("the mix needs a positive weight")
    return mix


BACK_PRESSURE = (429, 503)


def is_error(status: int) -> bool:
    """Connection errors, 5xx and 4xx. 429 and 503 are the service's back-pressure (they
    carry Retry-After: the client is told when to come back), shown in the status mix."""
    return status == 0 or (status >= 400 and status not in BACK_PRESSURE)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Corpus:
    """Files to upload: those of ``--corpus`` (made unique by trailing bytes, which
    image decoders and text extractors ignore), or generated text and PNGs."""

    def __init__(self, directory: Path | None):
        self.files = [p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()] if directory else []
        if directory and not self.files:
            raise SystemExit(f"falconproc bench: no files under {directory}")

    def pick(self, rng: random.Random) -> tuple[str, bytes]:
        if self.files:
            return "file.bin", rng.choice(self.files) + os.urandom(16)
        if rng.random() < 0.5:
            return "note.txt", f"bench note {os.urandom(8).hex()}\n".encode() * 200
        return "image.png", _png(rng)


def _png(rng: random.Random) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (640, 480), tuple(rng.randrange(256) for _ in range(3)))
    image.putpixel((rng.randrange(640), rng.randrange(480)), (1, 2, 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, url: str, token: str | None, timeout: float):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, self.prefix + path, body=body, headers={**self.headers, **(headers or {})})
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return resp.status, data
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.corpus = Corpus(args.corpus)
        self.samples: list[Sample] = []
        self.memory: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.images: list[str] = []
        self.texts: list[str] = []
        self.stop = threading.Event()
        self.local = threading.local()
        self.ops = list(args.mix)
        self.weights = [args.mix[o] for o in self.ops]
        self.start = 0.0

    def client(self) -> Client:
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.args.url, self.args.token, self.args.timeout)
            self.local.rng = random.Random()
        return self.local.client

    def one(self, scheduled: float | None = None) -> None:
        client = self.client()
        rng: random.Random = self.local.rng
        op = rng.choices(self.ops, self.weights)[0]
        with self.lock:
            if op == "preset" and not self.images or op == "text" and not self.texts:
                op = "upload"  # nothing to read yet
            target = rng.choice(self.images) if op == "preset" else rng.choice(self.texts) if op == "text" else None
        began = time.perf_counter() if scheduled is None else scheduled
        status = 0
        try:
            if op == "upload":
                name, data = self.corpus.pick(rng)
                status, body = client.request("POST", "/upload", data, {
                    "x-filename": name, "x-drive-id": "bench", "x-user-id": f"bench-{threading.get_ident() % 1000}",
                    "Content-Type": "application/octet-stream"})
                if status in (200, 201):
                    result = json.loads(body)
                    mime = result.get("mimeType", "")
                    with self.lock:
                        (self.images if mime.startswith("image/") else self.texts).append(result["contentHash"])
            elif op == "preset":
                status, _ = client.request("GET", f"/cache/{target}/{self.args.preset}")
            else:
                status, _ = client.request("GET", f"/cache/{target}/text")
        except (OSError, http.client.HTTPException, ValueError):
            status = 0
        done = time.perf_counter()
        with self.lock:
            self.samples.append(Sample(began - self.start, op, status, done - began))

    def closed_loop(self) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                self.one()

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(self.args.concurrency)]
        for t in threads:
            t.start()
        self._wait()
        for t in threads:
            t.join(self.args.timeout + 5)

    def open_loop(self) -> None:
        interval = 1.0 / self.args.rate
        with ThreadPoolExecutor(self.args.concurrency) as pool:
            n = 0
            while not self.stop.is_set():
                scheduled = self.start + n * interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    self.stop.wait(delay)
                if self.stop.is_set():
                    break
                pool.submit(self.one, scheduled)
                n += 1
            # queued arrivals past the end still run: they were offered load

    def _wait(self) -> None:
        self.stop.wait(self.args.duration)
        self.stop.set()

    def progress(self) -> None:
        last = 0
        while not self.stop.wait(1.0):
            with self.lock:
                samples = list(self.samples)
            now = time.perf_counter() - self.start
            lat = [s.latency * 1000 for s in samples]
            errors = sum(1 for s in samples if is_error(s.status))
            rate = (len(samples) - last) / 1.0
            last = len(samples)
            print(f"\r{now:6.0f}s  {rate:7.1f} req/s  {len(samples):7d} done  {errors:5d} errors  "
                  f"p50 {percentile(lat, .5):7.1f}  p95 {percentile(lat, .95):7.1f}  "
                  f"p99 {percentile(lat, .99):7.1f} ms", end="", file=sys.stderr, flush=True)
            self.sample_health(now)
        print(file=sys.stderr)

    def sample_health(self, now: float) -> None:
        try:
            conn = Client(self.args.url, None, 5)
            status, body = conn.request("GET", "/health")
            conn.close()
            if status == 200:
                self.memory.append((now, int(json.loads(body)["memory"]["used"])))
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            pass  # not reachable: no memory series

    def run(self) -> dict:
        self.start = time.perf_counter()
        ticker = threading.Thread(target=self.progress, daemon=True)
        ticker.start()
        if self.args.rate:
            timer = threading.Thread(target=self._wait, daemon=True)
            timer.start()
            self.open_loop()
        else:
            self.closed_loop()
        ticker.join(5)
        return self.summary()

    def summary(self) -> dict:
        elapsed = max(s.at + s.latency for s in self.samples) if self.samples else self.args.duration
        rows = {}
        for op in (*OPERATIONS, "all"):
            chosen = [s for s in self.samples if op == "all" or s.op == op]
            if not chosen:
                continue
            lat = [s.latency * 1000 for s in chosen]
            rows[op] = {"requests": len(chosen), "rps": round(len(chosen) / elapsed, 1),
                        "errors": sum(1 for s in chosen if is_error(s.status)),
                        "p50_ms": round(percentile(lat, .5), 2), "p95_ms": round(percentile(lat, .95), 2),
                        "p99_ms": round(percentile(lat, .99), 2), "max_ms": round(max(lat), 2),
                        "statuses": dict(sorted(Counter(str(s.status) for s in chosen).items()))}
        return {"url": self.args.url, "mode": f"open {self.args.rate}/s" if self.args.rate else "closed",
                "concurrency": self.args.concurrency, "duration": self.args.duration,
                "mix": self.args.mix, "results": rows,
                "peakMemoryUsed": max((m for _, m in self.memory), default=None)}


def table(summary: dict) -> str:
    head = f"{'op':8} {'requests':>9} {'req/s':>8} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} " \
           f"{'max ms':>8}  statuses"
    lines = [head, "-" * len(head)]
    for op, r in summary["results"].items():
        lines.append(f"{op:8} {r['requests']:9d} {r['rps']:8.1f} {r['errors']:7d} {r['p50_ms']:8.1f} "
                     f"{r['p95_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}  "
                     + " ".join(f"{k}:{v}" for k, v in r["statuses"].items()))
    return "\n".join(lines)


def chart(bench: Bench, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for op in OPERATIONS:
        points = [(s.at, s.latency * 1000) for s in bench.samples if s.op == op]
        if points:
            axes[0][0].scatter(*zip(*points), s=3, label=op)
    axes[0][0].set(title="latency", xlabel="s", ylabel="ms", yscale="log")
    axes[0][0].legend()
    seconds = Counter(int(s.at) for s in bench.samples)
    if seconds:
        xs = range(max(seconds) + 1)
        axes[0][1].plot(list(xs), [seconds.get(x, 0) for x in xs])
    axes[0][1].set(title="throughput", xlabel="s", ylabel="req/s")
    statuses = Counter(str(s.status) for s in bench.samples)
    axes[1][0].bar(list(statuses), list(statuses.values()))
    axes[1][0].set(title="status mix (0: connection error)")
    if bench.memory:
        axes[1][1].plot([t for t, _ in bench.memory], [m / 2**20 for _, m in bench.memory])
    axes[1][1].set(title="service memory (/health memory.used)", xlabel="s", ylabel="MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:3003", help="the service's base URL")
    parser.add_argument("--token", default=os.environ.get("PROCESSOR_AUTH_TOKEN"),
                        help="bearer token (default: $PROCESSOR_AUTH_TOKEN)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="client threads (closed loop) or the most requests in flight (open loop)")
    parser.add_argument("--rate", type=float, default=None, help="open loop: arrivals per second")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("upload=1,preset=3,text=1"),
                        help="operation weights, e.g. upload=1,preset=3,text=1")
    parser.add_argument("--preset", default="thumbnail", help="the preset the preset reads ask for")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="upload these files (default: generated text notes and PNGs)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--out", type=Path, default=None, help="write bench-<time>.json and .png here")


def run(args: argparse.Namespace) -> int:
    bench = Bench(args)
    summary = bench.run()
    print(table(summary))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / time.strftime("bench-%Y%m%dT%H%M%SZ", time.gmtime())
        samples = [{"at": round(s.at, 4), "op": s.op, "status": s.status, "latency": round(s.latency, 5)}
                   for s in bench.samples]
        stem.with_suffix(".json").write_text(json.dumps({**summary, "memory": bench.memory, "samples": samples}))
        try:
            chart(bench, stem.with_suffix(".png"))
        except ImportError:
            print("falconproc bench: no chart (pip install 'falconproc[bench]' for matplotlib)", file=sys.stderr)
        print(f"results: {stem}.json", file=sys.stderr)
    return 0 if summary["results"] and summary["results"]["all"]["errors"] == 0 else 1
