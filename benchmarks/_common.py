"""Shared helpers for the benchmarks: services under gunicorn, RSS sampling, results.

Benchmarks are not tests. Each one measures our path and its baselines side by side in
one run on one machine, reports medians and ratios (never absolute figures from another
day, see docs/performance.md), prints one table, and writes a JSON result file plus a PNG
chart to ``benchmarks/results/``.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as `python benchmarks/bench_x.py`, only benchmarks/ is on sys.path: the repository
# root goes first, for falconproc and for the launcher the tests use (tests/support/).
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

# free_port is the benchmarks' (common.free_port()); settings_env_names feeds clean_env().
from tests.support.service import Gunicorn, free_port, settings_env_names  # noqa: E402,F401

BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
MB = 1_000_000  # benchmark sizes and rates are decimal: 100 MB = 100 * 10**6 bytes
MIB = 1024 * 1024


# --------------------------------------------------------------------------- environment


def clean_env(*also_drop: str) -> dict[str, str]:
    """This process's environment without falconproc settings (an inherited one must not
    skew a run), the native-module switches, and ``also_drop``."""
    drop = {*settings_env_names(), "FALCONPROC_NO_EXTENSIONS", "FALCONPROC_REQUIRE_EXTENSIONS", *also_drop}
    return {k: v for k, v in os.environ.items() if k not in drop}


def falconproc_env(base: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment of a falconproc service on ``port`` with its data under ``base``."""
    env = clean_env()
    env.update({
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "FILE_STORAGE_PATH": str(base / "files"),
        "CACHE_PATH": str(base / "cache"),
        "QUEUE_PATH": str(base / "queue"),
        "UPLOADS_PATH": str(base / "uploads"),
        "LOG_LEVEL": "warning",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    })
    env.update(settings)
    return env


def service_env(parser, items: list[str]) -> dict[str, str]:
    """The ``--service-env NAME=VALUE`` options as a dict (a usage error for anything else)."""
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--service-env expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def _module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - informational only
        return None


def filesystem_of(path: Path) -> str | None:
    """The filesystem type holding ``path`` (from /proc/self/mounts), for the record."""
    try:
        best, fstype = "", None
        real = str(Path(path).resolve())
        with open("/proc/self/mounts") as fh:
            for line in fh:
                parts = line.split()
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
        return fstype
    except OSError:
        return None


def machine_info(extra_tools: dict[str, list[str]] | None = None) -> dict[str, Any]:
    cpu_model = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu_model is None:
                    cpu_model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpuModel": cpu_model,
        "cpuCount": os.cpu_count(),
        "shaNi": "sha_ni" in flags if flags else None,
        "python": sys.version.split()[0],
        "packages": {name: _module_version(name) for name in ("falcon", "gunicorn", "psutil", "matplotlib")},
        "tools": {},
    }
    for name, argv in (extra_tools or {}).items():
        info["tools"][name] = _version(argv)
    try:
        info["loadavgAtEnd"] = os.getloadavg()
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- processes


