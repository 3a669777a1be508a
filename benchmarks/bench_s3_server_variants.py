"""What the S3 server itself costs per 100 MB upload, per server configuration.

bench_s3_storage.py puts the S3 server on the same two cores as falconproc, so its CPU
per byte is part of the s3/local ratio. This script measures the server alone: boto3
uploads 100 MB of random bytes as 8 MiB SigV4-signed parts on two threads (as
falconproc's parts go) and downloads it again; reported per variant, medians of
``--rounds``: the upload's wall time, the CPU of each server process (psutil) and of the
client. Each variant starts its own server through scripts/s3_server.sh:

* ceph memstore (the tests' server), with Ceph's production allocator (tcmalloc preloaded:
  Debian's ceph-osd and radosgw link glibc malloc), with debug logging off (0/0), with
  fewer RGW threads (RGW_THREADS) or messenger threads, and on bluestore (a sparse file
  on this disk: Ceph's production store);
* seaweedfs (``weed mini``: ``S3_BACKEND=seaweedfs scripts/s3_server.sh install``).

    python benchmarks/bench_s3_server_variants.py [--rounds 5] [variant ...]

Prints one line per variant; writes benchmarks/results/s3-server-variants-<timestamp>.json.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

from tests.support.servers import start_s3_server  # noqa: E402

TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"
DEBUG_OFF = ("rgw", "ms", "osd", "objecter", "rados", "memstore", "bluestore", "bluefs", "bdev", "rocksdb", "auth",
             "monc", "optracker", "throttle", "finisher", "heartbeatmap", "perfcounter", "buffer")
# name: (backend, environment of s3_server.sh, debug logging off at run time)
VARIANTS = {
    "ceph memstore (the tests' server)": ("ceph", {}, False),
    "ceph memstore, tcmalloc": ("ceph", {"LD_PRELOAD": TCMALLOC}, False),
    "ceph memstore, tcmalloc, debug 0/0": ("ceph", {"LD_PRELOAD": TCMALLOC}, True),
    "ceph memstore, rgw threads 8": ("ceph", {"RGW_THREADS": "8"}, False),
    "ceph memstore, rgw threads 4, ms threads 1": ("ceph", {"RGW_THREADS": "4",
                                                            "CEPH_CONF_EXTRA": "ms async op threads = 1"}, False),
    "ceph bluestore": ("ceph", {"OBJSTORE": "bluestore"}, False),
    "ceph bluestore, tcmalloc": ("ceph", {"OBJSTORE": "bluestore", "LD_PRELOAD": TCMALLOC}, False),
    "seaweedfs": ("seaweedfs", {}, False),
}
PART = 8 << 20


def _cpu(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def measure(name: str, rounds: int, data: bytes) -> dict[str, float]:
    backend, env, debug_off = VARIANTS[name]
    work = Path(tempfile.mkdtemp(prefix="bench-s3-variant-"))
    saved = dict(os.environ)
    os.environ.update(env)  # start_s3_server passes this process's environment to the script
    try:
        server = start_s3_server(work / "s3", backend)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        if debug_off:
            for daemon in ("client.rgw.gw", "osd.0"):
                for subsystem in DEBUG_OFF:
                    subprocess.run(["ceph", "--admin-daemon", str(work / "s3" / "ceph" / f"{daemon}.asok"),
                                    "config", "set", f"debug_{subsystem}", "0/0"], capture_output=True, check=False)
        s3 = server.client()
        bucket = server.new_bucket()
        pids = {f.stem: int(f.read_text()) for f in (work / "s3" / "run").glob("*.pid")}

        def upload(key: str) -> None:
            upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

            def part(number_offset: tuple[int, int]) -> dict:
                number, offset = number_offset
                resp = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                      Body=data[offset:offset + PART])
                return {"PartNumber": number, "ETag": resp["ETag"]}

            with ThreadPoolExecutor(2) as pool:
                parts = list(pool.map(part, enumerate(range(0, len(data), PART), 1)))
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})

        upload("warm-up")
        rows = []
        for rnd in range(rounds):
            before, own, start = {n: _cpu(p) for n, p in pids.items()}, _own_cpu(), time.perf_counter()
            upload(f"object-{rnd}")
            row = {"uploadSeconds": time.perf_counter() - start, "clientCpu": _own_cpu() - own}
            row.update({f"{n}Cpu": _cpu(p) - before[n] for n, p in pids.items()})
            before, start = {n: _cpu(p) for n, p in pids.items()}, time.perf_counter()
            with open(work / "download.bin", "wb") as fh:
                s3.download_fileobj(bucket, f"object-{rnd}", fh)
            row["downloadSeconds"] = time.perf_counter() - start
            row["downloadServerCpu"] = sum(_cpu(p) - before[n] for n, p in pids.items())
            rows.append(row)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    result["serverCpu"] = sum(v for k, v in result.items() if k.endswith("Cpu") and k not in ("clientCpu",
                                                                                                "downloadServerCpu"))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("variants", nargs="*", help=f"any of: {', '.join(VARIANTS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {unknown}")
    data = os.urandom(100_000_000)
    results = {}
    for name in args.variants or list(VARIANTS):
        r = results[name] = measure(name, args.rounds, data)
        per_process = ", ".join(f"{k[:-3]} {v:.2f}" for k, v in r.items()
                                if k.endswith("Cpu") and k not in ("clientCpu", "serverCpu", "downloadServerCpu"))
        print(f"{name:44s} upload {r['uploadSeconds']:.3f} s, server CPU {r['serverCpu']:.2f} s ({per_process}),"
              f" client {r['clientCpu']:.2f} s | download {r['downloadSeconds']:.3f} s,"
              f" server CPU {r['downloadServerCpu']:.2f} s", flush=True)
    path = common.RESULTS_DIR / f"s3-server-variants-{common.timestamp()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rounds": args.rounds, "variants": results, "machine": common.machine_info()},
                               indent=2))
    print(f"wrote {common.shown(path)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
