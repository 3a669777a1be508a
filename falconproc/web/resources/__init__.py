"""Thin Falcon resources: parse the request, call a service, serialise the answer."""
