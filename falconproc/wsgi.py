"""The WSGI entry point gunicorn loads: ``falconproc.wsgi:app``."""
from __future__ import annotations

from falconproc.web.app import create_app
from falconproc.web.keepalive import CloseUnreadBodies

app = CloseUnreadBodies(create_app())
