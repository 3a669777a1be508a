"""Build the optional Cython extensions from _native/.

The compiled modules are an optimisation: each has a pure-Python twin in
falconproc/native/. If Cython or a compiler is missing the build falls back to
the pure package, unless FALCONPROC_REQUIRE_EXTENSIONS=1 (CI, Docker), where a
failed build is an error.
"""
from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("FALCONPROC_REQUIRE_EXTENSIONS") == "1"
SKIP = os.environ.get("FALCONPROC_NO_EXTENSIONS") == "1" and not REQUIRE


class OptionalBuildExt(build_ext):
    """Let the extension build fail softly unless it is required."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "pure mode"
            if REQUIRE:
                raise
            print(f"WARNING: native extensions not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if REQUIRE:
                raise
            print(f"WARNING: {ext.name} not built ({exc}); using pure Python", file=sys.stderr)


def extensions():
    if SKIP:
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        if REQUIRE:
            raise
        return []
    exts = [
        Extension(
            "falconproc.native._ingest_c",
            ["_native/_ingest_c.pyx"],
            # OpenSSL's SHA-256 (SHA-NI where the CPU has it), called without the GIL.
            libraries=["crypto"],
        ),
        Extension(
            "falconproc.native._resize_c",
            ["_native/_resize_c.pyx"],
        ),
        Extension(
            "falconproc.native._resample_c",
            ["_native/_resample_c.pyx"],
            include_dirs=["_native"],
            depends=["_native/resample_kernels.h"],
            # -O3 lets gcc vectorise the kernels' row and pixel loops (resample_kernels.h).
            extra_compile_args=["-O3"],
        ),
        Extension(
            "falconproc.native._webp_c",
            ["_native/_webp_c.pyx"],
            # libwebp's scaled decode (Debian libwebp-dev to build, libwebp7 to run).
            libraries=["webp"],
        ),
    ]
    try:
        return cythonize(exts, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False})
    except Exception as exc:  # noqa: BLE001 - a Cython error means "pure mode" unless required
        if REQUIRE:
            raise
        print(f"WARNING: Cython failed ({exc}); using pure Python", file=sys.stderr)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