class GunicornService(Gunicorn):
    """A gunicorn master started by a benchmark: tests/support/service.py's launcher (the
    one the black-box tests use: start until the health URL answers and every web worker
    exists, not counting falconproc's job supervisor), with a name for its log
    (``cwd/<name>.log``) and a ``start()`` that returns the health body when it is JSON."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int, workers: int = 1):
        super().__init__(argv, env, cwd, port=port, workers=workers, name=name)

    def start(self, health_path: str = "/health", timeout: float = 60.0) -> dict[str, Any] | None:
        self.health_path = health_path
        super().start(timeout)
        return self.health_body

    def log_tail(self, chars: int = 4000) -> str:
        return self.log(chars)


class RssSampler:
    """Polls the RSS of every child of a gunicorn master in a thread, every ``interval`` s.

    Children are classed as web workers (forked by gunicorn: same command line as the
    master, or a ``gunicorn: worker`` title) or other children (e.g. falconproc's job
    supervisor). ``before`` is taken when the sampler is created, ``peak`` is the highest
    value seen until ``stop()``. ``growth`` is the largest peak - before over the web
    workers, i.e. the one that handled the request; other children are recorded apart.
    """

    def __init__(self, master_pid: int, interval: float = 0.01):
        import psutil

        self.interval = interval
        self.master = psutil.Process(master_pid)
        master_cmd = self._cmdline(self.master)
        self.procs = {p.pid: p for p in self.master.children()}
        self.kind = {}
        for pid, proc in self.procs.items():
            cmd = self._cmdline(proc)
            web = cmd == master_cmd or (cmd[:1] and cmd[0].startswith("gunicorn: worker"))
            self.kind[pid] = "web" if web else "other"
        if "web" not in self.kind.values():  # unknown layout: every child counts
            self.kind = dict.fromkeys(self.procs, "web")
        self.before = {pid: self._rss(p) for pid, p in self.procs.items()}
        self.peak = dict(self.before)
        self.cpu_before = {pid: self._cpu(p) for pid, p in self.procs.items()}
        self.cpu_after = dict(self.cpu_before)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    @staticmethod
    def _cmdline(proc) -> list[str]:
        try:
            return proc.cmdline()
        except Exception:  # noqa: BLE001
            return []

    @staticmethod
    def _cpu(proc) -> float:
        """User + system CPU seconds of the process itself (robust to a busy machine,
        unlike wall time; excludes the kernel's writeback threads and the client)."""
        try:
            t = proc.cpu_times()
            return t.user + t.system
        except Exception:  # noqa: BLE001
            return 0.0

    @staticmethod
    def _rss(proc) -> int:
        try:
            return proc.memory_info().rss
        except Exception:  # noqa: BLE001 - a worker that went away has no RSS
            return 0

    def _sample(self) -> None:
        for pid, proc in self.procs.items():
            rss = self._rss(proc)
            if rss > self.peak.get(pid, 0):
                self.peak[pid] = rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sample()  # one last sample after the request ended
            self.cpu_after = {pid: self._cpu(p) for pid, p in self.procs.items()}

    def _growth(self, pid: int) -> int:
        return self.peak[pid] - self.before[pid]

    @property
    def handler_pid(self) -> int | None:
        web = [pid for pid, kind in self.kind.items() if kind == "web"]
        return max(web, key=self._growth) if web else None

    @property
    def growth(self) -> int:
        pid = self.handler_pid
        return 0 if pid is None else self._growth(pid)

    def record(self) -> dict[str, Any]:
        pid = self.handler_pid
        others = [pid_ for pid_, kind in self.kind.items() if kind == "other"]
        return {
            "workerPid": pid,
            "rssBefore": self.before.get(pid) if pid else None,
            "rssPeak": self.peak.get(pid) if pid else None,
            "rssGrowth": self.growth,
            "cpuSeconds": (self.cpu_after[pid] - self.cpu_before[pid]) if pid else None,
            "samples": self.samples,
            "webWorkers": sum(1 for kind in self.kind.values() if kind == "web"),
            "otherChildren": {str(p): {"rssBefore": self.before[p], "rssGrowth": self._growth(p),
                                       "cpuSeconds": self.cpu_after[p] - self.cpu_before[p],
                                       "cmdline": " ".join(self._cmdline(self.procs[p]))[:200]} for p in others},
        }


def gunicorn_flags() -> dict[str, bool]:
    """Options this gunicorn knows that older ones do not."""
    out = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True)
    return {"no_control_socket": "--no-control-socket" in out.stdout}


def gunicorn_argv(app: str, port: int, *, workers: int, threads: int, keepalive: int = 5,
                  timeout: int = 120) -> list[str]:
    """gunicorn (this interpreter) serving ``app`` (``module:attr`` in benchmarks/) the way
    falconproc's gunicorn_conf does where it matters for speed: gthread, ``workers``
    processes of ``threads`` threads, keep-alive, heartbeat files on tmpfs, no control
    socket, and no access log."""
    argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(workers), "--threads", str(threads),
            "-b", f"127.0.0.1:{port}", "--timeout", str(timeout), "--keep-alive", str(keepalive),
            "--log-level", "warning", "--chdir", str(BENCH_DIR)]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        argv += ["--worker-tmp-dir", "/dev/shm"]
    if gunicorn_flags()["no_control_socket"]:
        argv += ["--no-control-socket"]
    argv.append(app)
    return argv


