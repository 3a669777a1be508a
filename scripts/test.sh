#!/usr/bin/env bash
# The whole test suite, twice: with the compiled native module (which must load),
# then with the pure-Python twins. pytest's exit code 5 (no tests ran) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

run() {
  "$@"
  rc=$?
  if [ $rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
  [ $rc -eq 0 ] || exit $rc
}

echo "== compiled native module =="
env -u FALCONPROC_NO_EXTENSIONS "$PY" -c 'import falconproc.native.ingest as n, sys; sys.exit(n.IMPLEMENTATION != "cython")' \
  || { echo "the compiled module did not load" >&2; exit 1; }
run env -u FALCONPROC_NO_EXTENSIONS "$PY" -m pytest -q "$@"
echo "== pure-Python twins (FALCONPROC_NO_EXTENSIONS=1) =="
run env FALCONPROC_NO_EXTENSIONS=1 "$PY" -m pytest -q "$@"
