"""Native hot path, in process: the compiled ingest probe vs its pure-Python twin vs a plain hashlib loop.

Side by side in one run, on one machine, no HTTP (docs/performance.md, "native hot path"):
the same file of ``--size-mb`` (100) MB of random bytes, read from disk (page cache after
the first round) in blocks of ``--chunks`` bytes (1 MiB, the service's READ_CHUNK_BYTES
default, and 64 KiB), fed to

* cython   ``IngestService.ingest()`` (falconproc.ingest.service) with the compiled
           ``falconproc.native.ingest.compiled.IngestProbe``: the service's own loop (``body.read(chunk)``
           -> ``probe.feed``, which hashes, sniffs and ``write()``s into the store's temp
           file), then its commit (fsync of the file, metadata.json, rename, directory
           fsyncs). The body is the file opened unbuffered, so every read returns a new
           ``bytes`` like gunicorn's ``Body.read``. The entry is deleted after each run;
* python   the same with the pure-Python twin ``native_ingest.pure.IngestProbe``;
* hashlib  the plain loop: ``readinto`` a reused buffer, ``hashlib.sha256().update``,
           ``os.write`` into a temp file in the store's temp directory, ``fsync``.

Every write run ends with an fsync of the file (ours: in the commit, whose time is also
reported apart). The hash-only rows (``--modes hash``) run the same loops with nothing
written: ours is ``IngestService._stream`` with fd -1 (the probe hashes and sniffs only),
the plain loop is ``readinto`` + ``update``.

Each run is timed wall-clock (``perf_counter``) and in CPU time of this process
(``process_time``: user + system, excludes the kernel's writeback threads). Rounds run every
variant once in an order that rotates round by round; one warm-up round is not counted.
Reported: medians, min–max, MB/s (10^6 bytes), and the ratios against the plain hashlib
loop of the same mode and block size: the ratio of medians and the median of per-round
ratios. Every run's SHA-256 must equal the file's. The compiled module must be the one
that loaded (a built .so), or the script stops.

    python benchmarks/bench_hotpath.py [--rounds 7] [--size-mb 100] [--chunks 1048576,65536]
        [--modes write,hash] [--variants cython,python,hashlib] [--tmp-dir DIR]

Prints a Markdown table; writes benchmarks/results/hotpath-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from _common import MB, MIB, ROOT  # noqa: E402

VARIANTS = ("cython", "python", "hashlib")
MODES = ("write", "hash")
LABELS = {
    ("cython", "write"): "ours compiled: IngestService.ingest",
    ("python", "write"): "ours pure twin: IngestService.ingest",
    ("hashlib", "write"): "plain: readinto + hashlib + write",
    ("cython", "hash"): "ours compiled: probe, no file",
    ("python", "hash"): "ours pure twin: probe, no file",
    ("hashlib", "hash"): "plain: readinto + hashlib",
}
COLORS = {"cython": "#2e9d57", "python": "#4a7fc1", "hashlib": "#9e9e9e"}


def chunk_label(chunk: int) -> str:
    return f"{chunk // MIB} MiB" if chunk % MIB == 0 else f"{chunk // 1024} KiB"


def key(variant: str, mode: str, chunk: int) -> str:
    return f"{variant}/{mode}/{chunk}"


# --------------------------------------------------------------------------- setup


def compiled_probe():
    """The compiled IngestProbe class; stops the script if it did not load from a built module."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from falconproc.native import ingest as native_ingest

    cls = native_ingest.compiled.IngestProbe if native_ingest.compiled is not None else None
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    path = getattr(module, "__file__", "") or ""
    if cls is None or not path.endswith(".so"):
        raise SystemExit(f"the compiled ingest module did not load ({native_ingest.IMPORT_ERROR or path!r}): "
                         "python setup.py build_ext --inplace")
    return cls, path


def make_services(base: Path, size: int, chunks: list[int]):
    """One IngestService per block size (its Settings are frozen), sharing one store."""
    from falconproc.config import Settings
    from falconproc.ingest.service import IngestService
    from falconproc.wiring import Components

    services = {}
    store = None
    for chunk in chunks:
        env = common.falconproc_env(base, 3003, ALLOWED_TYPES="application/octet-stream",
                                    MAX_UPLOAD_BYTES=str(max(size, 104_857_600)), READ_CHUNK_BYTES=str(chunk))
        settings = Settings.from_env(env)
        if store is None:
            settings.file_storage_path.mkdir(parents=True, exist_ok=True)
            store = Components(settings).store
        services[chunk] = (settings, IngestService(settings, store))
    return store, services


