"""Slow-upload benchmark: thumbnail GETs while N uploads trickle at 500 B/s (issue 11).

The same scenario against two configurations of one falconproc (2 web workers, as the
black-box tests run it):

* before   WEB_THREADS=4, UPLOAD_SLOTS=4 (the old defaults: every thread may be taken by
           an upload; reads queue behind them), LINGER_SECONDS=0;
* after    the defaults (WEB_THREADS=32, UPLOAD_SLOTS = 3/4 of them, lingering refusals).

Each run: store a PNG and make its thumbnail, open N connections that send an upload's
head and then 50 bytes every 100 ms, then make ``--gets`` sequential thumbnail GETs (20 s
timeout each) and report their latency, how many failed, and what became of the uploads.

    python benchmarks/bench_slow_uploads.py [--uploads 64] [--gets 20]
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _common import GunicornService  # noqa: E402

CONFIGS = {
    "before": {"WEB_THREADS": "4", "UPLOAD_SLOTS": "4", "LINGER_SECONDS": "0"},
    "after": {},
}
HEAD = ("POST /upload HTTP/1.1\r\nHost: x\r\nx-filename: slow.txt\r\nx-drive-id: d\r\nx-user-id: u\r\n"
        "Content-Length: 1000000\r\n\r\n").encode()


def png() -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (640, 480), os.urandom(640 * 480 * 3)).save(buf, format="PNG")
    return buf.getvalue()


def run(name: str, env_extra: dict[str, str], uploads: int, gets: int, work: Path) -> dict:
    port = common.free_port()
    env = common.falconproc_env(work / name, port, WEB_WORKERS="2", STORAGE_RESERVE_BYTES="0",
                                UPLOADS_RESERVE_BYTES="0", **env_extra)
    svc = GunicornService(name, [sys.executable, "-m", "falconproc.cli", "serve"], env, work, port, workers=2)
    svc.start()
    socks: list[socket.socket] = []
    closed = [0]
    stop = threading.Event()
    try:
        data = png()
        stored = requests.post(svc.url + "/upload", data=data, timeout=30,
                               headers={"x-filename": "t.png", "x-drive-id": "d", "x-user-id": "u"}).json()
        url = f"{svc.url}/cache/{stored['contentHash']}/thumbnail"
        requests.get(url, timeout=30).raise_for_status()

        def trickle() -> None:
            while not stop.wait(0.1):
                for sock in list(socks):
                    try:
                        sock.sendall(b"a" * 50)
                    except OSError:
                        socks.remove(sock)
                        closed[0] += 1

        for _ in range(uploads):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(HEAD)
            socks.append(sock)
        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(2.0)  # let every upload reach the service (a benchmark, not a test)
        latencies, failures = [], 0
        cpu0 = common.tree_cpu([svc.proc.pid])
        for _ in range(gets):
            started = time.monotonic()
            try:
                ok = requests.get(url, timeout=20).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append(time.monotonic() - started)
            failures += not ok
        cpu = common.tree_cpu([svc.proc.pid]) - cpu0
        rss = sum(p.memory_info().rss for p in psutil.Process(svc.proc.pid).children(recursive=True)
                  if "supervisor" not in " ".join(p.cmdline()))
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        svc.stop()
    lat = sorted(latencies)
    return {"config": name, "p50": statistics.median(lat), "p95": statistics.quantiles(lat, n=20)[-1],
            "max": lat[-1], "failed": failures, "uploadsStillOpen": uploads - closed[0],
            "uploadsClosedByServer": closed[0], "cpuPerGet": cpu / gets, "webRssMB": rss / common.MB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=64)
    parser.add_argument("--gets", type=int, default=20)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    results = [run(name, extra, args.uploads, args.gets, work) for name, extra in CONFIGS.items()]
    rows = [[r["config"], f"{r['p50']:.3f}", f"{r['p95']:.3f}", f"{r['max']:.3f}", str(r["failed"]),
             str(r["uploadsStillOpen"]), str(r["uploadsClosedByServer"]), f"{r['cpuPerGet'] * 1000:.1f}",
             f"{r['webRssMB']:.0f}"] for r in results]
    print(common.format_table([f"{args.gets} thumbnail GETs, {args.uploads} uploads at 500 B/s", "p50 s", "p95 s",
                               "max s", "failed", "uploads open", "uploads refused/closed",
                               "service CPU ms/GET", "web RSS MB"], rows))
    path = common.write_json("slow-uploads", common.timestamp(), {"benchmark": "slow-uploads", "results": results,
                                                                 "uploads": args.uploads, "gets": args.gets,
                                                                 "loadavg": os.getloadavg()})
    print(f"wrote {path}")
    common.remove(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
