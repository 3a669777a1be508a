"""Black-box: hostile documents through the real service end in clear error states, in time,
with bounded memory, while other jobs keep flowing and no host file leaks."""
from __future__ import annotations

import threading
import time

import psutil
import requests

from tests.support.content import DOCX_TYPE
from tests.support.corpus import DOCS, OCR_PNG
from tests.support.http import upload, wait_job
from tests.text import _docs
from tests.text._docs import poll_text

TEXT_TIMEOUT = 10.0


class TreeRss:
    """Samples the RSS of the service's whole process tree in the background."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.root, *self.root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _text_job(body: dict) -> dict:
    """The upload's `text` job (PDFs and DOCX also get a `document` job for their thumbnail)."""
    [job] = [j for j in body["jobs"] if j["type"] == "text"]
    return job


def _upload(svc, data: bytes, name: str) -> dict:
    resp = upload(svc, data, name=name)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


HOSTILE = {
    # name: (bytes, expected error code)
    "zip-bomb.docx": (_docs.zip_bomb_docx(200), "refused"),
    "declared-3gb.docx": (_docs.declared_huge_docx(), "refused"),
    "billion-laughs.docx": (_docs.billion_laughs_docx(), "refused"),
    "xxe.docx": (_docs.xxe_docx(), "refused"),
    "xxe-core.docx": (_docs.xxe_core_docx(), "refused"),
    "nested.pdf": (_docs.nested_array_pdf(100_000), "corrupt"),
    "cyclic.pdf": (_docs.cyclic_pdf(), "corrupt"),
    "truncated.pdf": (_docs.truncated_pdf(), "corrupt"),
}


def test_hostile_documents_end_in_clear_errors_while_others_flow(fresh_service):
    # One attempt per job: a hung parser is then killed once at its 10 s wall clock, not three times.
    # No extraction budget: the kill of a job that runs past its timeout is what is tested here
    # (the budget, which keeps a slow PDF's first pages instead, is tested below).
    svc = fresh_service(JOB_TIMEOUTS=f"text={TEXT_TIMEOUT:g},ocr=60", JOB_MAX_ATTEMPTS="1", PDF_TIME_BUDGET="0")
    with TreeRss(svc.proc.pid) as rss:
        # A valid PDF pypdf needs ~120 s for (120 pages x ~1 s here): it must be killed at 10 s even on
        # a machine several times faster (20 pages finished in time on CI).
        hung = _upload(svc, _docs.slow_pdf(120, 20000), "hung.pdf")
        hung_at = time.monotonic()
        uploaded = {name: (_upload(svc, data, name), code) for name, (data, code) in HOSTILE.items()}
        for name, (body, _) in uploaded.items():
            expected = DOCX_TYPE if name.endswith(".docx") else "application/pdf"
            assert body["mimeType"] == expected, (name, body["mimeType"])
        # While the hung job holds one text slot, a normal PDF still gets its text promptly.
        normal = _upload(svc, (DOCS / "pdflatex-outline.pdf").read_bytes(), "normal.pdf")
        start = time.monotonic()
        doc = poll_text(svc, normal["contentHash"], deadline=TEXT_TIMEOUT).json()
        assert doc["pageCount"] == 4 and "Huardest gefburn" in doc["pages"][1]["text"]
        assert time.monotonic() - start < TEXT_TIMEOUT

        for name, (body, code) in uploaded.items():
            resp = poll_text(svc, body["contentHash"], deadline=TEXT_TIMEOUT + 5)
            assert resp.status_code == 422, (name, resp.status_code, resp.text[:300])
            error = resp.json()
            assert error["error"] == code, (name, error)
            assert error["state"]["status"] == "failed" and error["message"], (name, error)
            # The job itself is dead-lettered at once (permanent), with its error recorded.
            job = requests.get(f"{svc.url}/jobs/{_text_job(body)['id']}", timeout=10).json()
            assert job["status"] == "dead" and job["attempts"] == 1 and code in job["lastError"], (name, job)
            for fmt in ("", "?format=json"):
                text = requests.get(f"{svc.url}/cache/{body['contentHash']}/text{fmt}", timeout=10).text
                assert "root:" not in text

        resp = poll_text(svc, hung["contentHash"], deadline=TEXT_TIMEOUT + 15)
        elapsed = time.monotonic() - hung_at
        assert resp.status_code == 422, resp.text[:300]
        error = resp.json()
        assert error["error"] == "failed" and "timed out" in error["message"], error
        assert TEXT_TIMEOUT - 1 <= elapsed <= TEXT_TIMEOUT + 10, elapsed
        job = requests.get(f"{svc.url}/jobs/{_text_job(hung)['id']}", timeout=10).json()
        assert job["status"] == "dead" and "timed out" in job["lastError"], job

        # After all of it, the service still extracts text.
        after = _upload(svc, (DOCS / "hello-world.pdf").read_bytes(), "after.pdf")
        assert "Hello World" in poll_text(svc, after["contentHash"], deadline=TEXT_TIMEOUT).json()["pages"][0]["text"]
    assert rss.peak < 1_250_000_000, rss.peak
    assert requests.get(f"{svc.url}/health", timeout=10).status_code == 200
    assert "root:x:0:0" not in svc.log()


