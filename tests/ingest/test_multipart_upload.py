"""POST /upload with multipart/form-data (browser/Node FormData, curl -F), black box."""
from __future__ import annotations

import json
import subprocess

import requests

from tests.support.content import sha256, unique_png, unique_text
from tests.support.http import assert_error, get_original, raw_request
from tests.support.store import stored_entries, temp_entries

IDS = {"x-drive-id": "drive-mp", "x-user-id": "user-mp"}


def post_form(svc, files, data=None, headers=None, **kwargs) -> requests.Response:
    return requests.post(svc.url + "/upload", files=files, data=data, headers={**IDS, **(headers or {})},
                         timeout=60, **kwargs)


def test_form_upload_stores_the_file_part_not_the_envelope(module_service):
    svc = module_service
    png = unique_png()
    resp = post_form(svc, {"file": ("photo.png", png, "image/png")}, data={"caption": "ignored"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["contentHash"] == sha256(png)
    assert body["size"] == len(png)
    assert body["mimeType"] == "image/png"
    assert body["originalName"] == "photo.png"
    assert body["metadata"]["image"]["width"] == 37
    assert get_original(svc, sha256(png)).content == png
    # The same bytes sent raw are a duplicate of the form upload: the same content.
    raw = requests.post(svc.url + "/upload", data=png, headers={**IDS, "x-filename": "raw.png"}, timeout=30)
    assert raw.status_code == 200 and raw.json()["contentHash"] == sha256(png)


def test_curl_form_with_utf8_name_and_x_filename_override(module_service, tmp_path):
    svc = module_service
    data = unique_text()
    path = tmp_path / "Résumé.txt"
    path.write_bytes(data)
    out = subprocess.run(["curl", "-sS", "-F", f"file=@{path}", "-H", "x-drive-id: d", "-H", "x-user-id: u",
                          svc.url + "/upload"], capture_output=True, check=True, timeout=60)
    body = json.loads(out.stdout)
    assert body["contentHash"] == sha256(data) and body["originalName"] == "Résumé.txt"
    assert body["mimeType"] == "text/plain"
    # x-filename, when given, wins over the part's filename.
    other = unique_text()
    resp = post_form(svc, {"f": ("part.txt", other)}, headers={"x-filename": "header%20name.txt"})
    assert resp.status_code == 201 and resp.json()["originalName"] == "header name.txt"


def test_chunked_form_and_x_content_sha256(module_service):
    svc = module_service
    data = unique_text(2000)
    boundary = "b0undary"
    envelope = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.txt\"\r\n\r\n"
                .encode() + data + f"\r\n--{boundary}--\r\n".encode())
    resp = requests.post(svc.url + "/upload", data=iter([envelope[i:i + 1000] for i in range(0, len(envelope), 1000)]),
                         headers={**IDS, "content-type": f"multipart/form-data; boundary={boundary}",
                                  "x-content-sha256": sha256(data)}, timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.json()["contentHash"] == sha256(data) and resp.json()["size"] == len(data)


def test_bad_forms_are_400_with_what_to_send_and_store_nothing(module_service):
    svc = module_service
    before = stored_entries(svc.files)
    two = post_form(svc, [("a", ("a.txt", unique_text())), ("b", ("b.txt", unique_text()))])
    assert "exactly one file" in assert_error(two, 400, "invalid_form")["message"]
    none = post_form(svc, {"caption": (None, "just text")})
    assert "filename" in assert_error(none, 400, "invalid_form")["message"]
    no_boundary = requests.post(svc.url + "/upload", data=b"x", timeout=10,
                                headers={**IDS, "content-type": "multipart/form-data"})
    assert "boundary" in assert_error(no_boundary, 400, "invalid_form")["message"]
    boundary = "zz"
    cut = f"--{boundary}\r\nContent-Disposition: form-data; name=f; filename=t.txt\r\n\r\n".encode() + unique_text()
    truncated = requests.post(svc.url + "/upload", data=cut, timeout=10,
                              headers={**IDS, "content-type": f"multipart/form-data; boundary={boundary}"})
    assert "closing boundary" in assert_error(truncated, 400, "invalid_form")["message"]
    assert stored_entries(svc.files) == before and temp_entries(svc.files) == []
    # A raw body without x-filename: the message names both ways to send a name.
    raw = requests.post(svc.url + "/upload", data=b"abc", headers=IDS, timeout=10)
    assert "multipart/form-data" in assert_error(raw, 400, "missing_header")["message"]


def test_form_over_the_limit_is_413_from_content_length(module_service):
    head = ("POST /upload HTTP/1.1\r\nHost: x\r\nx-drive-id: d\r\nx-user-id: u\r\n"
            "Content-Type: multipart/form-data; boundary=q\r\nContent-Length: 1000000000\r\n\r\n").encode()
    status, _, body, _ = raw_request(module_service, head, timeout=5.0)
    assert status == 413 and json.loads(body)["error"] == "payload_too_large"
