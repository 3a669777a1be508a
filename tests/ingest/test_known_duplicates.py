"""An upload whose x-content-sha256 names bytes already stored: the body is hashed to prove
it and nothing is written, so the duplicate is recorded even when new content would be
refused (full queue, storage reserve)."""
from __future__ import annotations

from tests.support.content import sha256, unique_text
from tests.support.corpus import MEADOW
from tests.support.http import cache_metadata, upload
from tests.support.store import stored_entries, temp_entries


def test_a_named_duplicate_is_recorded_when_new_content_is_refused(fresh_service):
    image = MEADOW.read_bytes()
    digest = sha256(image)
    # No supervisor, room for one pending job: the image's own jobs fill the queue.
    svc = fresh_service(WEB_WORKERS="1", RUN_SUPERVISOR="0", MAX_QUEUE_SIZE="1")
    try:
        assert upload(svc, image, user="first").status_code == 201
        assert upload(svc, unique_text(), user="first").status_code == 503  # new bytes: refused
        assert upload(svc, image, user="plain-retry").status_code == 503  # unnamed: cannot know
        resp = upload(svc, image, drive="drive-2", user="second", headers={"x-content-sha256": digest})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["isNew"] is False and body["jobs"] == [] and body["contentHash"] == digest
        users = {u["userId"] for u in cache_metadata(svc, digest)["uploads"]}
        assert users == {"first", "second"}

        # A body that is not the bytes it names: 400, and nothing recorded.
        other = unique_text()
        resp = upload(svc, other, user="liar", headers={"x-content-sha256": digest})
        assert resp.status_code == 400 and resp.json()["error"] == "hash_mismatch"
        assert "liar" not in {u["userId"] for u in cache_metadata(svc, digest)["uploads"]}
        assert stored_entries(svc.files) == [digest] and temp_entries(svc.files) == []
    finally:
        svc.stop()

    # The same store under a reserve larger than the disk's free space: new bytes get 507,
    # the named duplicate writes nothing and goes through.
    svc = fresh_service(WEB_WORKERS="1", RUN_SUPERVISOR="0",
                        FILE_STORAGE_PATH=str(svc.files), STORAGE_RESERVE_BYTES=str(10**18))
    try:
        assert upload(svc, unique_text(), user="third").status_code == 507
        resp = upload(svc, image, user="third", headers={"x-content-sha256": digest})
        assert resp.status_code == 200, resp.text
        assert "third" in {u["userId"] for u in resp.json()["metadata"]["uploads"]}
        assert temp_entries(svc.files) == []
    finally:
        svc.stop()
