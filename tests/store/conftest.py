"""The store backends every contract test runs on: ``local`` and ``s3`` (a real Ceph RGW
started once per session by ``s3_server`` of tests/conftest.py; it failing to start fails the tests)."""
from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from falconproc.config import Settings
from falconproc.wiring import Components

STORE_BACKENDS = ["local", "s3"]


@pytest.fixture(params=STORE_BACKENDS)
def backend_components(request, tmp_path) -> Callable[..., Components]:
    """``make(name="a", **settings)``: the Components of one instance of the backend under
    test, each with its own empty local directories; instances made by one test share
    the bucket and prefix (as instances behind a load balancer do)."""
    backend = request.param
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    if backend == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")

    def make(name: str = "a", **changes) -> Components:
        base = tmp_path / name
        settings = Settings(file_storage_path=base / "files", cache_path=base / "cache",
                            queue_path=base / "queue", instance_id=f"inst-{name}")
        if backend == "s3":
            env = server.service_env(bucket, prefix)
            settings = settings.replace(storage_backend="s3", s3_endpoint_url=env["S3_ENDPOINT_URL"],
                                        s3_bucket=bucket, s3_prefix=prefix + "/",
                                        s3_access_key_id=env["S3_ACCESS_KEY_ID"],
                                        s3_secret_access_key=env["S3_SECRET_ACCESS_KEY"])
        else:
            # Local "instances" share one disk: that is what the local backend supports.
            settings = settings.replace(file_storage_path=tmp_path / "files", cache_path=tmp_path / "cache")
        return Components(settings.replace(**changes))

    make.backend = backend
    return make
