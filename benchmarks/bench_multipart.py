"""Multipart benchmark: POST /upload of a 100 MB file as multipart/form-data against the
same file sent raw, on the same service, interleaved run by run.

* raw        ``curl -T file`` (the body is the file), as bench_ingest.py sends it;
* multipart  ``curl -F file=@file`` (what a browser's or Node's FormData sends: one
             file part, the envelope parsed by falconproc/ingest/multipart.py).

One falconproc service (1 web worker, compiled or ``--pure``), ``ALLOWED_TYPES=
application/octet-stream`` (random bytes), the stored entry deleted after each run so
every upload is new. Wall time around the curl process; CPU of the worker that handled
it (psutil). Target (issue 11): multipart median within 1.1x of raw.

    python benchmarks/bench_multipart.py [--runs 5] [--size-mb 100] [--pure]

Then, in process (no HTTP), the parsers alone over the same envelope in 1 MiB blocks,
each feeding the file part's bytes to SHA-256: plain hashing of the raw file (the floor),
ours (falconproc/ingest/multipart.py's FilePartReader) and streaming-form-data (Cython;
``pip install streaming-form-data``, the ``bench`` extra) with the field registered by name.

Prints Markdown tables; writes benchmarks/results/multipart-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _common import MB, GunicornService, RssSampler  # noqa: E402

TARGET_RATIO = 1.1
HEADERS = ["-H", "x-drive-id: bench-drive", "-H", "x-user-id: bench-user", "-H", "Expect:"]


def curl_argv(kind: str, payload: Path, url: str) -> list[str]:
    if kind == "raw":
        return ["curl", "-sS", "-X", "POST", "-T", str(payload), "-H", "Content-Type: application/octet-stream",
                "-H", "x-filename: bench.bin", *HEADERS, url]
    return ["curl", "-sS", "-F", f"file=@{payload};filename=bench.bin", *HEADERS, url]


def one(kind: str, svc: GunicornService, payload: Path, expected: str, entry: Path) -> dict:
    sampler = RssSampler(svc.proc.pid)
    with sampler:
        t0 = time.perf_counter()
        out = subprocess.run(curl_argv(kind, payload, svc.url + "/upload"), capture_output=True)
        seconds = time.perf_counter() - t0
    answer = json.loads(out.stdout or b"{}")
    if answer.get("contentHash") != expected or answer.get("isNew") is not True:
        raise RuntimeError(f"{kind}: {out.stdout[:500]!r} {out.stderr[:500]!r}\n{svc.log_tail()}")
    common.remove(entry)
    rec = sampler.record()
    return {"seconds": seconds, "cpuSeconds": rec["cpuSeconds"], "rssGrowthMB": rec["rssGrowth"] / MB}


def parsers(payload: Path, runs: int) -> dict[str, dict]:
    import hashlib
    import io

    from falconproc.ingest.multipart import FilePartReader

    boundary = "----formdata-bench-7MA4YWxkTrZu0gW"
    raw = payload.read_bytes()
    envelope = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + raw + f"\r\n--{boundary}--\r\n".encode()
    block = 1 << 20

    def floor() -> str:
        digest, body = hashlib.sha256(), io.BytesIO(raw)
        while chunk := body.read(block):
            digest.update(chunk)
        return digest.hexdigest()

    def ours() -> str:
        digest = hashlib.sha256()
        reader = FilePartReader(io.BytesIO(envelope), boundary, len(envelope), block)
        reader.open()
        while chunk := reader.read(block):
            digest.update(chunk)
        return digest.hexdigest()

    def sfd() -> str:
        from streaming_form_data import StreamingFormDataParser
        from streaming_form_data.targets import BaseTarget

        digest = hashlib.sha256()

        class Hashing(BaseTarget):
            def on_data_received(self, chunk: bytes) -> None:
                digest.update(chunk)

        parser = StreamingFormDataParser(headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        parser.register("file", Hashing())
        body = io.BytesIO(envelope)
        while chunk := body.read(block):
            parser.data_received(chunk)
        return digest.hexdigest()

    expected = floor()
    out: dict[str, dict] = {}
    for name, fn in (("floor: hashlib over the raw file", floor), ("ours: FilePartReader", ours),
                     ("streaming-form-data 2.x", sfd)):
        times, cpus = [], []
        for _ in range(runs):
            c0, t0 = time.process_time(), time.perf_counter()
            got = fn()
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            if got != expected:
                raise RuntimeError(f"{name}: wrong hash")
        out[name] = {"seconds": common.summarize(times), "cpuSeconds": common.summarize(cpus)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=float, default=100)
    parser.add_argument("--pure", action="store_true", help="FALCONPROC_NO_EXTENSIONS=1")
    args = parser.parse_args(argv)
    size = int(args.size_mb * MB)
    work = Path(tempfile.mkdtemp(prefix="bench-multipart-"))
    payload = work / "payload.bin"
    expected = common.random_payload(payload, size)
    port = common.free_port()
    env = common.falconproc_env(work / "svc", port, WEB_WORKERS="1", ALLOWED_TYPES="application/octet-stream",
                                MAX_UPLOAD_BYTES=str(max(size + MB, 104_857_600 + MB)))
    if args.pure:
        env["FALCONPROC_NO_EXTENSIONS"] = "1"
    svc = GunicornService("ours", [sys.executable, "-m", "falconproc.cli", "serve"], env, work, port)
    health = svc.start()
    entry = Path(env["FILE_STORAGE_PATH"]) / expected
    runs: dict[str, list[dict]] = {"raw": [], "multipart": []}
    try:
        for i in range(args.runs + 1):  # the first round warms up and is dropped
            for kind in (("raw", "multipart") if i % 2 else ("multipart", "raw")):
                rec = one(kind, svc, payload, expected, entry)
                if i:
                    runs[kind].append(rec)
    finally:
        svc.stop()
    summary = {k: {m: common.summarize([r[m] for r in v]) for m in ("seconds", "cpuSeconds", "rssGrowthMB")}
               for k, v in runs.items()}
    ratio = common.ratio(summary["multipart"]["seconds"]["median"], summary["raw"]["seconds"]["median"])
    cpu_ratio = common.ratio(summary["multipart"]["cpuSeconds"]["median"], summary["raw"]["cpuSeconds"]["median"])
    rows = []
    for kind in ("raw", "multipart"):
        s = summary[kind]
        rows.append([f"{kind} ({'pure' if args.pure else (health or {}).get('implementation', 'compiled')})",
                     common.fmt(s["seconds"]["median"]), f"{s['seconds']['min']:.3f}–{s['seconds']['max']:.3f}",
                     common.fmt(size / MB / s["seconds"]["median"], ".0f"), common.fmt(s["cpuSeconds"]["median"]),
                     common.fmt(s["rssGrowthMB"]["max"], ".1f"),
                     common.fmt(common.ratio(s["seconds"]["median"], summary["raw"]["seconds"]["median"]), ".3f")])
    table = common.format_table([f"POST /upload, {args.size_mb:g} MB", "median s", "min–max s", "MB/s",
                                 "worker CPU s", "max RSS growth MB", "/ raw"], rows)
    print(table)
    print(f"\nmultipart / raw: {ratio:.3f} wall, {cpu_ratio:.3f} CPU (target <= {TARGET_RATIO}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); loadavg {os.getloadavg()}")
    path = common.write_json("multipart", common.timestamp(), {
        "benchmark": "multipart", "sizeBytes": size, "runs": runs, "summary": summary,
        "ratio": ratio, "cpuRatio": cpu_ratio, "target": TARGET_RATIO, "health": health,
        "machine": common.machine_info({"curl": ["curl", "--version"]})})
    in_process = parsers(payload, args.runs)
    base = in_process["floor: hashlib over the raw file"]["seconds"]["median"]
    print()
    print(common.format_table([f"parse + hash {args.size_mb:g} MB in process", "median s", "CPU s", "/ floor"],
                              [[k, common.fmt(v["seconds"]["median"]), common.fmt(v["cpuSeconds"]["median"]),
                                common.fmt(common.ratio(v["seconds"]["median"], base), ".3f")]
                               for k, v in in_process.items()]))
    report = json.loads(path.read_text())
    report["inProcess"] = in_process
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    common.remove(work)
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
