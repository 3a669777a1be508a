"""DOCX/ODT/PPTX/ODP to PDF with LibreOffice headless, one conversion per soffice run.

soffice runs in the job's process group (no new session), so killing the job for its
timeout or memory kills LibreOffice too; its own timeout (LIBREOFFICE_TIMEOUT) kills
the soffice tree (the `soffice` script, oosplash, soffice.bin) first. Each conversion
gets its own user profile directory: two soffice processes sharing a profile would
hand the document to each other (or fail on the profile's lock).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from falconproc.config import Settings
from falconproc.errors import DocumentUnrenderable
from falconproc.mediatypes import DOCX, ODP, ODT, PPTX

# soffice picks its import filter from the contents, but the extension settles doubts.
EXTENSIONS = {DOCX: "docx", ODT: "odt", PPTX: "pptx", ODP: "odp"}


def find_soffice(settings: Settings) -> str | None:
    """The LibreOffice binary LIBREOFFICE_PATH names, if it is there and executable."""
    return shutil.which(settings.libreoffice_path)


def conversion_timeout(settings: Settings) -> float:
    """LIBREOFFICE_TIMEOUT, but at most 3/4 of the document job's timeout, so that a
    hung conversion ends as `timed_out` rather than as a killed job."""
    job_timeout = settings.job_timeouts.get("document", 90.0)
    return min(settings.libreoffice_timeout, 0.75 * job_timeout)


def _kill_tree(process: subprocess.Popen) -> None:
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    for proc in tree:
        try:
            proc.kill()
        except psutil.Error:
            pass
    process.kill()
    process.wait()


def convert_to_pdf(source: Path, mime_type: str, workdir: Path, soffice: str, timeout: float) -> Path:
    """The PDF LibreOffice makes of ``source`` (written under ``workdir``)."""
    document = workdir / f"document.{EXTENSIONS[mime_type]}"
    try:
        os.link(source, document)  # the store's file, not a copy (a copy across file systems)
    except OSError:
        shutil.copyfile(source, document)
    profile, out = workdir / "profile", workdir / "out"
    command = [soffice, "--headless", "--invisible", "--norestore", "--nolockcheck", "--nodefault", "--nologo",
               f"-env:UserInstallation={profile.as_uri()}", "--convert-to", "pdf", "--outdir", str(out),
               str(document)]
    # HOME too: LibreOffice writes elsewhere in it (fontconfig cache, dconf) otherwise.
    env = {**os.environ, "HOME": str(workdir), "SAL_USE_VCLPLUGIN": "svp"}
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, cwd=workdir)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        raise DocumentUnrenderable("timed_out", f"LibreOffice did not convert the document within {timeout:g} s") from None
    pdf = out / "document.pdf"
    if process.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        # Encrypted or broken documents: soffice says "source file could not be loaded".
        said = output.decode("utf-8", "replace").strip().splitlines()
        detail = said[-1] if said else f"exit status {process.returncode}"
        raise DocumentUnrenderable("conversion_failed", f"LibreOffice could not convert the document "
                                   f"({detail}; {time.monotonic() - started:.1f} s)")
    return pdf