def start_falconproc_with(work: Path, image: Path, name: str = "ours",
                          extra_env: dict[str, str] | None = None) -> tuple[GunicornService, str]:
    """``falconproc serve`` with its default settings (web workers: 2 per core) but
    ``extra_env``, and its data under ``work/name``, ``image`` uploaded, and the upload's jobs (the eager presets)
    finished, so that they do not compete with what is measured next. Returns the
    service and the image's content hash."""
    import requests

    port = free_port()
    env = falconproc_env(work / name, port, **(extra_env or {}))  # puts the repository on sys.path
    from falconproc.config import Settings

    workers = Settings.from_env(env).web_workers
    svc = GunicornService(name, [sys.executable, "-m", "falconproc.cli", "serve"], env, work / name, port,
                          workers=workers)
    svc.start()
    data = image.read_bytes()
    resp = requests.post(svc.url + "/upload", data=data, timeout=60,
                         headers={"x-filename": image.name, "x-drive-id": "bench", "x-user-id": "bench"})
    resp.raise_for_status()
    body = resp.json()
    for job in body.get("jobs", []):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = requests.get(f"{svc.url}/jobs/{job['id']}", timeout=10).json()["status"]
            if state in ("done", "dead"):
                break
            time.sleep(0.1)
    return svc, body["contentHash"]


def tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their descendants, including
    descendants that already exited and were reaped (their parent's ``children_*`` times),
    so that a worker recycled during a measurement still counts."""
    import psutil

    total = 0.0
    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root] + root.children(recursive=True)
        except psutil.Error:
            pass
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def parse_wrk(out: str) -> dict[str, Any]:
    """req/s, request count, non-2xx/3xx count, socket errors and latency percentiles
    (seconds) from the output of ``wrk --latency``."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE):
        lat[f"p{pct}"] = float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    return {"rps": rps, "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socketErrors": errors.group(1).strip() if errors else None, "latency": lat, "raw": out}


def random_payload(path: Path, size: int) -> str:
    """``size`` random bytes written to ``path`` and fsynced; returns their SHA-256."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(MIB, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --------------------------------------------------------------------------- cached reads under wrk


def http_get(url: str, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (names in lower case) and body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def add_wrk_arguments(parser, *, seconds: float) -> None:
    """The load options every cached-read benchmark takes (bench_cached_serving.py,
    bench_access_log.py)."""
    from tests.support.corpus import IMAGES_DIR

    parser.add_argument("--image", type=Path, default=IMAGES_DIR / "garden-2560x1600.jpg",
                        help="the JPEG to upload (default: garden)")
    parser.add_argument("--preset", default="thumbnail", help="the cached preset served (default thumbnail)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds, order rotating (default 3)")
    parser.add_argument("--seconds", type=float, default=seconds, help=f"wrk -d per run (default {seconds:g})")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load per variant first (2)")
    parser.add_argument("--wrk-timeout", type=float, default=10, help="wrk --timeout seconds (default 10)")


def run_wrk(url: str, args) -> dict[str, Any]:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{max(1, round(args.seconds))}s", "--latency",
            "--timeout", f"{args.wrk_timeout}s", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    return parse_wrk(out.stdout)


def measure_wrk(url: str, pids: list[int], args) -> dict[str, Any]:
    cpu0, t0 = tree_cpu(pids), time.monotonic()
    result = run_wrk(url, args)
    elapsed = time.monotonic() - t0
    result["serverCpuSeconds"] = tree_cpu(pids) - cpu0
    result["coresUsed"] = result["serverCpuSeconds"] / elapsed
    result["cpuPerRequestMs"] = 1000 * result["serverCpuSeconds"] / max(1, result["requests"])
    return result


def summarize_wrk_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median req/s (with min/max), latency, errors and server CPU of one variant's rounds."""
    return {
        "rps": summarize([r["rps"] for r in runs]),
        "p50": statistics.median(r["latency"].get("p50") or 0.0 for r in runs),
        "p99": statistics.median(r["latency"].get("p99") or 0.0 for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "cpuPerRequestMs": statistics.median(r["cpuPerRequestMs"] for r in runs),
        "coresUsed": statistics.median(r["coresUsed"] for r in runs),
    }


# --------------------------------------------------------------------------- statistics


def summarize(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None, "mean": None, "stdev": None}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into the README or an issue)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(headers), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- output


def parse_args(parser, argv: list[str] | None):
    """``parser.parse_args(argv)`` after adding the options of a benchmark that writes a
    JSON result and a PNG (--no-chart, --results-dir, --replot: see ``publish``), with
    RESULTS_DIR set to --results-dir."""
    global RESULTS_DIR
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where the JSON and PNG go (default benchmarks/results/)")
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="measure nothing: print the table of a result file and redraw its PNG next to it")
    args = parser.parse_args(argv)
    RESULTS_DIR = args.results_dir.resolve()
    return args


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def publish(name: str, args, report: dict[str, Any] | None, print_table, chart) -> int:
    """The end of a benchmark's main: ``print_table(report)``, the report written to
    RESULTS_DIR/<name>-<args.stamp>.json, and ``chart(report)``'s PNG unless --no-chart.

    ``report=None`` is --replot: the result file ``args.replot`` is read instead, its
    table printed and its PNG redrawn next to it (whatever --no-chart says); no JSON is
    written. Returns main's exit status, 0.
    """
    global RESULTS_DIR
    replot = report is None
    if replot:
        report = json.loads(args.replot.read_text())
        RESULTS_DIR = args.replot.resolve().parent
    print_table(report)
    if not replot:
        json_path = write_json(name, args.stamp, report)
        print(f"\nresults: {shown(json_path)}")
    if replot or not args.no_chart:
        png = chart(report)
        if png:
            print(f"chart:   {shown(png)}")
    return 0