class CommitTimer:
    """Wraps the store's commit (fsync, metadata.json, rename, directory fsyncs) to time it."""

    def __init__(self, store):
        self.inner = store.commit
        self.seconds = 0.0
        store.commit = self

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds = time.perf_counter() - t0


# --------------------------------------------------------------------------- one run


def run_ours(svc, store, timer: CommitTimer, probe_cls, payload: Path, size: int, mode: str,
             expected: str) -> dict[str, Any]:
    from falconproc.ingest.service import UploadRequest

    svc.probe_factory = probe_cls
    request = UploadRequest(filename="bench-hotpath.bin", drive_id="bench", user_id="bench",
                            expected_sha256=None, content_length=size)
    with open(payload, "rb", buffering=0) as body:
        c0, t0 = time.process_time(), time.perf_counter()
        if mode == "write":
            outcome = svc.ingest(request, body)
            digest, fresh = outcome.content_hash, outcome.is_new
        else:
            digest, fresh = svc._stream(request, body, -1).sha256, True  # the loop itself, fd -1: no file
        t1, c1 = time.perf_counter(), time.process_time()
    if digest != expected or not fresh:
        raise RuntimeError(f"ours ({probe_cls.__module__}, {mode}): sha256 {digest}, new {fresh}; expected {expected}")
    out = {"seconds": t1 - t0, "cpuSeconds": c1 - c0}
    if mode == "write":
        out["syncSeconds"] = timer.seconds
        common.remove(store.root / digest)  # the local store's entry directory
    return out


def run_plain(payload: Path, chunk: int, mode: str, tmp_dir: Path, expected: str) -> dict[str, Any]:
    buf = bytearray(chunk)
    view = memoryview(buf)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="plain-") if mode == "write" else (-1, None)
    try:
        with open(payload, "rb", buffering=0) as src:
            c0, t0 = time.process_time(), time.perf_counter()
            digest = hashlib.sha256()
            while n := src.readinto(buf):
                block = view[:n]
                digest.update(block)
                if fd >= 0:
                    done = 0
                    while done < n:
                        done += os.write(fd, block[done:])
            t_loop = time.perf_counter()
            if fd >= 0:
                os.fsync(fd)
            t1, c1 = time.perf_counter(), time.process_time()
    finally:
        if fd >= 0:
            os.close(fd)
            os.unlink(tmp)
    if digest.hexdigest() != expected:
        raise RuntimeError(f"plain loop ({mode}): sha256 {digest.hexdigest()}, expected {expected}")
    out = {"seconds": t1 - t0, "cpuSeconds": c1 - c0}
    if mode == "write":
        out["syncSeconds"] = t1 - t_loop
    return out


# --------------------------------------------------------------------------- report


