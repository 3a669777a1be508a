"""Resize serving over HTTP: a stored 2K JPEG to fit 512x512, ours vs thumbor, concurrency 2.

Side by side in one run, on one machine (docs/performance.md, issue 4 section 5):

* ours     ``POST /optimize-for-ai {"contentHash": H, "maxSize": 512}`` (longest side 512,
           JPEG q85, answered as base64 JSON) against ``python -m falconproc.cli serve`` with
           the default settings (web workers: 2 per core; the image job of the upload is
           waited for before the load starts, so it does not compete).
* thumbor  thumbor 7.x (``--thumbor`` points at its executable, installed in its own venv:
           ``python -m venv /tmp/thumbor-venv && /tmp/thumbor-venv/bin/pip install thumbor``),
           ``GET /unsafe/fit-in/512x512/<file>`` with the file loader rooted at a dir holding
           the same JPEG, no storage and no result storage (every request loads, decodes,
           resizes and encodes, as ours does), QUALITY=85 and RESPECT_ORIENTATION=True
           (ours' defaults). thumbor is a single-threaded Tornado process, so three variants:
           - ``thumbor`` as installed: one process (its default ``--processes 1``), both
             connections to it: the baseline of docs/performance.md (≈ 69 req/s there);
           - ``thumbor x N``: ``--instances`` (default: cores) single-process servers on their
             own ports, each client connection pinned to one: thumbor on every core (with
             ``--processes N`` the forked children share one socket and the two keep-alive
             connections land in the same child about half the time, which measures one core);
           - ``thumbor x N, baseline JPEG``: the same with PROGRESSIVE_JPEG=False (closer to our
             baseline JPEG; thumbor still optimizes the Huffman tables).

The same client drives both: 2 keep-alive connections for ``--seconds`` (15) after a
``--warmup`` (3 s), each a ``wrk -t1 -c1`` process (``apt-get install wrk``), run side by
side, their req/s summed (ours: both to the service's port, gunicorn spreads them over its
workers; thumbor: one per instance); without wrk, a Python client with 2 threads, each
with its own keep-alive ``requests.Session`` and URL. Every answer is checked once up front
(200, a JPEG of the expected size). Reported: req/s, latency percentiles, non-2xx count,
and the servers' CPU seconds per request (summed over their process trees: robust to other
load on a shared machine) and cores used.

    python benchmarks/bench_resize_http.py [--image tests/data/images/garden-2560x1600.jpg]
        [--seconds 15] [--rounds 1] [--thumbor /tmp/thumbor-venv/bin/thumbor] [--client wrk|python]
        [--instances 2]

Prints a Markdown table; writes benchmarks/results/resize-http-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
from tests.support.corpus import IMAGES_DIR  # noqa: E402  (_common put the repository on sys.path)

TARGET_VS_THUMBOR = 1.5  # ours at least 1.5x thumbor's req/s
DEFAULT_IMAGE = IMAGES_DIR / "garden-2560x1600.jpg"
DEFAULT_THUMBOR = Path("/tmp/thumbor-venv/bin/thumbor")
BOX = 512
COLORS = {"ours": "#2e9d57", "thumbor": "#ef8a3c", "thumbor-p2": "#c45a1c", "thumbor-multi": "#d9622b", "thumbor-multi-baseline": "#f3b27a"}


# --------------------------------------------------------------------------- services


class Thumbor:
    def __init__(self, exe: Path, work: Path, image: Path, name: str, extra_conf: dict[str, Any], processes: int = 1):
        self.name = name
        self.dir = work / name
        self.images = self.dir / "images"
        self.images.mkdir(parents=True)
        shutil.copy(image, self.images / image.name)
        self.port = common.free_port()
        conf = {"LOADER": "thumbor.loaders.file_loader", "FILE_LOADER_ROOT_PATH": str(self.images),
                "STORAGE": "thumbor.storages.no_storage", "RESULT_STORAGE": None, "ALLOW_UNSAFE_URL": True,
                "QUALITY": 85, "RESPECT_ORIENTATION": True, "AUTO_WEBP": False}
        conf.update(extra_conf)
        self.conf = conf
        conf_path = self.dir / "thumbor.conf"
        conf_path.write_text("".join(f"{k} = {v!r}\n" for k, v in conf.items()))
        self.argv = [str(exe), "--port", str(self.port), "--ip", "127.0.0.1", "--conf", str(conf_path),
                     "--processes", str(processes), "--log-level", "warning"]
        self.proc: subprocess.Popen | None = None
        self.url_path = f"/unsafe/fit-in/{BOX}x{BOX}/{image.name}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        import requests

        log = open(self.dir / "thumbor.log", "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"thumbor exited: {(self.dir / 'thumbor.log').read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthcheck", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("thumbor did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            import psutil

            try:  # --processes forks children: stop them too (only this tree)
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                children = []
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for child in children:
                try:
                    child.kill()
                except psutil.Error:
                    pass
        self.proc = None


# --------------------------------------------------------------------------- load


WRK_POST = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def run_wrk(urls: list[str], seconds: float, work: Path, body: str | None) -> dict[str, Any]:
    """One ``wrk -t1 -c1`` per URL, side by side; req/s summed, latency percentiles
    averaged (p99: the worst)."""
    argv = ["wrk", "-t1", "-c1", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "30s"]
    if body is not None:
        script = work / "post.lua"
        script.write_text(WRK_POST.format(body=body))
        argv += ["-s", str(script)]
    procs = [subprocess.Popen(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for url in urls]
    parts = [common.parse_wrk(p.communicate(timeout=seconds + 60)[0]) for p in procs]
    lat = {}
    for key in ("p50", "p75", "p90", "p99"):
        values = [p["latency"][key] for p in parts if key in p["latency"]]
        if values:
            lat[key] = max(values) if key == "p99" else statistics.fmean(values)
    return {"client": f"wrk x{len(urls)} (-t1 -c1)", "rps": sum(p["rps"] for p in parts),
            "requests": sum(p["requests"] for p in parts), "non2xx": sum(p["non2xx"] for p in parts),
            "socketErrors": [p["socketErrors"] for p in parts if p["socketErrors"]] or None, "latency": lat,
            "perConnectionRps": [p["rps"] for p in parts], "raw": "\n".join(p["raw"] for p in parts)}


def run_python(urls: list[str], seconds: float, body: str | None) -> dict[str, Any]:
    import requests

    stop_at = time.perf_counter() + seconds
    latencies: list[float] = []
    bad = [0]
    lock = threading.Lock()

    def worker(url: str) -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                if body is None:
                    resp = session.get(url, timeout=30)
                else:
                    resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
                _ = resp.content
                with lock:
                    if resp.status_code == 200:
                        latencies.append(time.perf_counter() - t)
                    else:
                        bad[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(url,)) for url in urls]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
    return {"client": "python", "rps": len(lat) / elapsed, "requests": len(lat) + bad[0], "non2xx": bad[0],
            "latency": {"p50": pick(0.5), "p75": pick(0.75), "p90": pick(0.9), "p99": pick(0.99)}}


def check_ours(url: str, body: str) -> tuple[int, int]:
    import requests
    from PIL import Image

    resp = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
    resp.raise_for_status()
    answer = resp.json()
    with Image.open(io.BytesIO(base64.b64decode(answer["data"]))) as im:
        assert im.format == "JPEG" and max(im.size) == BOX, im.size
        return im.size


def check_thumbor(url: str) -> tuple[int, int]:
    import requests
    from PIL import Image

    resp = requests.get(url, timeout=60)
    resp.raise_for_status()
    with Image.open(io.BytesIO(resp.content)) as im:
        assert im.format == "JPEG" and max(im.size) == BOX, im.size
        return im.size


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every variant, order rotating")
    parser.add_argument("--thumbor", type=Path, default=DEFAULT_THUMBOR)
    parser.add_argument("--instances", type=int, default=2,
                        help="single-process thumbor servers of the multi variants (client connections are "
                             "spread over them; 2 = one per connection)")
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not args.thumbor.exists():
        print(f"thumbor not found at {args.thumbor}; install it into its own venv (see --help)", file=sys.stderr)
        return 2

    stamp = common.timestamp()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-resize-http-"))
    ours = None
    thumbors: dict[str, list[Thumbor]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    sizes: dict[str, Any] = {}
    try:
        ours, content_hash = common.start_falconproc_with(work, args.image)
        # (extra conf, instances, --processes of each)
        configs = {"thumbor": ({}, 1, 1), "thumbor-p2": ({}, 1, os.cpu_count() or 2),
                   "thumbor-multi": ({}, args.instances, 1),
                   "thumbor-multi-baseline": ({"PROGRESSIVE_JPEG": False}, args.instances, 1)}
        for name, (extra, count, processes) in configs.items():
            thumbors[name] = [Thumbor(args.thumbor, work, args.image, f"{name}-{i}", extra, processes)
                              for i in range(count)]
            for t in thumbors[name]:
                t.start()
        thumbor_version = subprocess.run([str(args.thumbor), "--version"], capture_output=True,
                                         text=True).stdout.strip()
        body = json.dumps({"contentHash": content_hash, "maxSize": BOX})
        targets = {"ours": ([ours.url + "/optimize-for-ai"] * 2, body, [ours.proc.pid])}
        for name, group in thumbors.items():
            targets[name] = ([group[i % len(group)].url + group[0].url_path for i in range(2)], None,
                             [t.proc.pid for t in group])
        sizes["ours"] = check_ours(targets["ours"][0][0], body)
        for name, group in thumbors.items():
            sizes[name] = check_thumbor(targets[name][0][0])
            for t in group[1:]:
                check_thumbor(t.url + t.url_path)
        names = list(targets)

        def load(urls: list[str], payload: str | None, seconds: float) -> dict[str, Any]:
            return run_wrk(urls, seconds, work, payload) if args.client == "wrk" else \
                run_python(urls, seconds, payload)

        for name in names:  # warm-up: imports, page cache, first-request costs
            load(targets[name][0], targets[name][1], args.warmup)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                urls, payload, pids = targets[name]
                cpu0, t0 = common.tree_cpu(pids), time.monotonic()
                result = load(urls, payload, args.seconds)
                result["serverCpuSeconds"] = common.tree_cpu(pids) - cpu0
                result["coresUsed"] = result["serverCpuSeconds"] / (time.monotonic() - t0)
                result["cpuPerRequestMs"] = 1000 * result["serverCpuSeconds"] / max(1, result["requests"])
                runs.setdefault(name, []).append(result)
                print(f"  {name}: {result['rps']:.1f} req/s, {result['cpuPerRequestMs']:.1f} ms CPU/request, "
                      f"{result['coresUsed']:.2f} cores", file=sys.stderr)
    finally:
        for group in thumbors.values():
            for t in group:
                t.stop()
        if ours:
            ours.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    summary = {name: {"rps": statistics.median(r["rps"] for r in rs),
                      "p50": statistics.median(r["latency"].get("p50") or 0 for r in rs),
                      "p99": statistics.median(r["latency"].get("p99") or 0 for r in rs),
                      "non2xx": sum(r["non2xx"] for r in rs),
                      "cpuPerRequestMs": statistics.median(r["cpuPerRequestMs"] for r in rs),
                      "coresUsed": statistics.median(r["coresUsed"] for r in rs)}
               for name, rs in runs.items()}
    ratio = common.ratio(summary["ours"]["rps"], summary["thumbor-p2"]["rps"])
    ratio_single = common.ratio(summary["ours"]["rps"], summary["thumbor"]["rps"])
    ratio_multi = common.ratio(summary["ours"]["rps"], summary["thumbor-multi"]["rps"])
    ratio_baseline = common.ratio(summary["ours"]["rps"], summary["thumbor-multi-baseline"]["rps"])
    cpu_ratio = common.ratio(summary["thumbor-p2"]["cpuPerRequestMs"], summary["ours"]["cpuPerRequestMs"])
    version = thumbor_version.split()[1] if thumbor_version else ""
    labels = {"ours": "ours: POST /optimize-for-ai maxSize 512",
              "thumbor": f"thumbor {version} fit-in/512x512, 1 process (default)",
              "thumbor-p2": f"thumbor --processes {os.cpu_count()} (the goal's peer)",
              "thumbor-multi": f"thumbor x{args.instances} instances (1 connection each)",
              "thumbor-multi-baseline": f"thumbor x{args.instances}, PROGRESSIVE_JPEG=False"}
    headers = ["variant", "req/s", "ours / this", "p50 ms", "p99 ms", "non-2xx", "server CPU ms/req", "cores used",
               "output"]
    rows = []
    for name in runs:
        s = summary[name]
        rows.append([labels[name], f"{s['rps']:.1f}", f"{summary['ours']['rps'] / s['rps']:.2f}",
                     f"{1000 * s['p50']:.1f}", f"{1000 * s['p99']:.1f}", str(s["non2xx"]),
                     f"{s['cpuPerRequestMs']:.1f}", f"{s['coresUsed']:.2f}", "x".join(map(str, sizes[name]))])
    print(f"\n## Resize serving: {args.image.name} to fit {BOX}x{BOX}, concurrency 2, {args.seconds:.0f} s x "
          f"{args.rounds} (client {args.client}; thumbor {args.instances} single-process instances; "
          f"{os.cpu_count()} cores, load {load_start[0]:.2f})\n")
    print(common.format_table(headers, rows))
    met = ratio is not None and ratio >= TARGET_VS_THUMBOR
    print(f"\nGoal ours >= {TARGET_VS_THUMBOR}x thumbor req/s: {ratio:.2f}x -> {'met' if met else 'NOT met'} "
          f"against thumbor --processes {os.cpu_count()}; against its default single process {ratio_single:.2f}x, "
          f"against one single-process thumbor per connection: {ratio_multi:.2f}x "
          f"({ratio_baseline:.2f}x with its baseline JPEG); thumbor's CPU per request / ours: {cpu_ratio:.2f}")

    results = {
        "benchmark": "resize-http",
        "stamp": stamp,
        "config": {"image": str(args.image), "box": BOX, "seconds": args.seconds, "warmup": args.warmup,
                   "rounds": args.rounds, "client": args.client, "concurrency": 2,
                   "oursWorkers": ours.workers if ours else None, "thumborInstances": args.instances,
                   "thumborVersion": thumbor_version,
                   "thumborConf": {name: group[0].conf for name, group in thumbors.items()}},
        "machine": {**common.machine_info({"wrk": ["wrk", "--version"]}), "loadavgAtStart": load_start},
        "runs": {name: [{k: v for k, v in r.items() if k != "raw"} for r in rs] for name, rs in runs.items()},
        "wrkOutput": {name: [r.get("raw") for r in rs] for name, rs in runs.items()},
        "summary": summary,
        "outputSizes": sizes,
        "ratios": {"oursVsThumbor": ratio, "oursVsThumborSingleProcess": ratio_single, "oursVsThumborMulti": ratio_multi,
                   "oursVsThumborMultiBaseline": ratio_baseline, "thumborCpuPerRequestVsOurs": cpu_ratio},
        "goals": {"oursVsThumbor": {"target": f">= {TARGET_VS_THUMBOR}", "value": ratio, "met": met,
                                    "against": f"thumbor --processes {os.cpu_count()}"},
                  "oursVsThumborMulti": {"target": f">= {TARGET_VS_THUMBOR}", "value": ratio_multi,
                                         "met": ratio_multi is not None and ratio_multi >= TARGET_VS_THUMBOR,
                                         "against": f"{args.instances} thumbor instances"}},
    }
    path = common.write_json("resize-http", stamp, results)
    print(f"\nresults: {path}")
    if not args.no_chart:
        names = list(runs)
        png = common.bar_chart("resize-http", stamp,
                               f"Resize {args.image.name} to fit {BOX}x{BOX} over HTTP, concurrency 2 ({stamp})", [
                                   {"title": "throughput (median req/s)", "xlabel": "requests per second",
                                    "labels": [labels[n] for n in names],
                                    "values": [summary[n]["rps"] for n in names],
                                    "colors": [COLORS[n] for n in names], "fmt": "{:.1f}"},
                                   {"title": "server CPU per request", "xlabel": "CPU milliseconds",
                                    "labels": [labels[n] for n in names],
                                    "values": [summary[n]["cpuPerRequestMs"] for n in names],
                                    "colors": [COLORS[n] for n in names], "fmt": "{:.1f}"},
                               ])
        if png:
            print(f"chart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