def keep_or_remove(work: Path, keep: bool) -> None:
    """A benchmark's work dir at its end: kept and named with --keep, else removed."""
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def write_json(name: str, stamp: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def bar_chart(name: str, stamp: str, title: str, panels: list[dict[str, Any]]) -> Path | None:
    """One PNG with a horizontal bar chart per panel.

    Each panel: ``{"title", "xlabel", "labels", "values", "low", "high", "colors"}``
    (``low``/``high`` optional: drawn as min..max error bars). Returns None (and says so)
    when matplotlib is missing: ``pip install .[bench]``.
    """
    if not have_matplotlib():
        print("matplotlib is not installed (pip install '.[bench]'): no chart written", file=sys.stderr)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rows = max(len(p["labels"]) for p in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 1.4 + 0.6 * rows), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        labels = panel["labels"]
        values = [v if v is not None else 0.0 for v in panel["values"]]
        y = list(range(len(labels)))
        xerr = None
        if panel.get("low") and panel.get("high"):
            xerr = [[max(0.0, v - (lo if lo is not None else v)) for v, lo in zip(values, panel["low"])],
                    [max(0.0, (hi if hi is not None else v) - v) for v, hi in zip(values, panel["high"])]]
        ax.barh(y, values, xerr=xerr, color=panel.get("colors"), capsize=3)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(panel["xlabel"])
        ax.set_title(panel["title"], fontsize=10)
        ends = [v + (xerr[1][i] if xerr else 0.0) for i, v in enumerate(values)]
        for yi, end, raw in zip(y, ends, panel["values"]):
            ax.annotate("n/a" if raw is None else panel.get("fmt", "{:.3f}").format(raw), (end, yi),
                        xytext=(5, -3), textcoords="offset points", fontsize=8)
        ax.set_xlim(0, max(ends, default=1.0) * 1.25 or 1.0)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = RESULTS_DIR / f"{name}-{stamp}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