def test_failed_ocr_of_pdf_pages_keeps_the_extracted_text(fresh_service):
    """Page 1 has a text layer, page 2 is a scanned image. When the OCR job for page 2 dies (here: its
    wall clock), the document's text — already extracted and served — must stay served, with the OCR
    failure recorded beside it, not replaced by a 422."""
    svc = fresh_service(JOB_TIMEOUTS="text=10,ocr=0.3", JOB_MAX_ATTEMPTS="1")
    body = _upload(svc, _docs.image_pdf(OCR_PNG, with_text_page=True), "scan.pdf")
    h = body["contentHash"]
    first = poll_text(svc, h, deadline=20)
    assert first.status_code == 200, first.text[:300]
    # Wait until the OCR job is over (dead after its 0.3 s timeout).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = requests.get(f"{svc.url}/cache/{h}/text?format=json", timeout=10)
        if resp.status_code != 200 or resp.json()["state"].get("ocr", {}).get("status") != "pending":
            break
        time.sleep(0.1)
    assert resp.status_code == 200, resp.text[:300]
    doc = resp.json()
    assert doc["pages"][0]["text"].strip() == "Page one has a text layer"
    assert doc["state"]["status"] == "done" and doc["state"]["ocr"]["status"] == "failed", doc["state"]


def _upload_when_admitted(svc, data: bytes, name: str) -> dict:
    """Upload; a 503 (memory high water while earlier bombs are being parsed) is retried after Retry-After."""
    deadline = time.monotonic() + 30
    while True:
        resp = upload(svc, data, name=name)
        if resp.status_code != 503 or time.monotonic() > deadline:
            assert resp.status_code in (200, 201), (name, resp.status_code, resp.text[:300])
            return resp.json()
        time.sleep(float(resp.headers.get("Retry-After", "1")))


def test_pypdf_advisory_samples_end_in_time_while_others_flow(fresh_service):
    """Every pypdf advisory sample (_docs.PDF_ADVISORIES) uploaded at once, then a normal PDF: each
    sample's text job ends by itself within its timeout — refused as corrupt and dead-lettered, or
    done with the hostile page's text lost and the intact page's kept — the OCR job its pages
    without text start ends too, the normal PDF's text arrives, and the service stays healthy."""
    # Each takes at most a few CPU seconds; the generous wall clock is for machines shared with other
    # suites. A sample that hangs is killed at it and fails the test ("timed out").
    svc = fresh_service(JOB_TIMEOUTS="text=30,ocr=30", JOB_MAX_ATTEMPTS="1")
    with TreeRss(svc.proc.pid) as rss:
        uploaded = {a.name: (a, _upload_when_admitted(svc, a.build(), a.name)) for a in _docs.PDF_ADVISORIES}
        for name, (_, body) in uploaded.items():
            assert body["mimeType"] == "application/pdf", (name, body["mimeType"])
        normal = _upload_when_admitted(svc, (DOCS / "pdflatex-outline.pdf").read_bytes(), "normal.pdf")
        doc = poll_text(svc, normal["contentHash"], deadline=120).json()
        assert doc["pageCount"] == 4 and "Huardest gefburn" in doc["pages"][1]["text"]

        for name, (sample, body) in uploaded.items():
            resp = poll_text(svc, body["contentHash"], deadline=120)
            job = requests.get(f"{svc.url}/jobs/{_text_job(body)['id']}", timeout=10).json()
            assert job["attempts"] == 1 and "timed out" not in (job["lastError"] or ""), (name, job)
            if sample.outcome == "corrupt":
                assert resp.status_code == 422, (name, resp.status_code, resp.text[:300])
                error = resp.json()
                assert error["error"] == "corrupt" and error["state"]["status"] == "failed", (name, error)
                assert job["status"] == "dead" and "corrupt" in job["lastError"], (name, job)
                continue
            assert resp.status_code == 200, (name, resp.status_code, resp.text[:300])
            assert job["status"] == "done", (name, job)
            pages = resp.json()["pages"]
            if len(pages) == 2:
                assert pages[0]["text"].strip() == _docs.INTACT, (name, pages)
            if sample.outcome:
                assert sample.outcome in pages[-1]["text"], (name, pages)
                continue
            assert pages[-1]["text"].strip() == "", (name, pages)
            # The page without text went to OCR (its images, if any, through pypdf again): that ends too.
            ocr = poll_text(svc, body["contentHash"], deadline=120,
                            until=lambda r: r.json()["state"]["ocr"]["status"] != "pending").json()["state"]["ocr"]
            assert ocr["status"] == "done" and ocr["pages"] == [2], (name, ocr)

        after = _upload_when_admitted(svc, (DOCS / "hello-world.pdf").read_bytes(), "after.pdf")
        assert "Hello World" in poll_text(svc, after["contentHash"], deadline=60).json()["pages"][0]["text"]
    assert rss.peak < 1_250_000_000, rss.peak
    assert requests.get(f"{svc.url}/health", timeout=10).status_code == 200


def test_a_pdf_too_slow_for_the_timeout_keeps_its_first_pages(fresh_service):
    """The same 120-page slow PDF under the default budget (3/4 of the text timeout): the job
    stops reading at the deadline and serves the pages it read, marked truncated."""
    svc = fresh_service(JOB_TIMEOUTS=f"text={TEXT_TIMEOUT:g},ocr=60", JOB_MAX_ATTEMPTS="1")
    body = _upload(svc, _docs.slow_pdf(120, 20000 + 7), "slow-but-kept.pdf")
    started = time.monotonic()
    resp = poll_text(svc, body["contentHash"], deadline=TEXT_TIMEOUT + 10)
    assert resp.status_code == 200, resp.text[:300]
    assert time.monotonic() - started < TEXT_TIMEOUT + 5
    doc = resp.json()
    assert doc["truncated"] is True and doc["pageCount"] == 120
    assert 1 <= len(doc["pages"]) < 120 and all("ab" in p["text"] for p in doc["pages"])
    # (the text is served as soon as it is published; the job is marked done right after)
    job = wait_job(svc, _text_job(body)["id"], timeout=10)
    assert job["status"] == "done", job
