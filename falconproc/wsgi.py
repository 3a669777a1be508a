"""The WSGI entry point gunicorn loads: ``falconproc.wsgi:app``."""
from __future__ import annotations

from falconproc.app import create_app
from falconproc.keepalive import CloseUnreadBodies

app = CloseUnreadBodies(create_app())
