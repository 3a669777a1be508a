"""What the access log costs: cached-preset serving with LOG_FORMAT=json, LOG_FORMAT=text
and ACCESS_LOG=0, side by side in one run.

Three ``falconproc serve`` instances with default settings but the log setting, each with
the same JPEG (``--image``) uploaded and its eager presets made, so that every measured
``GET /cache/{hash}/thumbnail`` is a cache hit: the request is as cheap as the service
makes one, and the log line is as large a share of it as it ever is. Each instance writes
its log to a file (``<work>/<variant>.log``), as a container's stdout goes to a pipe.
Each answers 200 with identical bytes before anything is measured.

After ``--warmup`` seconds of load each, ``--rounds`` rounds of ``wrk -t2 -c32 -d8s
--latency`` against each, the order rotating round by round (wrk shares the cores with
the servers). Reported per variant: median req/s (min–max), p50/p99, CPU per request
(user + system of the instance's whole process tree, psutil) and the ratios of json and
text to "off" (of the medians, and the median of per-round ratios), plus the log bytes
written per request.

    python benchmarks/bench_access_log.py [--rounds 3] [--seconds 8] [--connections 32]

Prints a Markdown table; writes benchmarks/results/access-log-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

VARIANTS = {"json": {"LOG_FORMAT": "json"}, "text": {"LOG_FORMAT": "text"}, "off": {"ACCESS_LOG": "0"}}
COLORS = {"json": "#2e9d57", "text": "#ef8a3c", "off": "#9e9e9e"}


def build_report(args, runs: dict[str, list[dict]], info: dict[str, Any]) -> dict[str, Any]:
    summary = {}
    for name, rs in runs.items():
        summary[name] = {**common.summarize_wrk_runs(rs),
                         "logBytesPerRequest": statistics.median(r["logBytesPerRequest"] for r in rs)}

    def per_round(a: str, key: str) -> float | None:
        values = [x[key] / y[key] for x, y in zip(runs[a], runs["off"]) if y[key]]
        return statistics.median(values) if values else None

    ratios = {}
    for name in ("json", "text"):
        ratios[name] = {
            "rpsVsOff": common.ratio(summary[name]["rps"]["median"], summary["off"]["rps"]["median"]),
            "rpsVsOffPerRound": per_round(name, "rps"),
            "cpuPerRequestVsOff": common.ratio(summary[name]["cpuPerRequestMs"], summary["off"]["cpuPerRequestMs"]),
            "cpuPerRequestVsOffPerRound": per_round(name, "cpuPerRequestMs"),
        }
    return {
        "benchmark": "access-log",
        "timestamp": args.stamp,
        "config": {"image": str(args.image), "preset": args.preset, "threads": args.threads,
                   "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds,
                   "warmupSeconds": args.warmup, "variants": VARIANTS, "loadavgAtStart": args.loadavg_start, **info},
        "machine": common.machine_info({"wrk": ["wrk", "--version"]}),
        "summary": summary,
        "ratios": ratios,
        "runs": {name: [{k: v for k, v in r.items() if k != "raw"} for r in rs] for name, rs in runs.items()},
    }


def print_table(report: dict[str, Any]) -> str:
    summary, ratios, cfg = report["summary"], report["ratios"], report["config"]
    headers = ["access log", "req/s", "min–max", "p50 ms", "p99 ms", "non-2xx", "server CPU ms/req",
               "log bytes/req", "req/s / off", "CPU/req / off"]
    rows = []
    for name in VARIANTS:
        s = summary[name]
        r = ratios.get(name, {})
        rows.append([name, common.fmt(s["rps"]["median"], ".0f"),
                     f"{common.fmt(s['rps']['min'], '.0f')}–{common.fmt(s['rps']['max'], '.0f')}",
                     common.fmt(1000 * s["p50"], ".2f"), common.fmt(1000 * s["p99"], ".2f"), str(s["non2xx"]),
                     common.fmt(s["cpuPerRequestMs"], ".3f"), common.fmt(s["logBytesPerRequest"], ".0f"),
                     common.fmt(r.get("rpsVsOffPerRound"), ".3f", "x") if r else "–",
                     common.fmt(r.get("cpuPerRequestVsOffPerRound"), ".3f", "x") if r else "–"])
    table = common.format_table(headers, rows)
    print(f"\n## Access log cost: cached {cfg['preset']} ({cfg.get('fileBytes')} bytes), wrk -t{cfg['threads']} "
          f"-c{cfg['connections']} -d{cfg['seconds']:g}s x {cfg['rounds']} rounds, {report['machine']['cpuCount']} "
          f"cores (ratios: medians of per-round ratios)\n")
    print(table)
    return table


def chart(report: dict[str, Any]) -> Path | None:
    summary, names = report["summary"], list(VARIANTS)
    return common.bar_chart("access-log", report["timestamp"],
                            f"access log json / text / off, cached {report['config']['preset']}, "
                            f"{report['machine']['cpuCount']} CPUs, {report['timestamp']}", [
                                {"title": "throughput (median req/s, bars: min–max)", "xlabel": "requests per second",
                                 "labels": names, "values": [summary[n]["rps"]["median"] for n in names],
                                 "low": [summary[n]["rps"]["min"] for n in names],
                                 "high": [summary[n]["rps"]["max"] for n in names],
                                 "colors": [COLORS[n] for n in names], "fmt": "{:.0f}"},
                                {"title": "server CPU per request (process tree)", "xlabel": "CPU milliseconds",
                                 "labels": names, "values": [summary[n]["cpuPerRequestMs"] for n in names],
                                 "colors": [COLORS[n] for n in names], "fmt": "{:.3f}"},
                            ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_wrk_arguments(parser, seconds=8)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (the services' logs)")
    args = common.parse_args(parser, argv)
    if args.replot:
        return common.publish("access-log", args, None, print_table, chart)
    if shutil.which("wrk") is None:
        parser.error("wrk is not on PATH (apt-get install wrk)")
    if args.rounds < 1:
        parser.error("--rounds >= 1")
    args.stamp = common.timestamp()
    args.loadavg_start = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="falconproc-bench-access-log-"))
    servers: dict[str, Any] = {}
    urls: dict[str, str] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    info: dict[str, Any] = {}
    try:
        expected = None
        for name, env in VARIANTS.items():
            svc, content_hash = common.start_falconproc_with(work, args.image, name=name, extra_env=env)
            servers[name] = svc
            urls[name] = f"{svc.url}/cache/{content_hash}/{args.preset}"
            status, headers, body = common.http_get(urls[name], timeout=120)
            if status != 200 or (expected is not None and body != expected):
                raise RuntimeError(f"{name}: {urls[name]} answered {status}, {len(body)} bytes")
            expected = body
        info.update(fileBytes=len(expected), urls=urls)
        names = list(VARIANTS)
        for name in names:
            common.run_wrk(urls[name], argparse.Namespace(**{**vars(args), "seconds": args.warmup}))
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                time.sleep(1.0)
                log_before = servers[name].log_path.stat().st_size
                result = common.measure_wrk(urls[name], [servers[name].proc.pid], args)
                result["logBytesPerRequest"] = ((servers[name].log_path.stat().st_size - log_before)
                                                / max(1, result["requests"]))
                runs.setdefault(name, []).append(result)
                print(f"  round {r + 1}/{args.rounds} {name:<5} {result['rps']:8.0f} req/s, "
                      f"{result['cpuPerRequestMs']:.3f} ms CPU/req, {result['logBytesPerRequest']:.0f} log B/req",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
        common.keep_or_remove(work, args.keep)

    report = build_report(args, runs, info)
    return common.publish("access-log", args, report, print_table, chart)


if __name__ == "__main__":
    raise SystemExit(main())
