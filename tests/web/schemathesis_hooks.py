"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in test_contract.py: tus chunks are
application/offset+octet-stream, raw bytes like application/octet-stream."""
import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
