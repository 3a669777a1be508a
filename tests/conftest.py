"""Shared fixtures: the real service under gunicorn, upload helpers, corpus paths."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from tests.support.service import DATA, Service, make_service

CORPUS_FILES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.name != "SOURCES.md")


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    """One running service for the read-mostly black-box tests."""
    svc = make_service(tmp_path_factory.mktemp("svc")).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def module_service(tmp_path_factory):
    """A private service with a pristine store, shared by the tests of one module."""
    svc = make_service(tmp_path_factory.mktemp("bbsvc")).start()
    yield svc
    svc.stop()


@pytest.fixture
def fresh_service(tmp_path):
    """A private service for tests that kill processes or need special settings."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        svc = make_service(tmp_path / f"svc{len(started)}", **env)
        started.append(svc)  # registered first: stopped even if start() fails half-way
        return svc.start()

    yield start
    for svc in started:
        svc.stop()


def upload(svc: Service, data, *, name: str = "file.bin", drive: str = "drive-1", user: str = "user-1",
           headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
    all_headers = {"x-filename": name, "x-drive-id": drive, "x-user-id": user}
    all_headers.update(headers or {})
    return requests.post(svc.url + "/upload", data=data, headers=all_headers, timeout=60, **kwargs)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != ".tmp") if root.exists() else []


def temp_entries(root: Path) -> list[str]:
    tmp = root / ".tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
