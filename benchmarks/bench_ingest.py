"""Ingest benchmark: POST /upload of a 100 MB file over loopback, against its baselines.

Side by side in one run, on one machine, medians over ``--runs`` runs (see
docs/performance.md and issue 2, section 6):

* floor   ``openssl dgst -sha256`` of the file, plus ``cp`` of it into a store directory
          on the same filesystem followed by fsync of the copy and of the directory
          (Python ``os.fsync``; ``sync -f`` would flush the whole filesystem), summed;
* naive   benchmarks/naive_ingest_app.py (bounded_stream in 1 MiB blocks, hashlib,
          write, fsync, rename) under the same gunicorn, gthread, 1 worker;
* ours    falconproc (``python -m falconproc.cli serve``, 1 web worker) with the compiled
          native module (``/health`` must say implementation "cython");
* twin    the same service with ``FALCONPROC_NO_EXTENSIONS=1`` (the pure-Python twin).

Every upload is streamed from disk by ``curl -T`` (no Expect: 100-continue) and timed
wall-clock around the curl process (as the floor's ``openssl``/``cp`` are); the response
hash must equal the file's SHA-256 and the upload must be new (the stored entry is
deleted after each run). While an upload runs, a thread polls the RSS of every worker of
the service's gunicorn master every 10 ms; the growth reported is peak - before of the
worker that handled it.

The payload is random bytes, which the service sniffs as application/octet-stream, a
type it refuses by default (415): the services run with
``ALLOWED_TYPES=application/octet-stream``. That changes nothing but the accept check.

    python benchmarks/bench_ingest.py [--runs 5] [--size-mb 100] [--tmp-dir DIR]

Prints a Markdown table; writes benchmarks/results/ingest-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _common import MB, GunicornService, RssSampler  # noqa: E402

DEFAULT_MAX_UPLOAD = 104_857_600
VARIANTS = ("floor", "naive", "cython", "python")
LABELS = {
    "floor": "floor: openssl dgst + cp + fsync",
    "naive": "naive Falcon handler",
    "cython": "ours: falconproc, compiled (cython)",
    "python": "ours: falconproc, pure-Python twin",
}
COLORS = {"floor": "#9e9e9e", "naive": "#ef8a3c", "cython": "#2e9d57", "python": "#4a7fc1"}

# Targets from issue 2, section 6.
TARGET_FLOOR_RATIO = 1.3
TARGET_NAIVE_RATIO = 1.0
TARGET_RSS_MB = 5.0  # "no more than a few MB"


# --------------------------------------------------------------------------- setup


def base_env() -> dict[str, str]:
    return common.clean_env("NAIVE_STORE")


def falconproc_service(name: str, base: Path, size: int, threads: int, *, pure: bool,
                       extra_env: dict[str, str]) -> GunicornService:
    port = common.free_port()
    env = common.falconproc_env(base, port, WEB_WORKERS="1", WEB_THREADS=str(threads),
                                ALLOWED_TYPES="application/octet-stream",
                                MAX_UPLOAD_BYTES=str(max(size, DEFAULT_MAX_UPLOAD)))
    env.update(extra_env)
    if pure:
        env["FALCONPROC_NO_EXTENSIONS"] = "1"
    argv = [sys.executable, "-m", "falconproc.cli", "serve"]
    return GunicornService(name, argv, env, base, port, workers=1)


def naive_service(base: Path, threads: int) -> GunicornService:
    port = common.free_port()
    store = base / "store"
    store.mkdir(parents=True, exist_ok=True)
    env = base_env()
    env["NAIVE_STORE"] = str(store)
    # The same gunicorn settings falconproc's gunicorn_conf uses for what matters here.
    argv = common.gunicorn_argv("naive_ingest_app:app", port, workers=1, threads=threads)
    return GunicornService("naive", argv, env, base, port, workers=1)


# --------------------------------------------------------------------------- one run


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_floor(payload: Path, expected: str, store: Path) -> dict[str, Any]:
    dest = store / "original"
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    out = subprocess.run(["openssl", "dgst", "-sha256", str(payload)], capture_output=True, text=True, check=True)
    t1 = time.perf_counter()
    digest = out.stdout.strip().rsplit(" ", 1)[-1].lower()
    if digest != expected:
        raise RuntimeError(f"openssl says {digest}, expected {expected}")
    cpu1 = _children_cpu()
    subprocess.run(["cp", str(payload), str(dest)], check=True)
    t2 = time.perf_counter()
    cpu2 = _children_cpu()
    common.fsync_path(dest)
    common.fsync_path(store, directory=True)
    t3 = time.perf_counter()
    dest.unlink()
    return {"seconds": t3 - t0, "hashSeconds": t1 - t0, "copySeconds": t2 - t1, "fsyncSeconds": t3 - t2,
            "copyAndFsyncSeconds": t3 - t1, "cpuSeconds": cpu2 - cpu0, "hashCpuSeconds": cpu1 - cpu0,
            "copyCpuSeconds": cpu2 - cpu1}


def upload(service: GunicornService, payload: Path) -> tuple[float, float | None, int, dict[str, Any], dict]:
    cmd = ["curl", "-sS", "-X", "POST", "-T", str(payload),
           "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
           "-H", "x-filename: bench-ingest.bin", "-H", "x-drive-id: bench-drive", "-H", "x-user-id: bench-user",
           "-w", "\n%{http_code} %{time_total}", service.url + "/upload"]
    sampler = RssSampler(service.proc.pid)
    with sampler:
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True)
        elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"curl failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    body, _, trailer = out.stdout.decode(errors="replace").rpartition("\n")
    status_text, curl_total = trailer.split()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {"raw": body[:2000]}
    return elapsed, float(curl_total), int(status_text), answer, sampler.record()


def run_service(variant: str, service: GunicornService, payload: Path, expected: str,
                entry: Path) -> dict[str, Any]:
    elapsed, curl_total, status, answer, rss = upload(service, payload)
    problems = []
    if status != 201:
        problems.append(f"status {status}: {json.dumps(answer)[:500]}")
    if answer.get("contentHash") != expected:
        problems.append(f"contentHash {answer.get('contentHash')} != {expected}")
    if answer.get("isNew") is not True:
        problems.append(f"isNew is {answer.get('isNew')!r}")
    if problems:
        raise RuntimeError(f"{variant}: " + "; ".join(problems) + f"\nlog:\n{service.log_tail()}")
    if not entry.exists():
        raise RuntimeError(f"{variant}: the stored entry {entry} is missing")
    common.remove(entry)  # the next run's upload is new again
    return {"seconds": elapsed, "curlSeconds": curl_total, "status": status, **rss}


# --------------------------------------------------------------------------- report


def build_report(args, size: int, expected: str, raw: dict[str, list[dict]], notes: list[str],
                 health: dict[str, Any], base: Path) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for variant, runs in raw.items():
        measured = [r for r in runs if not r["warmup"]]
        seconds = [r["seconds"] for r in measured]
        entry: dict[str, Any] = {"label": LABELS[variant], "seconds": common.summarize(seconds)}
        med = entry["seconds"]["median"]
        entry["throughputMBps"] = size / MB / med if med else None
        entry["cpuSeconds"] = common.summarize([r["cpuSeconds"] for r in measured if r.get("cpuSeconds") is not None])
        if variant == "floor":
            for part in ("hashSeconds", "copySeconds", "fsyncSeconds", "copyAndFsyncSeconds"):
                entry[part] = common.summarize([r[part] for r in measured])
        else:
            growth = [r["rssGrowth"] / MB for r in measured]
            entry["rssGrowthMB"] = common.summarize(growth)
            entry["rssBeforeMB"] = common.summarize([r["rssBefore"] / MB for r in measured if r["rssBefore"]])
            entry["curlSeconds"] = common.summarize([r["curlSeconds"] for r in measured])
        summary[variant] = entry

    def med(v: str) -> float | None:
        return summary.get(v, {}).get("seconds", {}).get("median")

    ours = "cython" if "cython" in summary else ("python" if "python" in summary else None)
    ratios: dict[str, Any] = {}
    def cpu(v: str) -> float | None:
        return summary.get(v, {}).get("cpuSeconds", {}).get("median")

    for v in ("cython", "python", "naive"):
        if v in summary:
            ratios[v] = {"vsFloor": common.ratio(med(v), med("floor")),
                         "vsNaive": common.ratio(med(v), med("naive")) if v != "naive" else 1.0,
                         "cpuVsFloor": common.ratio(cpu(v), cpu("floor")),
                         "cpuVsNaive": common.ratio(cpu(v), cpu("naive")) if v != "naive" else 1.0}
    targets: dict[str, Any] = {}
    if ours:
        vs_floor = ratios[ours]["vsFloor"]
        vs_naive = ratios[ours]["vsNaive"]
        rss = summary[ours]["rssGrowthMB"]["max"]
        targets = {
            "implementation": ours,
            "withinFloor": {"target": TARGET_FLOOR_RATIO, "value": vs_floor,
                            "met": None if vs_floor is None else vs_floor <= TARGET_FLOOR_RATIO},
            "notSlowerThanNaive": {"target": TARGET_NAIVE_RATIO, "value": vs_naive,
                                   "met": None if vs_naive is None else vs_naive <= TARGET_NAIVE_RATIO},
            "rssGrowthMB": {"target": TARGET_RSS_MB, "value": rss, "met": rss <= TARGET_RSS_MB},
        }
    return {
        "benchmark": "ingest",
        "timestamp": args.stamp,
        "config": {
            "sizeBytes": size, "runs": args.runs, "warmup": args.warmup, "threads": args.threads,
            "payload": "random bytes (os.urandom), sniffed as application/octet-stream",
            "workDir": str(base), "filesystem": common.filesystem_of(base),
            "client": "curl -T (streams the file from disk), Expect header removed; wall time around the process",
            "floorCopy": "cp, then os.fsync of the copy and of its directory (Python)",
            "rssSampling": "psutil RSS of every child of the gunicorn master, every 10 ms",
            "variants": list(raw),
            "serviceEnv": args.extra_env,
            "loadavgAtStart": args.loadavg_start,
        },
        "expectedSha256": expected,
        "machine": common.machine_info({"openssl": ["openssl", "version"], "curl": ["curl", "--version"],
                                        "cp": ["cp", "--version"]}),
        "health": health,
        "summary": summary,
        "ratios": ratios,
        "targets": targets,
        "notes": notes,
        "runs": raw,
    }


def print_table(report: dict[str, Any]) -> str:
    summary = report["summary"]
    size_mb = report["config"]["sizeBytes"] / MB
    headers = ["ingest of a %g MB file" % size_mb, "median s", "min–max s", "MB/s", "CPU s",
               "worker RSS growth MB", "/ floor", "/ naive", "CPU / floor", "CPU / naive"]
    rows = []
    for variant in ("cython", "python", "floor", "naive"):
        if variant not in summary:
            continue
        s = summary[variant]
        sec = s["seconds"]
        label = s["label"]
        if variant == "floor":
            label += " (%s + %s)" % (common.fmt(s["hashSeconds"]["median"], ".3f"),
                                     common.fmt(s["copyAndFsyncSeconds"]["median"], ".3f"))
            growth = "–"
        else:
            g = s["rssGrowthMB"]
            growth = "%s (max %s)" % (common.fmt(g["median"], ".1f"), common.fmt(g["max"], ".1f"))
        r = report["ratios"].get(variant, {})
        rows.append([
            label,
            common.fmt(sec["median"], ".3f"),
            "%s–%s" % (common.fmt(sec["min"], ".3f"), common.fmt(sec["max"], ".3f")),
            common.fmt(s["throughputMBps"], ".0f"),
            common.fmt(s["cpuSeconds"]["median"], ".3f"),
            growth,
            "1.00x" if variant == "floor" else common.fmt(r.get("vsFloor"), ".2f", "x"),
            common.fmt(r.get("vsNaive"), ".2f", "x") if variant != "floor" else
            common.fmt(common.ratio(sec["median"], summary.get("naive", {}).get("seconds", {}).get("median")),
                       ".2f", "x"),
            "1.00x" if variant == "floor" else common.fmt(r.get("cpuVsFloor"), ".2f", "x"),
            common.fmt(r.get("cpuVsNaive"), ".2f", "x") if variant != "floor" else
            common.fmt(common.ratio(s["cpuSeconds"]["median"],
                                    summary.get("naive", {}).get("cpuSeconds", {}).get("median")), ".2f", "x"),
        ])
    table = common.format_table(headers, rows)
    print()
    print(table)
    t = report["targets"]
    if t:
        def verdict(key: str, text: str) -> str:
            item = t[key]
            met = {True: "met", False: "NOT met", None: "n/a"}[item["met"]]
            return f"  {text}: {common.fmt(item['value'], '.2f')} (target {item['target']}) -> {met}"

        print(f"\ntargets for ours ({t['implementation']}):")
        print(verdict("withinFloor", "ours / floor"))
        print(verdict("notSlowerThanNaive", "ours / naive"))
        print(verdict("rssGrowthMB", "max worker RSS growth, MB"))
    for note in report["notes"]:
        print(f"note: {note}")
    return table


def chart(report: dict[str, Any]) -> Path | None:
    summary = report["summary"]
    order = [v for v in ("cython", "python", "naive", "floor") if v in summary]
    services = [v for v in order if v != "floor"]
    size_mb = report["config"]["sizeBytes"] / MB
    panels = [
        {"title": f"wall time per {size_mb:g} MB ingest (median, bars: min–max)", "xlabel": "seconds",
         "labels": [summary[v]["label"] for v in order],
         "values": [summary[v]["seconds"]["median"] for v in order],
         "low": [summary[v]["seconds"]["min"] for v in order],
         "high": [summary[v]["seconds"]["max"] for v in order],
         "colors": [COLORS[v] for v in order], "fmt": "{:.3f} s"},
        {"title": "worker CPU s (floor: openssl + cp; median, min–max)", "xlabel": "CPU seconds",
         "labels": [summary[v]["label"] for v in order],
         "values": [summary[v]["cpuSeconds"]["median"] for v in order],
         "low": [summary[v]["cpuSeconds"]["min"] for v in order],
         "high": [summary[v]["cpuSeconds"]["max"] for v in order],
         "colors": [COLORS[v] for v in order], "fmt": "{:.3f} s"},
        {"title": "web worker RSS growth (median, min–max)", "xlabel": "MB",
         "labels": [summary[v]["label"] for v in services],
         "values": [summary[v]["rssGrowthMB"]["median"] for v in services],
         "low": [summary[v]["rssGrowthMB"]["min"] for v in services],
         "high": [summary[v]["rssGrowthMB"]["max"] for v in services],
         "colors": [COLORS[v] for v in services], "fmt": "{:.1f} MB"},
    ]
    if not services:
        panels.pop()
    if any(summary[v]["cpuSeconds"]["median"] is None for v in order):
        panels.pop(1)
    return common.bar_chart("ingest", report["timestamp"],
                            f"falconproc ingest, {report['config']['runs']} runs, {report['machine']['cpuCount']} CPUs, "
                            f"{report['timestamp']}", panels)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first (default 1)")
    parser.add_argument("--size-mb", type=float, default=100, help="payload size in MB of 10^6 bytes (default 100)")
    parser.add_argument("--tmp-dir", type=Path, default=None,
                        help="parent of the work dir (payload and every store share its filesystem; default: $TMPDIR)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker, both services (default 4)")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest between uploads (default 0.3)")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for both falconproc services, e.g. READ_CHUNK_BYTES=262144 (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (payload, stores, service logs)")
    args = common.parse_args(parser, argv)
    if args.replot:
        return common.publish("ingest", args, None, print_table, chart)
    args.stamp = common.timestamp()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants or args.runs < 1:
        parser.error(f"bad --variants/--runs: {', '.join(sorted(unknown)) or args.runs}")
    for tool in ("openssl", "curl", "cp"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH")
    size = int(args.size_mb * MB)
    args.extra_env = common.service_env(parser, args.service_env)
    try:
        args.loadavg_start = os.getloadavg()
    except OSError:
        args.loadavg_start = None

    base = Path(tempfile.mkdtemp(prefix="falconproc-bench-ingest-", dir=args.tmp_dir))
    notes: list[str] = []
    services: dict[str, GunicornService] = {}
    health: dict[str, Any] = {}
    try:
        payload_dir = base / "payload"
        payload_dir.mkdir()
        payload = payload_dir / "payload.bin"
        print(f"work dir {base} ({common.filesystem_of(base)}), load average {args.loadavg_start}; "
              f"writing {size / MB:g} MB of random bytes ...",
              flush=True)
        expected = common.random_payload(payload, size)

        floor_store = base / "floor" / "store"
        floor_store.mkdir(parents=True)
        entries: dict[str, Path] = {}
        if "naive" in variants:
            services["naive"] = naive_service(base / "naive", args.threads)
            entries["naive"] = base / "naive" / "store" / expected
        for variant in ("cython", "python"):
            if variant in variants:
                services[variant] = falconproc_service(variant, base / variant, size, args.threads,
                                                       pure=variant == "python", extra_env=args.extra_env)
                entries[variant] = base / variant / "files" / expected
        for variant, service in list(services.items()):
            body = service.start()
            health[variant] = body
            impl = (body or {}).get("implementation")
            wanted = {"cython": "cython", "python": "python", "naive": "naive"}[variant]
            if impl != wanted:
                note = (f"{variant}: /health says implementation {impl!r}, not {wanted!r}; variant skipped"
                        + (" (the compiled module is not built or did not load:"
                           " python setup.py build_ext --inplace)" if variant == "cython" else ""))
                print("WARNING: " + note, file=sys.stderr)
                notes.append(note)
                service.stop()
                del services[variant]
                variants.remove(variant)
        # Every store on the payload's filesystem: the floor's rename/fsync costs are comparable.
        dev = os.stat(payload).st_dev
        for path in [floor_store] + [p.parent for p in entries.values()]:
            path.mkdir(parents=True, exist_ok=True)
            if os.stat(path).st_dev != dev:
                raise RuntimeError(f"{path} is not on the payload's filesystem")

        raw: dict[str, list[dict]] = {v: [] for v in variants}
        total = args.warmup + args.runs
        for i in range(total):
            warm = i < args.warmup
            # Rotate the order each round so that slow drift of the machine spreads evenly.
            order = variants[i % len(variants):] + variants[:i % len(variants)]
            for variant in order:
                time.sleep(args.pause)
                if variant == "floor":
                    result = run_floor(payload, expected, floor_store)
                else:
                    result = run_service(variant, services[variant], payload, expected, entries[variant])
                result["warmup"] = warm
                raw[variant].append(result)
                extra = ""
                if "rssGrowth" in result:
                    extra = f", worker RSS +{result['rssGrowth'] / MB:.1f} MB"
                print(f"  {'warm-up' if warm else f'run {i - args.warmup + 1}/{args.runs}'} "
                      f"{variant:<7} {result['seconds']:.3f} s, CPU {common.fmt(result.get('cpuSeconds'))} s{extra}", flush=True)

        report = build_report(args, size, expected, raw, notes, health, base)
        return common.publish("ingest", args, report, print_table, chart)
    finally:
        for service in services.values():
            service.stop()
        common.keep_or_remove(base, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
