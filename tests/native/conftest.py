"""Fixtures for the native IngestProbe tests: every case runs on both implementations.

The compiled case FAILS when falconproc.native._ingest_c cannot be imported, unless
FALCONPROC_NO_EXTENSIONS is set (the same switch falconproc.native reads), in which
case only the compiled parameter is skipped.
"""
from __future__ import annotations

import pytest

from falconproc import native
from falconproc.native import ingest as native_ingest


def _compiled_or_bail():
    if native_ingest.compiled is not None:
        return native_ingest.compiled.IngestProbe
    if native.NO_EXTENSIONS:
        pytest.skip("compiled falconproc.native._ingest_c not built (FALCONPROC_NO_EXTENSIONS set)")
    pytest.fail(
        "compiled falconproc.native._ingest_c is not importable "
        f"({native_ingest.IMPORT_ERROR}); build it with `python setup.py build_ext --inplace` "
        "or set FALCONPROC_NO_EXTENSIONS=1"
    )


@pytest.fixture(params=["python", "cython"])
def probe_cls(request):
    """The pure-Python and the compiled IngestProbe class."""
    if request.param == "python":
        return native_ingest.pure.IngestProbe
    return _compiled_or_bail()


@pytest.fixture(scope="session")
def probe_pair():
    """(pure, compiled) for differential tests; skipped/failed like the cython case above."""
    return native_ingest.pure.IngestProbe, _compiled_or_bail()
