"""The upload hot path: ``IngestProbe`` hashes, sniffs, probes image headers and writes
each block in one pass (compiled ``_ingest_c`` with the GIL released, or its twin)."""
from __future__ import annotations

from falconproc.native import _ingest_py as pure, choose, load_compiled
from falconproc.native.types import ProbeResult

compiled, IMPORT_ERROR = load_compiled("_ingest_c")
_selected = choose(compiled, pure)

IngestProbe = _selected.IngestProbe
#: "cython" or "python": which hot path this process runs (health, doctor, benchmarks).
IMPLEMENTATION = "cython" if _selected is compiled else "python"

__all__ = ["IMPLEMENTATION", "IMPORT_ERROR", "IngestProbe", "ProbeResult", "compiled", "pure"]
