"""Load benchmark: sustained mixed uploads and reads against the whole service, with the
process tree's memory sampled throughout (performance.md's "memory" row, reliability.md's
"load" row).

Client threads loop for ``--duration`` seconds, each picking at random:

* upload an image (corpus JPEG/PNG made unique by trailing bytes): an image job and an
  OCR job follow;
* upload a document (corpus PDF made unique by a trailing comment, or unique plain text):
  a text job follows;
* read a preset of an image this client uploaded (made on demand when its job has not
  run yet);
* read the text of a document this client uploaded (202 while pending).

Meanwhile a thread sums the memory of the gunicorn master and all its descendants (web
workers, job supervisor, job processes, tesseract) every 250 ms, twice: PSS (each shared
page split between the processes mapping it: what the tree really holds, close to what a
container is charged) and RSS (shared pages counted once per process: an upper bound).

At the end every upload answered 2xx is read back and hash-checked, every upload refused
(503/429) must have left nothing behind, and the answers are tallied by status. The
pass marks of reliability.md: tree PSS below the limit, no 5xx but 503 (each with
Retry-After), no connection errors. ``tests/observability/test_load.py`` runs this script
briefly and asserts exactly those marks from its JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    MIB,
    ROOT,
    GunicornService,
    falconproc_env,
    format_table,
    free_port,
    machine_info,
    service_env,
    timestamp,
    write_json,
)
from tests.support.corpus import DATA  # noqa: E402  (_common put the repository on sys.path)

PRESETS = ("thumbnail", "preview", "ai-chat", "ai-vision")
OPERATIONS = {"upload_image": 0.25, "upload_document": 0.20, "read_preset": 0.40, "read_text": 0.15}
DEFAULT_LIMIT = 1_342_177_280  # the service's MEMORY_LIMIT_BYTES default (1280 MiB)


class Corpus:
    def __init__(self) -> None:
        images = DATA / "images"
        self.images = [p.read_bytes() for p in sorted(images.glob("*.jpg")) + sorted(images.glob("*.png"))]
        self.pdfs = [p.read_bytes() for p in sorted((DATA / "docs").glob("*.pdf")) if "password" not in p.name]

    def image(self, rng: random.Random) -> bytes:
        # JPEG and PNG decoders stop at their end marker: trailing bytes make new content.
        return rng.choice(self.images) + os.urandom(16)

    def document(self, rng: random.Random) -> bytes:
        if rng.random() < 0.5:
            return rng.choice(self.pdfs) + b"\n%" + os.urandom(8).hex().encode() + b"\n"
        tag = os.urandom(8).hex()
        return "".join(f"load {tag} line {i} of a plain text note\n" for i in range(200)).encode()


class Tally:
    """Latencies and statuses per operation, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.missing_retry_after = 0
        self.stored: list[tuple[str, str]] = []  # (hash, kind) answered 2xx
        self.refused: list[str] = []  # hashes of uploads answered 503/429
        self.error_samples: dict[str, str] = {}  # first message of each client-side error

    def record(self, op: str, seconds: float, status: int | str, resp: requests.Response | None) -> None:
        with self.lock:
            self.latency[op].append(seconds)
            self.status[op][str(status)] += 1
            if status in (429, 503) and resp is not None and "Retry-After" not in resp.headers:
                self.missing_retry_after += 1


