"""Command line: ``falconproc serve | worker | doctor | fsck | settings``."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from falconproc.config import SettingsError, effective_config, settings_markdown, variable_warnings
from falconproc.wiring import Components, check_settings


def _components() -> Components:
    """Settings read and their form checked (backends included); nothing built yet."""
    try:
        return Components()
    except SettingsError as exc:
        print(f"falconproc: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _checked_components() -> tuple[Components, list[str]]:
    """Every setting checked (wiring.check_settings), before anything starts: a bad one
    ends the command with exit 2 and one line naming it; warnings are returned."""
    components = _components()
    try:
        warnings = check_settings(components.settings)
    except SettingsError as exc:
        print(f"falconproc: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return components, variable_warnings() + warnings


def _log_warnings(settings, warnings: list[str]) -> None:
    import logging

    from falconproc.observability.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    for warning in warnings:
        logging.getLogger("falconproc.settings").warning("%s", warning)


def cmd_serve(args: argparse.Namespace) -> int:
    components, warnings = _checked_components()  # fail fast, one line, before gunicorn starts
    _log_warnings(components.settings, warnings)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:falconproc.gunicorn_conf", "falconproc.wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # not reached


def cmd_worker(args: argparse.Namespace) -> int:
    from falconproc.observability.logs import configure_logging
    from falconproc.observability.runtime import set_service_root

    components, warnings = _checked_components()
    if args.service_root_pid:
        set_service_root(args.service_root_pid)
    configure_logging(components.settings.log_format, components.settings.log_level)
    if not args.service_root_pid:  # under `serve`, its master already said these
        _log_warnings(components.settings, warnings)
    components.run_supervisor(alive_file=args.alive_file)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from falconproc import __version__
    from falconproc.documents.office import find_soffice
    from falconproc.native import NO_EXTENSIONS, ingest, resample, resize, webp

    components, warnings = _checked_components()
    settings = components.settings
    report = {
        "version": __version__,
        "implementation": ingest.IMPLEMENTATION,
        "compiledAvailable": ingest.compiled is not None,
        "compiledImportError": ingest.IMPORT_ERROR,
        "extensionsDisabled": NO_EXTENSIONS,
        "webpScaledDecode": "libwebp" if webp.SCALED_DECODE else "pillow-box",
        "webpImportError": webp.IMPORT_ERROR,
        "nativeModules": {name: {"implementation": module.IMPLEMENTATION, "importError": module.IMPORT_ERROR}
                          for name, module in (("ingest", ingest), ("resize", resize), ("resample", resample),
                                               ("webp", webp))},
        "python": sys.version.split()[0],
        "tesseract": shutil.which("tesseract"),
        "ffmpeg": shutil.which(settings.ffmpeg_binary),
        "ffprobe": shutil.which(settings.ffprobe_binary),
        "libreoffice": find_soffice(settings),
        "paths": {},
        "warnings": warnings,
        "settings": effective_config(settings),
    }
    ok = True
    for name in ("file_storage_path", "cache_path", "queue_path"):
        path = getattr(settings, name)
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK)
        ok &= writable
        report["paths"][name] = {"path": str(path), "writable": writable}
    print(json.dumps(report, indent=2))
    missing = [name for name, module in report["nativeModules"].items() if module["implementation"] != "cython"]
    if args.require_native and missing:
        print(f"falconproc: compiled native modules did not load: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def cmd_fsck(args: argparse.Namespace) -> int:
    """Re-hash every original and check its metadata; exit 1 on any error."""
    store = _components().store
    checked = errors = 0
    for content_hash in store.iter_hashes():
        checked += 1
        problem = None
        try:
            meta = store.metadata(content_hash)
            digest = hashlib.sha256()
            size = 0
            with store.open(content_hash) as fh:
                while block := fh.read(1024 * 1024):
                    digest.update(block)
                    size += len(block)
            if digest.hexdigest() != content_hash:
                problem = f"content hashes to {digest.hexdigest()}"
            elif meta.get("contentHash") != content_hash or meta.get("size") != size:
                problem = "metadata.json disagrees with the stored bytes"
        except (OSError, ValueError) as exc:
            problem = f"unreadable: {exc}"
        if problem:
            errors += 1
            print(f"ERROR {content_hash}: {problem}")
    removed = store.sweep_temp() if args.sweep else 0
    print(json.dumps({"checked": checked, "errors": errors, "tempSwept": removed}))
    return 1 if errors else 0


def cmd_contract(args: argparse.Namespace) -> int:
    from falconproc.web.contract import api_markdown, errors_markdown, openapi_document

    if args.markdown:
        print(api_markdown(), end="")
    else:
        print(errors_markdown() if args.errors_markdown else json.dumps(openapi_document(), indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from falconproc.bench import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="falconproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service under gunicorn").set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run the job supervisor alone (e.g. in its own container)")
    worker.add_argument("--service-root-pid", type=int, default=0,
                        help="measure memory over this process's tree (set by `serve`)")
    worker.add_argument("--alive-file", type=Path, default=None,
                        help="touch this file every loop turn (set by `serve`: its watchdog reads it)")
    worker.set_defaults(func=cmd_worker)
    doctor = sub.add_parser("doctor", help="report the implementation, paths and tools in use")
    doctor.add_argument("--require-native", action="store_true", help="exit 1 unless the compiled module loaded")
    doctor.set_defaults(func=cmd_doctor)
    fsck = sub.add_parser("fsck", help="verify every stored original against its hash")
    fsck.add_argument("--sweep", action="store_true", help="also remove temp files of dead uploads")
    fsck.set_defaults(func=cmd_fsck)
    sub.add_parser("settings", help="print the settings table (Markdown)").set_defaults(
        func=lambda a: print(settings_markdown()) or 0)
    contract = sub.add_parser("contract", help="print the OpenAPI 3.1 document (as GET /openapi.json serves it)")
    contract.add_argument("--errors-markdown", action="store_true", help="print the error-code table of docs/api.md")
    contract.add_argument("--markdown", action="store_true",
                          help="print docs/api.md, the contract this installed version keeps")
    contract.set_defaults(func=cmd_contract)
    bench = sub.add_parser("bench", help="load any falconproc URL: uploads, preset reads, text polls")
    bench.set_defaults(func=cmd_bench)
    from falconproc.bench import add_arguments
    add_arguments(bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
