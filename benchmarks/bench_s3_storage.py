"""STORAGE_BACKEND=s3 against local, same run, same machine: 100 MB ingest and cached-preset serving.

* local  ``falconproc serve`` with its default settings (local store);
* s3     the same with ``STORAGE_BACKEND=s3`` against a Ceph RGW on 127.0.0.1 (started
         here by scripts/s3_server.sh, memstore OSD: the object store's own disk is not
         measured, only what falconproc does with it), or with ``--server seaweedfs``
         SeaweedFS (``weed mini``, its volumes on this disk).

Ingest: ``--rounds`` uploads of ``--size`` new random bytes (100 MB; admitted with
ALLOWED_TYPES=application/octet-stream,image/jpeg on both) to each, order
alternating; wall time from the first byte sent to the answer, and the service tree's CPU
per upload (the S3 server's own CPU, all its processes, is shown apart for s3), and how much of the time came after
the last byte was sent (the commit: with the parts uploaded while the body arrives, only
the last part, the completion and a server-side copy are left). Serving: a corpus JPEG uploaded and
its presets made, its thumbnail fetched once (the s3 service keeps it in its read-through
copy), then ``wrk -t2 -c32 -d10s`` against each, order alternating, ``--rounds`` rounds.
Targets (issue 10): ingest s3/local <= 1.5 (time), serving local/s3 <= 1.2 (req/s).

    python benchmarks/bench_s3_storage.py [--rounds 3] [--size 100000000] [--seconds 10] [--server ceph]

Prints Markdown tables; writes benchmarks/results/s3-storage-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

from tests.support.corpus import MEADOW  # noqa: E402
from tests.support.servers import start_s3_server  # noqa: E402


class _TimedFile:
    """The payload for requests, noting when its last byte was handed to the socket."""

    def __init__(self, fh, size: int):
        self._fh = fh
        self._size = size
        self.sent_at: float | None = None

    def __len__(self) -> int:  # requests sends a Content-Length, not chunks
        return self._size

    def __iter__(self):  # what makes requests take it as a stream (http.client calls read)
        return iter(lambda: self.read(1 << 20), b"")

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if not data and self.sent_at is None:
            self.sent_at = time.perf_counter()
        return data


def _upload_file(url: str, path: Path) -> tuple[float, float]:
    """(seconds from the first byte to the answer, of which after the last byte was sent)."""
    import requests

    with open(path, "rb") as fh:
        body = _TimedFile(fh, path.stat().st_size)
        start = time.perf_counter()
        resp = requests.post(url + "/upload", data=body, timeout=600,
                             headers={"x-filename": "big.bin", "x-drive-id": "bench", "x-user-id": "bench",
                                      "Content-Length": str(path.stat().st_size)})
        end = time.perf_counter()
    resp.raise_for_status()
    assert resp.json()["isNew"] is True, resp.text
    return end - start, end - (body.sent_at or end)


def _server_pids(state_dir: Path) -> list[int]:
    pids = []
    for pid_file in (state_dir / "run").glob("*.pid"):
        try:
            pids.append(int(pid_file.read_text().strip()))
        except ValueError:
            pass
    return pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=100_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server", choices=("ceph", "seaweedfs"), default="ceph", help="the S3 server")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    server = start_s3_server(work / "s3server", args.server)
    try:
        bucket = server.new_bucket()
        # Random bytes sniff as application/octet-stream: admitted here, nothing else changes.
        settings = {"UPLOAD_RATE_LIMIT": "off", "ALLOWED_TYPES": "application/octet-stream,image/jpeg"}
        services = {
            "local": common.start_falconproc_with(work, MEADOW, "local", settings),
            "s3": common.start_falconproc_with(work, MEADOW, "s3", {**settings, **server.service_env(bucket)}),
        }
        payload = work / "payload.bin"
        ingest: dict[str, dict[str, list[float]]] = {n: {"seconds": [], "afterLastByte": [], "cpu": [], "serverCpu": []}
                                                      for n in services}
        for rnd in range(args.rounds):
            order = list(services) if rnd % 2 == 0 else list(reversed(services))
            for name in order:
                common.random_payload(payload, args.size)
                svc = services[name][0]
                cpu0, server0 = common.tree_cpu([svc.proc.pid]), common.tree_cpu(_server_pids(server.state_dir))
                seconds, after_last_byte = _upload_file(svc.url, payload)
                ingest[name]["seconds"].append(seconds)
                ingest[name]["afterLastByte"].append(after_last_byte)
                ingest[name]["cpu"].append(common.tree_cpu([svc.proc.pid]) - cpu0)
                ingest[name]["serverCpu"].append(common.tree_cpu(_server_pids(server.state_dir)) - server0)
        serving: dict[str, dict[str, list[float]]] = {n: {"rps": [], "cpuPerRequest": [], "p99": []}
                                                       for n in services}
        for name, (svc, content_hash) in services.items():
            import requests

            resp = requests.get(f"{svc.url}/cache/{content_hash}/thumbnail", timeout=30)
            resp.raise_for_status()
        for rnd in range(args.rounds):
            order = list(services) if rnd % 2 == 0 else list(reversed(services))
            for name in order:
                svc, content_hash = services[name]
                cpu0 = common.tree_cpu([svc.proc.pid])
                out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                                      f"{svc.url}/cache/{content_hash}/thumbnail"],
                                     capture_output=True, text=True, check=True).stdout
                result = common.parse_wrk(out)
                assert result["non2xx"] == 0, out
                serving[name]["rps"].append(result["rps"])
                serving[name]["p99"].append(result["latency"].get("p99", 0.0))
                serving[name]["cpuPerRequest"].append((common.tree_cpu([svc.proc.pid]) - cpu0) / result["requests"])
        for svc, _ in services.values():
            svc.stop()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)  # the stored uploads: ~1.3 GB a run

    med = statistics.median
    rows = [[name, f"{med(d['seconds']):.2f} s ({min(d['seconds']):.2f}-{max(d['seconds']):.2f})",
             f"{med(d['afterLastByte']):.3f} s", f"{args.size / med(d['seconds']) / 1e6:.0f} MB/s",
             f"{med(d['cpu']):.2f} s", f"{med(d['serverCpu']):.2f} s" if name == "s3" else "-"]
            for name, d in ingest.items()]
    print(f"### Ingest of {args.size / 1e6:.0f} MB (median of {args.rounds})\n")
    print(common.format_table(["backend", "time", "after the last byte", "throughput", "service CPU", f"{args.server} CPU"],
                              rows))
    ingest_ratio = med(ingest["s3"]["seconds"]) / med(ingest["local"]["seconds"])
    print(f"\ns3 / local time: {ingest_ratio:.2f} (target <= 1.5)\n")
    rows = [[name, f"{med(d['rps']):.0f} ({min(d['rps']):.0f}-{max(d['rps']):.0f})",
             f"{med(d['p99']) * 1000:.1f} ms", f"{med(d['cpuPerRequest']) * 1e6:.0f} us"]
            for name, d in serving.items()]
    print(f"### Cached thumbnail serving, wrk -c{args.connections} (median of {args.rounds})\n")
    print(common.format_table(["backend", "req/s", "p99", "CPU per request"], rows))
    serving_ratio = med(serving["local"]["rps"]) / med(serving["s3"]["rps"])
    print(f"\nlocal / s3 req/s: {serving_ratio:.2f} (target <= 1.2)")
    results = {"server": args.server, "ingest": ingest, "serving": serving, "ingestRatio": ingest_ratio, "servingRatio": serving_ratio,
               "args": vars(args), "machine": common.machine_info()}
    out_dir = common.RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"s3-storage-{common.timestamp()}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {common.shown(path)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