def client(url: str, deadline: float, seed: int, corpus: Corpus, tally: Tally) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    mine: dict[str, list[str]] = {"image": [], "document": []}
    ops, weights = zip(*OPERATIONS.items())
    while time.monotonic() < deadline:
        op = rng.choices(ops, weights)[0]
        if op == "read_preset" and not mine["image"]:
            op = "upload_image"
        if op == "read_text" and not mine["document"]:
            op = "upload_document"
        started = time.perf_counter()
        resp = None
        try:
            if op.startswith("upload"):
                kind = op.removeprefix("upload_")
                data = corpus.image(rng) if kind == "image" else corpus.document(rng)
                digest = hashlib.sha256(data).hexdigest()
                resp = session.post(url + "/upload", data=data, timeout=120, headers={
                    "x-filename": f"load-{kind}", "x-drive-id": "load-drive", "x-user-id": f"load-user-{seed}"})
                if resp.status_code in (200, 201):
                    assert resp.json()["contentHash"] == digest, "the service hashed other bytes"
                    mine[kind].append(digest)
                    with tally.lock:
                        tally.stored.append((digest, kind))
                elif resp.status_code in (429, 503, 507):
                    with tally.lock:
                        tally.refused.append(digest)
            elif op == "read_preset":
                digest = rng.choice(mine["image"])
                resp = session.get(f"{url}/cache/{digest}/{rng.choice(PRESETS)}", timeout=120)
            else:
                digest = rng.choice(mine["document"])
                resp = session.get(f"{url}/cache/{digest}/text", timeout=120)
            resp.content  # noqa: B018 - read the whole answer, as a client does
            status: int | str = resp.status_code
        except requests.RequestException as exc:
            status = f"error:{type(exc).__name__}"
            with tally.lock:
                tally.error_samples.setdefault(f"{op} {status}", str(exc)[:300])
            session = requests.Session()
        tally.record(op, time.perf_counter() - started, status, resp)


class TreeSampler:
    """Peak and timeline of the summed PSS and RSS of a process and all its descendants."""

    def __init__(self, root_pid: int, interval: float = 0.25):
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.timeline: list[tuple[float, int, int, int]] = []  # (seconds, pss sum, rss sum, processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-rss", daemon=True)
        self._t0 = time.monotonic()

    def sample(self) -> tuple[int, int, int]:
        procs = [self.root]
        try:
            procs += self.root.children(recursive=True)
        except psutil.Error:
            pass
        pss = rss = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()  # smaps_rollup: ~2 ms a process, fine here
            except psutil.Error:
                continue
            pss += info.pss
            rss += info.rss
        return pss, rss, len(procs)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            pss, rss, count = self.sample()
            self.timeline.append((time.monotonic() - self._t0, pss, rss, count))

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, column: int) -> int:
        return max((row[column] for row in self.timeline), default=0)

    def median(self, column: int) -> int:
        return int(statistics.median(row[column] for row in self.timeline)) if self.timeline else 0


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def verify(url: str, tally: Tally) -> dict[str, int]:
    """Every 2xx upload reads back with its hash; no refused upload left anything."""
    session = requests.Session()
    result = Counter()
    for digest, _ in tally.stored:
        resp = session.get(f"{url}/cache/{digest}/original", timeout=60)
        ok = resp.status_code == 200 and hashlib.sha256(resp.content).hexdigest() == digest
        result["stored_ok" if ok else "stored_bad"] += 1
    stored = {d for d, _ in tally.stored}
    for digest in tally.refused:
        if digest in stored:  # the same bytes were accepted by another request
            continue
        resp = session.head(f"{url}/cache/{digest}/original", timeout=60)
        result["refused_absent" if resp.status_code == 404 else "refused_present"] += 1
    return dict(result)