def build_report(args, size: int, expected: str, keys: list[tuple[str, str, int]], raw: dict[str, list[dict]],
                 base: Path, so_path: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for variant, mode, chunk in keys:
        k = key(variant, mode, chunk)
        measured = [r for r in raw[k] if not r["warmup"]]
        s = {"variant": variant, "mode": mode, "chunk": chunk, "label": LABELS[(variant, mode)],
             "seconds": common.summarize([r["seconds"] for r in measured]),
             "cpuSeconds": common.summarize([r["cpuSeconds"] for r in measured])}
        med = s["seconds"]["median"]
        s["throughputMBps"] = size / MB / med if med else None
        if mode == "write":
            s["syncSeconds"] = common.summarize([r["syncSeconds"] for r in measured])
        summary[k] = s
    ratios: dict[str, Any] = {}
    for variant, mode, chunk in keys:
        k, base_k = key(variant, mode, chunk), key("hashlib", mode, chunk)
        if base_k not in summary:
            continue
        mine = [r for r in raw[k] if not r["warmup"]]
        theirs = [r for r in raw[base_k] if not r["warmup"]]
        per_round = [a["seconds"] / b["seconds"] for a, b in zip(mine, theirs)]
        per_round_cpu = [a["cpuSeconds"] / b["cpuSeconds"] for a, b in zip(mine, theirs) if b["cpuSeconds"]]
        ratios[k] = {
            "vsHashlib": common.ratio(summary[k]["seconds"]["median"], summary[base_k]["seconds"]["median"]),
            "vsHashlibPerRound": statistics.median(per_round) if per_round else None,
            "cpuVsHashlib": common.ratio(summary[k]["cpuSeconds"]["median"], summary[base_k]["cpuSeconds"]["median"]),
            "cpuVsHashlibPerRound": statistics.median(per_round_cpu) if per_round_cpu else None,
        }
    return {
        "benchmark": "hotpath",
        "timestamp": args.stamp,
        "config": {
            "sizeBytes": size, "rounds": args.rounds, "warmup": args.warmup, "chunks": args.chunk_list,
            "modes": args.mode_list, "variants": args.variant_list, "pause": args.pause,
            "payload": "random bytes (os.urandom) in a file, read unbuffered (page cache after the first round)",
            "ours": "IngestService.ingest (write) / IngestService._stream with fd -1 (hash), "
                    "probe_factory = the compiled or the pure IngestProbe; ALLOWED_TYPES=application/octet-stream, FSYNC=1",
            "plain": "readinto a reused bytearray, hashlib.sha256().update, os.write to a temp file, fsync",
            "timing": "perf_counter (wall) and process_time (CPU of this process) around each run",
            "compiledModule": so_path,
            "workDir": str(base), "filesystem": common.filesystem_of(base),
            "loadavgAtStart": args.loadavg_start,
        },
        "expectedSha256": expected,
        "machine": common.machine_info(),
        "summary": summary,
        "ratios": ratios,
        "runs": raw,
    }


def print_table(report: dict[str, Any]) -> str:
    size_mb = report["config"]["sizeBytes"] / MB
    headers = [f"{size_mb:g} MB through the hot path", "block", "median s", "min–max s", "MB/s", "CPU s",
               "fsync s", "/ hashlib", "/ hashlib per round", "CPU / hashlib"]
    rows = []
    for k, s in report["summary"].items():
        r = report["ratios"].get(k, {})
        sec = s["seconds"]
        rows.append([
            s["label"], chunk_label(s["chunk"]), common.fmt(sec["median"]),
            f"{common.fmt(sec['min'])}–{common.fmt(sec['max'])}", common.fmt(s["throughputMBps"], ".0f"),
            common.fmt(s["cpuSeconds"]["median"]),
            common.fmt(s["syncSeconds"]["median"]) if "syncSeconds" in s else "–",
            common.fmt(r.get("vsHashlib"), ".2f", "x"), common.fmt(r.get("vsHashlibPerRound"), ".2f", "x"),
            common.fmt(r.get("cpuVsHashlib"), ".2f", "x"),
        ])
    table = common.format_table(headers, rows)
    print()
    print(table)
    print("\nfsync s: ours = the store's commit (file fsync, metadata.json, rename, directory fsyncs), "
          "plain = fsync of the file; both inside the wall time.")
    return table


def chart(report: dict[str, Any]) -> Path | None:
    summary = report["summary"]
    panels = []
    for mode in report["config"]["modes"]:
        ks = [k for k, s in summary.items() if s["mode"] == mode]
        if not ks:
            continue
        labels = [f"{summary[k]['label']} ({chunk_label(summary[k]['chunk'])})" for k in ks]
        colors = [COLORS[summary[k]["variant"]] for k in ks]
        what = "hash + write + fsync" if mode == "write" else "hash only"
        panels.append({"title": f"{what}: wall time (median, bars: min–max)", "xlabel": "seconds",
                       "labels": labels, "values": [summary[k]["seconds"]["median"] for k in ks],
                       "low": [summary[k]["seconds"]["min"] for k in ks],
                       "high": [summary[k]["seconds"]["max"] for k in ks], "colors": colors, "fmt": "{:.3f} s"})
        panels.append({"title": f"{what}: CPU time of the process (median, min–max)", "xlabel": "CPU seconds",
                       "labels": labels, "values": [summary[k]["cpuSeconds"]["median"] for k in ks],
                       "low": [summary[k]["cpuSeconds"]["min"] for k in ks],
                       "high": [summary[k]["cpuSeconds"]["max"] for k in ks], "colors": colors, "fmt": "{:.3f} s"})
    size_mb = report["config"]["sizeBytes"] / MB
    return common.bar_chart("hotpath", report["timestamp"],
                            f"native hot path, {size_mb:g} MB, {report['config']['rounds']} rounds, "
                            f"{report['machine']['cpuCount']} CPUs, {report['timestamp']}", panels)


# --------------------------------------------------------------------------- main


def _csv(parser, text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    bad = set(items) - set(allowed)
    if bad or not items:
        parser.error(f"bad {what}: {', '.join(sorted(bad)) or text!r} (choose from {', '.join(allowed)})")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--size-mb", type=float, default=100, help="payload size in MB of 10^6 bytes (default 100)")
    parser.add_argument("--chunks", default=f"{MIB},{64 * 1024}",
                        help="comma-separated block sizes in bytes (default 1048576,65536)")
    parser.add_argument("--modes", default=",".join(MODES), help="write (hash + write + fsync), hash (hash only)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="subset of " + ",".join(VARIANTS))
    parser.add_argument("--tmp-dir", type=Path, default=None,
                        help="parent of the work dir (payload and store share its filesystem; default: $TMPDIR)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds of rest between runs (default 0.2)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = common.parse_args(parser, argv)
    if args.replot:
        return common.publish("hotpath", args, None, print_table, chart)
    args.stamp = common.timestamp()
    args.variant_list = _csv(parser, args.variants, VARIANTS, "--variants")
    args.mode_list = _csv(parser, args.modes, MODES, "--modes")
    try:
        args.chunk_list = [int(c) for c in args.chunks.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--chunks expects byte counts, got {args.chunks!r}")
    if not args.chunk_list or min(args.chunk_list) < 4096 or args.rounds < 1:
        parser.error("--chunks must be >= 4096 bytes (READ_CHUNK_BYTES' minimum), --rounds >= 1")
    size = int(args.size_mb * MB)
    try:
        args.loadavg_start = os.getloadavg()
    except OSError:
        args.loadavg_start = None

    c_probe, so_path = compiled_probe()
    from falconproc.native import ingest as native_ingest

    probes = {"cython": c_probe, "python": native_ingest.pure.IngestProbe}
    base = Path(tempfile.mkdtemp(prefix="falconproc-bench-hotpath-", dir=args.tmp_dir))
    try:
        payload = base / "payload.bin"
        print(f"compiled module {so_path}\nwork dir {base} ({common.filesystem_of(base)}), load average "
              f"{args.loadavg_start}; writing {size / MB:g} MB of random bytes ...", flush=True)
        expected = common.random_payload(payload, size)
        store, services = make_services(base, size, args.chunk_list)
        timer = CommitTimer(store)
        if os.stat(store.tmp_root).st_dev != os.stat(payload).st_dev:
            raise RuntimeError(f"{store.tmp_root} is not on the payload's filesystem")

        keys = [(v, m, c) for m in args.mode_list for c in args.chunk_list for v in args.variant_list]
        raw: dict[str, list[dict]] = {key(*k): [] for k in keys}
        for i in range(args.warmup + args.rounds):
            warm = i < args.warmup
            order = keys[i % len(keys):] + keys[:i % len(keys)]
            for variant, mode, chunk in order:
                time.sleep(args.pause)
                if variant == "hashlib":
                    result = run_plain(payload, chunk, mode, store.tmp_root, expected)
                else:
                    _, svc = services[chunk]
                    result = run_ours(svc, store, timer, probes[variant], payload, size, mode, expected)
                result["warmup"] = warm
                result["round"] = i
                raw[key(variant, mode, chunk)].append(result)
                print(f"  {'warm-up' if warm else f'round {i - args.warmup + 1}/{args.rounds}'} "
                      f"{variant:<7} {mode:<5} {chunk_label(chunk):>7}: {result['seconds']:.3f} s, "
                      f"CPU {result['cpuSeconds']:.3f} s", flush=True)

        report = build_report(args, size, expected, keys, raw, base, so_path)
        return common.publish("hotpath", args, report, print_table, chart)
    finally:
        common.keep_or_remove(base, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
