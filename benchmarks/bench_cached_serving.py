"""Cached serving: GET /cache/{hash}/thumbnail at concurrency 32, ours vs a bare Falcon route vs nginx.

Side by side in one run, on one machine (docs/performance.md, "cached serving"):

* ours   ``GET /cache/{hash}/thumbnail`` against ``python -m falconproc.cli serve`` with its
         default settings (web workers: 2 per core, gthread, WEB_THREADS threads each). A
         corpus JPEG (``--image``) is uploaded first, its jobs (the eager presets) are waited
         for, and the thumbnail is requested once, so every measured request is a cache hit;
* bare   benchmarks/bare_serving_app.py: one Falcon route that opens the same cached file
         (found on disk under the service's CACHE_PATH: the file whose bytes the service
         answered) and hands it to ``resp.stream`` (wsgi.file_wrapper: sendfile). Same
         gunicorn (same interpreter) with the service's worker count, worker class, threads,
         keep-alive and timeout; unlike the service: no access log, no max-requests recycling;
* bareconf  (diagnostic) the same bare app under falconproc's own gunicorn config
         (``-c python:falconproc.gunicorn_conf``, RUN_SUPERVISOR=0): its access log, max-requests
         recycling and post-request RSS check, without falconproc's app. ours - bareconf is
         what falconproc's Falcon app costs, bareconf - bare what its gunicorn policy costs;
* nginx  nginx (``apt-get install nginx``) serving the file's directory: a temp config,
         ``daemon off``, ``worker_processes`` = cores, ``sendfile on``, no access log, the
         file's content type; otherwise nginx defaults (keep-alive 75 s, 1000 requests per
         connection).

Before measuring, each endpoint must answer 200 with bytes identical to the file. Then each
gets ``--warmup`` seconds of load, and ``--rounds`` (3) rounds of ``wrk -t2 -c32 -d10s
--latency`` (``--threads``, ``--connections``, ``--seconds``) against each, the order
rotating round by round. wrk runs on the same machine and competes with the servers for
the cores. Reported: median req/s (min–max), latency p50/p99 (medians over rounds), the
non-2xx count and socket errors summed, the servers' CPU per request (user + system of
each server's process tree, psutil, including workers that exited meanwhile) and cores
used, how many gunicorn workers were replaced during the runs (max-requests recycling; a
lower bound), and the ratios ours / bare and ours / nginx (of the medians, and the median
of per-round ratios). ``--service-env NAME=VALUE`` passes a setting to ours and bareconf
(e.g. ``MAX_REQUESTS=0`` to see the recycling's share).

    python benchmarks/bench_cached_serving.py [--image tests/data/images/garden-2560x1600.jpg]
        [--rounds 3] [--seconds 10] [--connections 32] [--threads 2]

Prints a Markdown table; writes benchmarks/results/cached-serving-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _common import GunicornService  # noqa: E402

NAMES = ("ours", "bareconf", "bare", "nginx")
COLORS = {"ours": "#2e9d57", "bareconf": "#f3b27a", "bare": "#ef8a3c", "nginx": "#9e9e9e"}

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
{user}pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ {content_type} {ext}; }}
    default_type {content_type};
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


# --------------------------------------------------------------------------- servers


class Nginx:
    """nginx in the foreground with a temp config serving one directory on a free port."""

    def __init__(self, exe: str, work: Path, root: Path, content_type: str, ext: str, workers: int):
        self.exe = exe
        self.work = work
        self.port = common.free_port()
        self.proc: subprocess.Popen | None = None
        work.mkdir(parents=True, exist_ok=True)
        # Run as root, nginx switches its workers to "nobody", who cannot read a 0700 temp dir.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.getuid() == 0 else ""
        self.conf = NGINX_CONF.format(workers=workers, user=user, work=work, content_type=content_type,
                                      ext=ext.lstrip(".") or "bin", port=self.port, root=root)
        self.conf_path = work / "nginx.conf"
        self.conf_path.write_text(self.conf)

    def start(self, probe_path: str, timeout: float = 30.0) -> None:
        log = open(self.work / "nginx.out", "ab")
        self.proc = subprocess.Popen([self.exe, "-p", str(self.work), "-c", str(self.conf_path)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if common.http_get(f"http://127.0.0.1:{self.port}{probe_path}", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not answer: {self.log_tail()}")

    def log_tail(self) -> str:
        parts = []
        for name in ("nginx.out", "error.log"):
            try:
                parts.append((self.work / name).read_text(errors="replace")[-2000:])
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def find_cached(cache_root: Path, body: bytes) -> Path:
    """The file under CACHE_PATH whose bytes are ``body`` (the thumbnail the service served)."""
    matches = [p for p in cache_root.rglob("*") if p.is_file() and p.stat().st_size == len(body)
               and p.read_bytes() == body]
    if not matches:
        raise RuntimeError(f"no file under {cache_root} holds the {len(body)} bytes the service answered")
    return sorted(matches, key=lambda p: len(str(p)))[0]


# --------------------------------------------------------------------------- report


def build_report(args, runs: dict[str, list[dict]], info: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        summary[name] = {
            **common.summarize_wrk_runs(rs),
            "socketErrors": [r["socketErrors"] for r in rs if r["socketErrors"]] or None,
            "workersReplaced": sum(r.get("workersReplaced", 0) for r in rs) if name != "nginx" else None,
        }

    def per_round(a: str, b: str) -> float | None:
        if a not in runs or b not in runs:
            return None
        values = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b]) if y["rps"]]
        return statistics.median(values) if values else None

    def med(name: str) -> float | None:
        return summary.get(name, {}).get("rps", {}).get("median")

    ratios = {"oursVsBare": common.ratio(med("ours"), med("bare")),
              "oursVsBarePerRound": per_round("ours", "bare"),
              "oursVsNginx": common.ratio(med("ours"), med("nginx")),
              "oursVsNginxPerRound": per_round("ours", "nginx"),
              "bareVsNginx": common.ratio(med("bare"), med("nginx"))}
    return {
        "benchmark": "cached-serving",
        "timestamp": args.stamp,
        "config": {"image": str(args.image), "preset": args.preset, "threads": args.threads,
                   "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds,
                   "warmupSeconds": args.warmup, "wrkTimeout": args.wrk_timeout, "serviceEnv": args.extra_env,
                   "loadavgAtStart": args.loadavg_start, **info},
        "machine": common.machine_info({"wrk": ["wrk", "--version"], "nginx": [args.nginx, "-v"]}),
        "summary": summary,
        "ratios": ratios,
        "runs": {name: [{k: v for k, v in r.items() if k != "raw"} for r in rs] for name, rs in runs.items()},
        "wrkOutput": {name: [r.get("raw") for r in rs] for name, rs in runs.items()},
    }


def labels(report: dict[str, Any]) -> dict[str, str]:
    cfg = report["config"]
    return {"ours": f"ours: GET /cache/{{hash}}/{cfg['preset']} ({cfg.get('workers')}w x {cfg.get('webThreads')}t)",
            "bare": "bare Falcon route, same gunicorn settings",
            "bareconf": "bare route under falconproc's gunicorn_conf",
            "nginx": f"nginx, {cfg.get('nginxWorkers')} workers"}


def print_table(report: dict[str, Any]) -> str:
    summary = report["summary"]
    names = [n for n in NAMES if n in summary]
    cfg = report["config"]
    lab = labels(report)
    headers = ["variant", "req/s", "min–max", "p50 ms", "p99 ms", "non-2xx", "server CPU ms/req", "cores used",
               "workers replaced", "/ bare", "/ nginx"]
    rows = []
    for n in names:
        s = summary[n]
        rps = s["rps"]
        rows.append([lab[n], common.fmt(rps["median"], ".0f"),
                     f"{common.fmt(rps['min'], '.0f')}–{common.fmt(rps['max'], '.0f')}",
                     common.fmt(1000 * s["p50"], ".2f"), common.fmt(1000 * s["p99"], ".2f"), str(s["non2xx"]),
                     common.fmt(s["cpuPerRequestMs"], ".3f"), common.fmt(s["coresUsed"], ".2f"),
                     "–" if s.get("workersReplaced") is None else str(s["workersReplaced"]),
                     common.fmt(common.ratio(rps["median"], summary.get("bare", {}).get("rps", {}).get("median")),
                                ".2f", "x"),
                     common.fmt(common.ratio(rps["median"], summary.get("nginx", {}).get("rps", {}).get("median")),
                                ".3f", "x")])
    table = common.format_table(headers, rows)
    print(f"\n## Cached serving: {cfg['preset']} of {Path(cfg['image']).name} ({cfg.get('fileBytes')} bytes), "
          f"wrk -t{cfg['threads']} -c{cfg['connections']} -d{cfg['seconds']:g}s x {cfg['rounds']} rounds, "
          f"{report['machine']['cpuCount']} cores\n")
    print(table)
    r = report["ratios"]
    print(f"\nours / bare: {common.fmt(r['oursVsBare'], '.2f')} (per round {common.fmt(r['oursVsBarePerRound'], '.2f')}); "
          f"ours / nginx: {common.fmt(r['oursVsNginx'], '.3f')} (per round {common.fmt(r['oursVsNginxPerRound'], '.3f')})")
    errors = {n: summary[n]["socketErrors"] for n in names if summary[n]["socketErrors"]}
    if errors:
        print(f"socket errors: {errors}")
    return table


def chart(report: dict[str, Any]) -> Path | None:
    summary = report["summary"]
    names = [n for n in NAMES if n in summary]
    lab = labels(report)
    cfg = report["config"]
    return common.bar_chart("cached-serving", report["timestamp"],
                            f"cached {cfg['preset']} over HTTP, wrk -c{cfg['connections']}, {cfg['rounds']} rounds, "
                            f"{report['machine']['cpuCount']} CPUs, {report['timestamp']}", [
                                {"title": "throughput (median req/s, bars: min–max)", "xlabel": "requests per second",
                                 "labels": [lab[n] for n in names],
                                 "values": [summary[n]["rps"]["median"] for n in names],
                                 "low": [summary[n]["rps"]["min"] for n in names],
                                 "high": [summary[n]["rps"]["max"] for n in names],
                                 "colors": [COLORS[n] for n in names], "fmt": "{:.0f}"},
                                {"title": "latency p99 (median over rounds)", "xlabel": "milliseconds",
                                 "labels": [lab[n] for n in names],
                                 "values": [1000 * summary[n]["p99"] for n in names],
                                 "colors": [COLORS[n] for n in names], "fmt": "{:.2f} ms"},
                                {"title": "server CPU per request (process tree)", "xlabel": "CPU milliseconds",
                                 "labels": [lab[n] for n in names],
                                 "values": [summary[n]["cpuPerRequestMs"] for n in names],
                                 "colors": [COLORS[n] for n in names], "fmt": "{:.3f}"},
                            ])


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_wrk_arguments(parser, seconds=10)
    parser.add_argument("--variants", default=",".join(NAMES), help="subset of " + ",".join(NAMES))
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra falconproc setting for ours, e.g. MAX_REQUESTS=0 (repeatable)")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx", help="nginx executable")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (service logs, nginx config)")
    args = common.parse_args(parser, argv)
    if args.replot:
        return common.publish("cached-serving", args, None, print_table, chart)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(variants) - set(NAMES) or "ours" not in variants or args.rounds < 1:
        parser.error(f"--variants must include ours and be a subset of {','.join(NAMES)}; --rounds >= 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not on PATH (apt-get install wrk)")
    if "nginx" in variants and not os.access(args.nginx, os.X_OK):
        parser.error(f"nginx not found at {args.nginx} (apt-get install nginx, or --variants ours,bare)")
    args.extra_env = common.service_env(parser, args.service_env)
    args.stamp = common.timestamp()
    args.loadavg_start = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="falconproc-bench-serving-"))
    servers: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    info: dict[str, Any] = {}
    try:
        ours, content_hash = common.start_falconproc_with(work, args.image, extra_env=args.extra_env)
        servers["ours"] = ours
        from falconproc.config import Settings

        settings = Settings.from_env(ours.env)
        info.update(workers=settings.web_workers, webThreads=settings.web_threads, keepalive=settings.keepalive,
                    maxRequests=settings.max_requests, contentHash=content_hash)
        urls = {"ours": f"{ours.url}/cache/{content_hash}/{args.preset}"}
        status, headers, body = common.http_get(urls["ours"], timeout=120)  # generates the preset if no job made it
        if status != 200:
            raise RuntimeError(f"ours: {urls['ours']} answered {status}: {body[:500]!r}")
        cached = find_cached(settings.cache_path, body)
        content_type = headers.get("content-type", "application/octet-stream")
        info.update(cachedFile=str(cached.relative_to(work)), fileBytes=len(body), contentType=content_type)
        print(f"cached {args.preset}: {cached} ({len(body)} bytes, {content_type})", flush=True)

        if "bare" in variants:
            port = common.free_port()
            env = common.clean_env("BARE_FILE", "BARE_CONTENT_TYPE")
            env.update(BARE_FILE=str(cached), BARE_CONTENT_TYPE=content_type)
            argv = common.gunicorn_argv("bare_serving_app:app", port, workers=settings.web_workers,
                                        threads=settings.web_threads, keepalive=settings.keepalive,
                                        timeout=settings.worker_timeout)
            bare = GunicornService("bare", argv, env, work / "bare", port, workers=settings.web_workers)
            servers["bare"] = bare
            bare.start()
            urls["bare"] = f"{bare.url}/file"
            info["bareArgv"] = argv[1:]
        if "bareconf" in variants:
            port = common.free_port()
            env = common.falconproc_env(work / "bareconf", port, **{"RUN_SUPERVISOR": "0", **args.extra_env})
            env.update(BARE_FILE=str(cached), BARE_CONTENT_TYPE=content_type)
            argv = [sys.executable, "-m", "gunicorn", "-c", "python:falconproc.gunicorn_conf",
                    "--chdir", str(common.BENCH_DIR), "bare_serving_app:app"]
            bareconf = GunicornService("bareconf", argv, env, work / "bareconf", port, workers=settings.web_workers)
            servers["bareconf"] = bareconf
            bareconf.start()
            urls["bareconf"] = f"{bareconf.url}/file"
        if "nginx" in variants:
            nginx = Nginx(args.nginx, work / "nginx", cached.parent, content_type, cached.suffix, os.cpu_count() or 1)
            servers["nginx"] = nginx
            nginx.start("/" + cached.name)
            urls["nginx"] = f"http://127.0.0.1:{nginx.port}/{cached.name}"
            info.update(nginxWorkers=os.cpu_count() or 1, nginxConf=nginx.conf)

        expected = cached.read_bytes()
        checks = {}
        for name, url in urls.items():
            status, headers, body = common.http_get(url)
            if status != 200 or body != expected:
                raise RuntimeError(f"{name}: {url} answered {status} with {len(body)} bytes, "
                                   f"{'identical' if body == expected else 'different'} to {cached}")
            if headers.get("content-type") != content_type:
                raise RuntimeError(f"{name}: Content-Type {headers.get('content-type')!r}, ours {content_type!r}")
            checks[name] = {"url": url, "status": status, "bytes": len(body), "headers": headers}
        info["checks"] = checks
        info["urls"] = urls

        def pids(name: str) -> list[int]:
            return [servers[name].proc.pid]

        for name in variants:  # warm-up: first requests, worker imports, page cache
            common.run_wrk(urls[name], argparse.Namespace(**{**vars(args), "seconds": args.warmup}))
        for r in range(args.rounds):
            for name in variants[r % len(variants):] + variants[:r % len(variants)]:
                time.sleep(1.0)  # TIME_WAIT sockets and the previous server's tail settle
                before = set(servers[name].worker_pids()) if name != "nginx" else set()
                result = common.measure_wrk(urls[name], pids(name), args)
                if name != "nginx":  # gunicorn workers gone by the end (max-requests recycling): a lower bound
                    result["workersReplaced"] = len(before - set(servers[name].worker_pids()))
                runs.setdefault(name, []).append(result)
                print(f"  round {r + 1}/{args.rounds} {name:<6} {result['rps']:8.0f} req/s, "
                      f"p99 {1000 * (result['latency'].get('p99') or 0):.2f} ms, non-2xx {result['non2xx']}, "
                      f"{result['cpuPerRequestMs']:.3f} ms CPU/req, {result['coresUsed']:.2f} cores", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        common.keep_or_remove(work, args.keep)

    report = build_report(args, runs, info)
    return common.publish("cached-serving", args, report, print_table, chart)


if __name__ == "__main__":
    raise SystemExit(main())