def chart(stamp: str, timeline: list[tuple[float, int, int, int]], limit: int, path: Path | None) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no chart written", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = path or ROOT / "benchmarks" / "results" / f"load-{stamp}.png"
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot([row[0] for row in timeline], [row[1] / MIB for row in timeline], label="process tree PSS (sum)")
    ax.plot([row[0] for row in timeline], [row[2] / MIB for row in timeline], label="process tree RSS (sum)",
            alpha=0.6)
    ax.axhline(limit / MIB, color="red", linestyle="--", label="MEMORY_LIMIT_BYTES")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_ylim(0, limit / MIB * 1.1)
    ax.legend(loc="lower right")
    ax.set_title("falconproc under sustained mixed load")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--memory-limit", type=int, default=DEFAULT_LIMIT, help="MEMORY_LIMIT_BYTES of the service")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json-out", type=Path, help="write the result here instead of benchmarks/results/")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()

    stamp = timestamp()
    corpus = Corpus()
    with tempfile.TemporaryDirectory(prefix="falconproc-load-") as tmp:
        base = Path(tmp)
        port = free_port()
        env = falconproc_env(base, port, MEMORY_LIMIT_BYTES=str(args.memory_limit),
                             **service_env(parser, args.service_env))
        workers = int(env.get("WEB_WORKERS", "0")) or None
        svc = GunicornService("falconproc", [sys.executable, "-m", "falconproc.cli", "serve"], env, base, port,
                              workers=workers or 2)
        svc.start()
        try:
            tally = Tally()
            deadline = time.monotonic() + args.duration
            threads = [threading.Thread(target=client, args=(svc.url, deadline, seed, corpus, tally))
                       for seed in range(args.clients)]
            with TreeSampler(svc.proc.pid) as sampler:
                started = time.monotonic()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.monotonic() - started
            health = requests.get(svc.url + "/health", timeout=30).json()
            checks = verify(svc.url, tally)
            log_tail = svc.log_tail()
        finally:
            svc.stop()

    statuses = Counter()
    for per_op in tally.status.values():
        statuses.update(per_op)
    server_errors = {s: n for s, n in statuses.items() if s.isdigit() and int(s) >= 500 and s != "503"}
    connection_errors = {s: n for s, n in statuses.items() if not s.isdigit()}
    operations = {
        op: {"count": len(lat), "per_second": len(lat) / elapsed, "p50_s": statistics.median(lat),
             "p99_s": _quantile(lat, 0.99), "status": dict(tally.status[op])}
        for op, lat in sorted(tally.latency.items())
    }
    result: dict[str, Any] = {
        "benchmark": "load",
        "timestamp": stamp,
        "machine": machine_info(),
        "settings": {"duration_s": args.duration, "clients": args.clients, "memory_limit": args.memory_limit,
                     "mix": OPERATIONS, "service_env": service_env(parser, args.service_env)},
        "elapsed_s": elapsed,
        "operations": operations,
        "status": dict(statuses),
        "server_errors": server_errors,
        "connection_errors": connection_errors,
        "error_samples": tally.error_samples,
        "missing_retry_after": tally.missing_retry_after,
        "verify": checks,
        "tree_pss_peak": sampler.peak(1),
        "tree_pss_median": sampler.median(1),
        "tree_rss_peak": sampler.peak(2),
        "tree_rss_median": sampler.median(2),
        "tree_processes_max": sampler.peak(3),
        "peak_over_limit": sampler.peak(1) / args.memory_limit,
        "timeline": [[round(t, 2), pss, rss, n] for t, pss, rss, n in sampler.timeline],
        "health_after": health,
        "log_tail": log_tail if server_errors or connection_errors else "",
    }

    rows = [[op, str(v["count"]), f"{v['per_second']:.1f}", f"{v['p50_s'] * 1000:.0f}",
             f"{(v['p99_s'] or 0) * 1000:.0f}", " ".join(f"{k}:{n}" for k, n in sorted(v["status"].items()))]
            for op, v in operations.items()]
    print(format_table(["operation", "count", "per s", "p50 ms", "p99 ms", "answers"], rows))
    print(f"\nprocess tree PSS: peak {sampler.peak(1) / MIB:.0f} MiB, median {sampler.median(1) / MIB:.0f} MiB "
          f"(RSS sum: peak {sampler.peak(2) / MIB:.0f}, median {sampler.median(2) / MIB:.0f}); "
          f"limit {args.memory_limit / MIB:.0f} MiB -> PSS peak/limit {result['peak_over_limit']:.2f}; "
          f"up to {result['tree_processes_max']} processes")
    print(f"5xx other than 503: {server_errors or 0}; connection errors: {connection_errors or 0}; "
          f"429/503 without Retry-After: {tally.missing_retry_after}; read-back: {checks}")

    if args.json_out:
        args.json_out.write_text(__import__("json").dumps(result, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    else:
        print(f"wrote {write_json('load', stamp, result)}")
    if not args.no_chart:
        png = chart(stamp, sampler.timeline, args.memory_limit,
                    args.json_out.with_suffix(".png") if args.json_out else None)
        if png:
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
