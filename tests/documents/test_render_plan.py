"""The document job's plan, in process: the render scale from page 1's size (giant and
extreme MediaBoxes), and the memory estimate the governor admits it on."""
from __future__ import annotations

import math

import pytest

from falconproc.config import Settings
from falconproc.documents.job import LIBREOFFICE_ESTIMATE, estimate_document_job
from falconproc.documents.pdf import render_scale
from falconproc.queue import Job

BOXES = [(200, 200), (800, 0)]  # thumbnail, preview


@pytest.mark.parametrize("width, height, expected", [
    (595.0, 842.0, (800, 1133)),  # A4: the preview's width rules
    (842.0, 595.0, (800, 566)),  # landscape A4
    (200_000.0, 300_000.0, (800, 1200)),  # kilometres of nominal page: the same pixels as a small one
    (3.84, 3.84, (800, 800)),  # a page smaller than the box is scaled up: pixels per point, not per pixel
])
def test_the_scale_fits_the_largest_preset(width, height, expected):
    scale = render_scale(width, height, BOXES, 4_000_000, 30_000)
    assert (math.ceil(width * scale - 1e-6), math.ceil(height * scale - 1e-6)) == expected


def test_an_extreme_shape_is_capped_by_pixels_and_side():
    scale = render_scale(100.0, 200_000.0, BOXES, 4_000_000, 30_000)
    assert 100 * scale * 200_000 * scale <= 4_000_000 and 200_000 * scale <= 30_000
    scale = render_scale(10_000.0, 10.0, BOXES, 4_000_000, 30_000)  # a wide strip: the side limit binds
    assert 10_000 * scale <= 30_000


def _job(payload: dict) -> Job:
    return Job(id="j", type="document", content_hash="ab" * 32, payload=payload)


def test_the_estimate_counts_libreoffice_for_office_documents_only():
    settings = Settings()
    pdf = estimate_document_job(_job({"mimeType": "application/pdf", "size": 10_000_000}), settings)
    docx = estimate_document_job(_job({"mimeType": "application/vnd.openxmlformats-officedocument."
                                                   "wordprocessingml.document", "size": 10_000_000}), settings)
    unknown = estimate_document_job(_job({}), settings)  # queued by a GET: assume the worst
    assert docx - pdf == LIBREOFFICE_ESTIMATE and unknown >= docx - 2 * 10_000_000
    # the page image's copies are bounded by the setting, whatever the page claims
    assert pdf >= 4 * 4 * settings.document_render_max_pixels + 2 * 10_000_000
    assert pdf < settings.job_memory_max_bytes
