"""Capability: virus scanning of originals with clamd (INSTREAM), and the quarantine of
what it finds infected."""
