"""The text job handler: its PDF page pool is bounded by the job's share of the cores."""
from __future__ import annotations

import pytest

from falconproc.jobs import registry
from falconproc.queue import Job
from falconproc.text import service as text_service
from falconproc.wiring import load_job_types
from tests.support.corpus import DOCS
from tests.support.inprocess import build_imaging


@pytest.mark.parametrize("budget, expected", [(1, 1), (2, 2), (8, 2)])
def test_the_pdf_pool_gets_no_more_processes_than_the_cpu_budget(tmp_path, monkeypatch, budget, expected):
    imaging = build_imaging(tmp_path, text_processes=2)
    content_hash = imaging.put((DOCS / "pdflatex-outline.pdf").read_bytes(), "outline.pdf")
    load_job_types(imaging.settings)
    used: list[int] = []
    real_extract = text_service.extract

    def recording(path, mime_type, settings):
        used.append(settings.text_processes)
        return real_extract(path, mime_type, settings)

    monkeypatch.setattr(text_service, "extract", recording)
    job = Job("00-1-text-a", "text", content_hash)
    result = registry.get("text").handler(job, imaging.components.job_context(budget))
    assert result["status"] == "done" and used == [expected]
